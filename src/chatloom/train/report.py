"""A run's ``loss.png`` and ``report.html``: the curves, the figures, and held-out prompts
answered by the base model and by the tuned one, side by side."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_write
from .config import TrainConfig
from .data import Data, PackedRows


def held_out_prompts(data: Data, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to ``n`` validation conversations cut before their last trained reply: (prompt ids,
    reference reply ids)."""
    tf = data.val
    out: list[tuple[np.ndarray, np.ndarray]] = []
    if tf is None or n <= 0:
        return out
    for i in np.linspace(0, len(tf) - 1, num=min(n * 3, len(tf)), dtype=int).tolist():
        ids, loss = tf.conversation(i)
        trained = np.flatnonzero(loss)
        if not len(trained):
            continue
        start = int(trained[-1])
        while start > 0 and loss[start - 1]:
            start -= 1
        if start == 0:
            continue
        out.append((ids[:start].astype(np.int64), ids[start:int(trained[-1]) + 1].astype(np.int64)))
        if len(out) == n:
            break
    return out


def _generate(model: Any, tokenizer: Any, prompt: np.ndarray, max_new: int) -> str:
    import torch

    with torch.no_grad():
        out = model.generate(input_ids=torch.from_numpy(prompt)[None], attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             max_new_tokens=max_new, do_sample=False, repetition_penalty=1.2, use_cache=True, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
    return str(tokenizer.decode(out[0, len(prompt):], skip_special_tokens=True)).strip()


def samples(model: Any, tokenizer: Any, data: Data, config: TrainConfig, base_folder: Path) -> list[dict[str, str]]:
    """The held-out prompts answered greedily (repetition penalty 1.2) by the base model and the tuned one."""
    prompts = held_out_prompts(data, config.samples)
    if not prompts:
        return []
    model.eval()
    tuned = [_generate(model, tokenizer, p, config.sample_tokens) for p, _ in prompts]
    if hasattr(model, "disable_adapter"):  # LoRA: the base is the same model with its adapters off
        with model.disable_adapter():
            base = [_generate(model, tokenizer, p, config.sample_tokens) for p, _ in prompts]
    else:
        import transformers

        base_model = transformers.AutoModelForCausalLM.from_pretrained(str(base_folder))
        base_model.eval()
        base = [_generate(base_model, tokenizer, p, config.sample_tokens) for p, _ in prompts]
        del base_model
    rows = []
    for (prompt, ref), b, t in zip(prompts, base, tuned):
        text = str(tokenizer.decode(prompt, skip_special_tokens=False))
        rows.append({"prompt": ("…" + text[-400:]) if len(text) > 400 else text,
                     "reference": str(tokenizer.decode(ref, skip_special_tokens=True)).strip(), "base": b, "tuned": t})
    return rows


def write_report(run: Path, config: TrainConfig, data: Data, model: Any, tokenizer: Any, metrics: list[dict[str, Any]],
                 train_rows: PackedRows, base_folder: Path, precision: str) -> dict[str, Any]:
    from ..reports import loss_png, render_train_report

    png = loss_png(metrics, run / "loss.png")
    losses = [m["loss"] for m in metrics if m.get("loss") is not None]
    evals = [(m["step"], m["eval_loss"]) for m in metrics if m.get("eval_loss") is not None]
    rates = [m["tokens_per_s"] for m in metrics if m.get("tokens_per_s")]
    best = min(evals, key=lambda e: e[1]) if evals else None
    figures = {
        "steps": metrics[-1]["step"] if metrics else 0,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "first_eval_loss": evals[0][1] if evals else None,
        "best_eval_loss": best[1] if best else None,
        "best_step": best[0] if best else None,
        "tokens": metrics[-1].get("tokens") if metrics else 0,
        "tokens_per_s": round(float(np.median(rates)), 1) if rates else None,
        "packing_fill": round(train_rows.fill, 4),
        "skipped_longer": train_rows.skipped,
    }
    shown = [("model", config.model), ("method", config.method), ("precision", precision),
             ("steps", f"{figures['steps']:,}"), ("training loss, first → last", _pair(figures["first_loss"], figures["last_loss"])),
             ("validation loss, first → best", _pair(figures["first_eval_loss"], figures["best_eval_loss"])
              + (f" (step {figures['best_step']})" if best else "")),
             ("tokens trained on", f"{figures['tokens'] or 0:,}"), ("tokens/s (median)", f"{figures['tokens_per_s'] or 0:,.0f}"),
             ("packing: rows filled", f"{100 * train_rows.fill:.1f} % (no padding is computed)"),
             ("conversations left out (longer than max_length)", f"{train_rows.skipped:,}")]
    rows = []
    with contextlib.suppress(Exception):  # a sample that fails to generate never costs the run its report
        rows = samples(model, tokenizer, data, config, base_folder)
    html = render_train_report(f"chatloom train: {run.name}", shown, png, rows, (run / "run.yaml").read_text(encoding="utf-8"))
    with atomic_write(run / "report.html") as fp:
        fp.write(html.encode())
    figures["samples"] = len(rows)
    return figures


def _pair(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None else f"{a:.4f} → {b:.4f}"
