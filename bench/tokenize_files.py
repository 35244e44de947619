"""Benchmark: ``chatloom tokenize`` of the chitchat corpus (repeated to >= 50 million tokens,
gpt2-chatml, ChatML) to .bin/.idx/.loss, beside two references measured in the same run:

- the limit: tiktoken's ``encode_ordinary_batch`` alone over the same conversations rendered as
  ChatML, with the same number of threads (nothing read, checked, masked or written; only the
  encoding is timed);
- the route people use today: ``datasets.Dataset.from_list(...).map(...)`` with a Hugging Face
  GPT-2 tokenizer and ``apply_chat_template(..., return_assistant_tokens_mask=True)`` on a ChatML
  template with ``{% generation %}`` tags, ``num_proc`` = the same number. It is slow, so it runs
  on a subset (``--hf-tokens``, one copy of the corpus by default) and is compared by rate; the
  two agree on the trained-token count of that subset (printed side by side).

Each step runs in a fresh process. Only the chitchat conversations with an assistant message are
used (4,018 of 7,168: the others have nothing to train on, which chatloom's tokenize refuses
without --fix); each copy has its own ids.

    .venv/bin/python bench/tokenize_files.py                      # >= 50M tokens (14 copies), 2 threads
    .venv/bin/python bench/tokenize_files.py --tokens 10000000    # a quick run (3 copies)
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


def step_chatloom(path: str, out: str, threads: str) -> dict:
    """The CLI end to end (start-up, reading the JSONL, checks, masks, writing) in a subprocess."""
    cmd = [str(CHATLOOM), "tokenize", path, "-o", out, "--tokenizer", "gpt2-chatml", "--workers", threads]
    with TreeRss() as tree:
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    meta = json.loads((Path(out) / "meta.json").read_text())
    train = meta["splits"]["train"]
    return {"seconds": seconds, "tokens": train["tokens"], "trained_tokens": train["trained_tokens"],
            "conversations": train["conversations"], "report": meta.get("report"),
            "children_peak_rss_mib": children_peak_mib(), "tree_peak_rss_mib": tree.peak_mib}


def step_limit(path: str, threads: str) -> dict:
    """Render as chatloom's ChatML does (untimed), then time ``encode_ordinary_batch`` alone."""
    from chatloom.tokens.tokenizer import get_tokenizer

    enc = get_tokenizer("gpt2-chatml").enc
    texts = ["".join(f"{IM_START}{role}\n{content}{IM_END}\n" for role, content in conv) + ENDOFTEXT
             for conv in read_messages(path)]
    enc.encode_ordinary_batch(texts[:256], num_threads=int(threads))  # warm up: the BPE ranks, the pool
    with TreeRss() as tree:
        t = time.perf_counter()
        ids = enc.encode_ordinary_batch(texts, num_threads=int(threads))
        seconds = time.perf_counter() - t
        tiktoken_tokens = sum(map(len, ids))
        del ids
        # for reference, not the limit: the markers read as special tokens (one each, as chatloom writes them)
        t = time.perf_counter()
        ids = enc.encode_batch(texts, num_threads=int(threads), allowed_special="all")
        special_seconds = time.perf_counter() - t
    return {"seconds": seconds, "tiktoken_tokens": tiktoken_tokens, "conversations": len(texts),
            "special_seconds": special_seconds, "special_tokens": sum(map(len, ids)), "tree_peak_rss_mib": tree.peak_mib}


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


STEPS = {"chatloom": step_chatloom, "limit": step_limit, "hf": step_hf}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=50_000_000, help="at least this many gpt2-chatml tokens (whole copies of chitchat)")
    ap.add_argument("--threads", type=int, default=default_threads(),
                    help="chatloom's --workers, tiktoken's num_threads and datasets' num_proc (default: this machine's cores)")
    ap.add_argument("--hf-tokens", type=int, default=3_700_000, help="about this many tokens for the HF route (whole copies, at least one)")
    opts = options_or_step(ap, STEPS)
    if opts is None:
        return

    import numpy as np

    threads = opts.threads
    convs = chitchat()
    per_copy = tokens_per_copy(convs)
    copies = max(1, math.ceil(opts.tokens / per_copy))
    hf_copies = min(copies, max(1, round(opts.hf_tokens / per_copy)))
    with tempfile.TemporaryDirectory(prefix="chatloom-bench-") as tmp:
        tmp = Path(tmp)
        data = tmp / "chats.jsonl"
        t = time.perf_counter()
        n_convs, _ = write_copies(data, convs, copies)
        n_hf = hf_copies * len(convs)
        size_mb = data.stat().st_size / 1e6
        print(f"input: {copies} × {len(convs):,} chitchat conversations = {n_convs:,} conversations, "
              f"≈{copies * per_copy:,} tokens, {size_mb:.0f} MB (built in {time.perf_counter() - t:.1f}s); "
              f"{threads} threads", file=sys.stderr)
        from chatloom.tokens.tokenizer import write_hf_gpt2_folder

        folder = write_hf_gpt2_folder(tmp / "hf-gpt2-chatml", special_tokens=[IM_START, IM_END], chat_template=HF_TEMPLATE)

        ours = run_step(__file__, "chatloom", str(data), str(tmp / "tokens"), str(threads))
        limit = run_step(__file__, "limit", str(data), str(threads))
        hf = run_step(__file__, "hf", str(data), str(n_hf), str(threads), str(folder))

        # what chatloom wrote for the HF subset (a prefix of the file): tokens, trained tokens, first conversation
        idx = np.fromfile(tmp / "tokens" / "train.idx", dtype=np.uint64)
        end = int(idx[n_hf]) if n_hf < len(idx) else ours["tokens"]
        loss = np.fromfile(tmp / "tokens" / "train.loss", dtype=np.uint8, count=end)
        bin_ = np.memmap(tmp / "tokens" / "train.bin", dtype=np.uint16, mode="r")
        ours_sub = {"tokens": end, "trained_tokens": int(loss.sum())}
        first_end = int(idx[1]) if len(idx) > 1 else ours["tokens"]
        first_ids = bin_[: first_end].tolist()
        first_mask = np.fromfile(tmp / "tokens" / "train.loss", dtype=np.uint8, count=first_end).tolist()
        del bin_

    assert ours["conversations"] == n_convs == limit["conversations"], (ours["conversations"], n_convs, limit["conversations"])
    tokens = ours["tokens"]
    rate_ours = tokens / ours["seconds"]
    rate_limit = tokens / limit["seconds"]  # the tokens chatloom wrote, over the limit's time
    rate_limit_raw = limit["tiktoken_tokens"] / limit["seconds"]
    rate_hf = hf["tokens"] / hf["seconds"]
    ratio_limit = limit["seconds"] / ours["seconds"]
    ratio_hf = rate_ours / rate_hf
    same_ids = first_ids[:-1] == hf["first_ids"] and first_ids[-1:] == [50256]
    same_mask = first_mask[:-1] == hf["first_mask"]

    def mib(x: float) -> str:
        return f"{x:,.0f} MiB"

    rows = [
        {"what": "chatloom tokenize (CLI, end to end)", "conversations": n_convs, "tokens": tokens, "seconds": ours["seconds"],
         "tokens_per_s": rate_ours, "peak_rss_mib": ours["peak_rss_mib"], "children_peak_rss_mib": ours["children_peak_rss_mib"],
         "tree_peak_rss_mib": ours["tree_peak_rss_mib"]},
        {"what": "tiktoken encode_ordinary_batch (limit)", "conversations": n_convs, "tokens": tokens, "seconds": limit["seconds"],
         "tokens_per_s": rate_limit, "tiktoken_tokens": limit["tiktoken_tokens"], "tiktoken_tokens_per_s": rate_limit_raw,
         "peak_rss_mib": limit["peak_rss_mib"], "tree_peak_rss_mib": limit["tree_peak_rss_mib"]},
        {"what": "HF datasets.map + apply_chat_template", "conversations": hf["conversations"], "tokens": hf["tokens"],
         "seconds": hf["seconds"], "tokens_per_s": rate_hf, "peak_rss_mib": hf["peak_rss_mib"],
         "children_peak_rss_mib": hf["children_peak_rss_mib"], "tree_peak_rss_mib": hf["tree_peak_rss_mib"]},
    ]
    print(f"\n{'step':<40}{'convs':>9}{'tokens':>13}{'seconds':>9}{'tokens/s':>12}{'RSS main':>11}{'largest child':>15}{'sum of tree':>13}")
    for r in rows:
        child = mib(r["children_peak_rss_mib"]) if "children_peak_rss_mib" in r else "-"
        print(f"{r['what']:<40}{r['conversations']:>9,}{r['tokens']:>13,}{r['seconds']:>9.2f}{r['tokens_per_s']:>12,.0f}"
              f"{mib(r['peak_rss_mib']):>11}{child:>15}{mib(r['tree_peak_rss_mib']):>13}")
    print(f"""
threads: {threads} (chatloom --workers, tiktoken num_threads, datasets num_proc); {copies} cop{'y' if copies == 1 else 'ies'} of chitchat.
Peak RSS: 'RSS main' is the step process's own VmHWM (for chatloom, a wrapper that only runs the CLI);
'largest child' is ru_maxrss of the step's waited-for descendants, the largest single one (chatloom:
the CLI or one of its spawned workers; HF: one of the datasets.map processes); 'sum of tree' is the
peak of the step's summed RSS over itself and all its descendants, sampled every 50 ms (a page
shared by several processes counts in each, so an upper bound; a spike under 50 ms can be missed).

The limit encodes the same conversations, rendered as chatloom's ChatML, in {limit['seconds']:.2f}s; it is
reported over the {tokens:,} tokens chatloom wrote. tiktoken itself produced {limit['tiktoken_tokens']:,}
tokens ({rate_limit_raw:,.0f}/s): encode_ordinary reads "{IM_START}", "{IM_END}" and "{ENDOFTEXT}" as
text, several ordinary tokens each, where chatloom writes one special token each. For reference
(not the limit): encode_batch(allowed_special="all"), the markers one token each, gave
{limit['special_tokens']:,} tokens{' (the same count as chatloom)' if limit['special_tokens'] == tokens else ''} in {limit['special_seconds']:.2f}s, {limit['special_tokens'] / limit['special_seconds']:,.0f}/s ({limit['special_seconds'] / ours['seconds']:.0%} of chatloom's time).
chatloom / limit (limit time / chatloom time): {ratio_limit:.0%} (target ≥ 70%)

The HF route ran on a subset, {hf_copies} cop{'y' if hf_copies == 1 else 'ies'} ({hf['conversations']:,} conversations, the first of
the same file), to keep the run short (all {tokens:,} tokens would take it about {tokens / rate_hf:,.0f}s); rates are
compared, each over its own tokens (HF's lack chatloom's closing <|endoftext|>, one a conversation).
Timed: Dataset.from_list + map; reading the JSONL and loading the tokenizer ({hf['tokenizer_class']}) were not.
chatloom / HF rate: {ratio_hf:.1f}× (target ≥ 10×)

On the HF subset, chatloom vs HF (they differ by design: chatloom closes each conversation with an
untrained <|endoftext|>; both train the assistant's content and its <|im_end|>):
  tokens          chatloom {ours_sub['tokens']:>12,}   HF {hf['tokens']:>12,}   difference {ours_sub['tokens'] - hf['tokens']:+,}
  trained tokens  chatloom {ours_sub['trained_tokens']:>12,}   HF {hf['trained_tokens']:>12,}   difference {ours_sub['trained_tokens'] - hf['trained_tokens']:+,}
  first conversation: same ids (less chatloom's <|endoftext|>): {'yes' if same_ids else 'NO'}; same mask: {'yes' if same_mask else 'NO'}""")

    summary = {
        "benchmark": "tokenize",
        "tokenizer": "gpt2-chatml",
        "threads": threads,
        "copies": copies,
        "hf_copies": hf_copies,
        "conversations": n_convs,
        "input_mb": size_mb,
        "rows": rows,
        "chatloom": ours,
        "limit": limit,
        "hf": {k: v for k, v in hf.items() if k not in ("first_ids", "first_mask")},
        "hf_subset_chatloom": ours_sub,
        "hf_first_conversation_same_ids": same_ids,
        "hf_first_conversation_same_mask": same_mask,
        "ratio_vs_limit": ratio_limit,
        "ratio_vs_hf": ratio_hf,
        "summary": [
            {"measure": "tokenize vs tiktoken limit (time ratio)", "ratio": ratio_limit, "target": 0.7},
            {"measure": "tokenize vs HF datasets.map route", "ratio": ratio_hf, "target": 10},
        ],
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "tokenize_files.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
