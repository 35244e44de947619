"""``chatloom train``: fine-tune a model on token files, keep the best, show how it went.

    result = train(load_config(None, {"model": "tiny:gpt2", "data": "tokens", "output": "run", "max_steps": 30}))
    result = train(config, resume=True)     # after Ctrl+C, a crash or kill -9: same steps, data order, optimizer

The loop is transformers' ``Trainer`` (accelerate underneath: ``accelerate launch -m chatloom
train …`` runs it on several GPUs or nodes), with PEFT for LoRA. What chatloom adds:

- the data (``data.py``): chatloom's token files and masks, packed with no padding;
- a run folder: ``run.yaml`` (the whole resolved config), ``data.json``, ``versions.json``,
  ``metrics.jsonl`` (one object per logged step), ``loss.png``, ``report.html``, ``best/`` (the
  lowest validation loss, written when it is reached) and ``final/`` (the last weights), both
  always written (without a validation split ``best/`` is ``final/``), and ``checkpoints/``;
- checkpoints that count only once complete (a marker is written after the Trainer's files), so a
  run killed while saving resumes from the last whole one; early stopping on the validation loss.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..fileio import atomic_write
from .config import TrainConfig, save_config
from .data import Collator, Data, PackedRows, digest_files, prepare
from .models import quiet_transformers, resolve, save

COMPLETE = "chatloom-complete"  # written into a checkpoint folder once the Trainer has written it all


@dataclass
class Result:
    run: Path
    steps: int
    best_eval_loss: float | None
    final_loss: float | None
    stopped_early: bool
    figures: dict[str, Any] = field(default_factory=dict)


def check_method(config: TrainConfig) -> None:
    """What can be known before any work: qlora needs CUDA (bitsandbytes' 4-bit)."""
    if config.method == "qlora":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("method qlora needs a CUDA GPU (bitsandbytes 4-bit weights); this machine has none: "
                             "use --method lora (same adapters, full-precision base) or run on a GPU machine")


def _precision(config: TrainConfig) -> str:
    import torch

    if config.precision != "auto":
        return config.precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    amx = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    return "bf16" if "AVX512" in amx or "AMX" in amx else "fp32"


def _load_model(config: TrainConfig, folder: Path) -> Any:
    import torch
    import transformers

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if config.method == "qlora":
        kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs.pop("dtype")
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder.resolve()), **kwargs)
    model.config.use_cache = False  # a cache turns off the block-diagonal mask packing needs
    if config.method == "full":
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    lora = config.lora
    import warnings

    with warnings.catch_warnings():  # GPT-2's Conv1D: PEFT sets fan_in_fan_out itself, and says so
        warnings.filterwarnings("ignore", message="fan_in_fan_out", category=UserWarning)
        return get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                target_modules=lora.target_modules, task_type="CAUSAL_LM"))


def _complete_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints written whole, oldest first; partial ones (a run killed while saving) removed."""
    found = []
    for p in folder.glob("checkpoint-*") if folder.exists() else []:
        if (p / COMPLETE).exists():
            found.append(p)
        else:
            shutil.rmtree(p, ignore_errors=True)
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _read_metrics(path: Path, up_to: int) -> list[dict[str, Any]]:
    """The metrics logged so far, up to step ``up_to`` (a resumed run logs the later steps again)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break  # the last line of a killed run may be cut short
        if row.get("step", 0) <= up_to:
            rows.append(row)
    return rows


def _write_metrics(path: Path, metrics: list[dict[str, Any]]) -> None:
    with atomic_write(path) as fp:
        fp.write("".join(json.dumps(m) + "\n" for m in metrics).encode())


def _callback(run: Path, model: Any, tokenizer: Any, config: TrainConfig, metrics: list[dict[str, Any]],
              progress: Callable[[dict[str, Any]], None] | None, main: bool) -> Any:
    from transformers import TrainerCallback

    class RunCallback(TrainerCallback):  # type: ignore[misc]
        """metrics.jsonl, best/ on each better validation loss, early stopping, the progress bar.
        Under several processes (accelerate launch) only the main one writes; all decide alike."""

        def __init__(self) -> None:
            evals = [m["eval_loss"] for m in metrics if m.get("eval_loss") is not None]
            self.best = min(evals) if evals else None
            since = 0
            for m in metrics:
                if m.get("eval_loss") is not None:
                    since = 0 if m["eval_loss"] <= (self.best or m["eval_loss"]) else since + 1
            self.since_best = since
            self.pending: dict[str, Any] | None = None
            self.seen: int | None = None  # the Trainer's count of input tokens at the last log (restored on resume)
            self.clock = time.perf_counter()
            self.stopped_early = False
            self.fp = open(run / "metrics.jsonl", "a", encoding="utf-8") if main else None  # noqa: SIM115  closed at the end

        def _flush(self) -> None:
            if self.pending is not None:
                if self.fp is not None:
                    self.fp.write(json.dumps(self.pending) + "\n")
                    self.fp.flush()
                metrics.append(self.pending)
                self.pending = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.seen, self.clock = int(state.num_input_tokens_seen), time.perf_counter()  # restored by a resume

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            logs = logs or {}
            step = state.global_step
            if "loss" in logs:
                self._flush()
                now = time.perf_counter()
                total = int(state.num_input_tokens_seen)
                rate = (total - (self.seen or 0)) / (now - self.clock) if now > self.clock else 0.0
                self.seen, self.clock = total, now
                self.pending = {"step": step, "loss": round(float(logs["loss"]), 6), "lr": logs.get("learning_rate"),
                                "tokens": total, "tokens_per_s": round(rate, 1), "epoch": round(float(state.epoch or 0), 4)}
                if progress is not None:
                    progress({"step": step, "max_steps": state.max_steps, "loss": logs["loss"], "tokens_per_s": rate})
            if "eval_loss" in logs:
                loss = round(float(logs["eval_loss"]), 6)
                if self.pending is None and metrics and metrics[-1]["step"] == step:  # the evaluation after the last step
                    metrics[-1]["eval_loss"] = loss
                    if self.fp is None:
                        return
                    self.fp.close()
                    _write_metrics(run / "metrics.jsonl", metrics)
                    self.fp = open(run / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
                    return
                if self.pending is None or self.pending["step"] != step:
                    self._flush()
                    self.pending = {"step": step}
                self.pending["eval_loss"] = loss

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kw: Any) -> None:
            loss = (metrics or {}).get("eval_loss")
            if loss is None:
                return
            if self.best is None or loss < self.best:
                self.best, self.since_best = loss, 0
                if main:
                    save(model, tokenizer, run / "best")
                    (run / "best" / "chatloom-best.json").write_text(json.dumps({"step": state.global_step, "eval_loss": loss}))
            else:
                self.since_best += 1
                if config.patience is not None and self.since_best >= config.patience:
                    control.should_training_stop = True
                    self.stopped_early = True

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._flush()
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if main and folder.is_dir():
                (folder / COMPLETE).write_text(json.dumps({"step": state.global_step}))

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._flush()

        def close(self) -> None:
            self._flush()
            if self.fp is not None:
                self.fp.close()

    return RunCallback()


def train(config: TrainConfig, *, resume: bool = False, progress: Callable[[dict[str, Any]], None] | None = None,
          on_stage: Callable[[str], None] | None = None) -> Result:
    """Train as ``config`` says into ``config.output``; ``resume`` goes on from its last checkpoint."""
    check_method(config)
    stage = on_stage or (lambda _s: None)
    run = Path(config.output)
    if not resume and (run / "run.yaml").exists():
        raise UsageError(f"{run}: a run is already there: `chatloom train --resume {run}` goes on with it, or choose another -o")
    quiet_transformers()
    import torch
    import transformers

    stage(f"model {config.model}")
    folder = resolve(config.model)
    stage(f"data {config.data}")
    data = prepare(config.data, folder, max_length=config.max_length, val=config.val, seed=config.seed)
    run.mkdir(parents=True, exist_ok=True)
    save_config(config, run / "run.yaml")
    checkpoints = _complete_checkpoints(run / "checkpoints") if resume else []
    last = checkpoints[-1] if checkpoints else None
    # a resumed run logs the steps after its checkpoint again; a new one starts with none
    metrics = _read_metrics(run / "metrics.jsonl", int(last.name.split("-")[1])) if last else []
    _write_metrics(run / "metrics.jsonl", metrics)

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    stage("loading weights")
    transformers.set_seed(config.seed)  # LoRA's A matrices are drawn here, before the Trainer seeds its own work
    model = _load_model(config, folder)
    vocab = model.get_input_embeddings().num_embeddings
    if data.meta.get("vocab_size", 0) > vocab:
        raise UsageError(f"{config.data}: token ids go up to {data.meta['vocab_size']:,} but the model has {vocab:,} embeddings")
    train_rows = PackedRows(data.train, config.max_length, config.seed)
    if not len(train_rows):
        raise UsageError(f"{config.data}: no conversation fits in max_length {config.max_length} "
                         f"({train_rows.skipped:,} longer): raise max_length or tokenize with --max-tokens --truncate")
    eval_rows = PackedRows(data.val, config.max_length, config.seed, config.eval_limit) if data.val is not None and len(data.val) else None
    collator = Collator({"train": data.train, "val": data.val})
    precision = _precision(config)
    _write_run_files(run, config, data, folder, train_rows, eval_rows, precision)

    args = transformers.TrainingArguments(
        output_dir=str(run / "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.lr,
        lr_scheduler_type=config.schedule,
        weight_decay=config.weight_decay,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        eval_strategy="steps" if eval_rows is not None else "no",
        eval_steps=config.eval_every,
        save_strategy="steps",
        save_steps=config.eval_every,
        save_total_limit=2,
        logging_steps=1,
        seed=config.seed,
        data_seed=config.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        activation_checkpointing=config.gradient_checkpointing,
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        remove_unused_columns=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="all",  # exact: packed with no padding
        warmup_steps=int(config.warmup) if config.warmup >= 1 else config.warmup,  # < 1: a share of the steps
    )
    main = args.process_index == 0
    callback = _callback(run, model, tokenizer, config, metrics, progress, main)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_Tagged(train_rows, "train"),
                                   eval_dataset=_Tagged(eval_rows, "val") if eval_rows is not None else None,
                                   data_collator=collator, callbacks=[callback])
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)  # the progress bar and metrics.jsonl say it
    stage("training")
    try:
        trainer.train(resume_from_checkpoint=str(last) if last else None)
        evaluated = any(m.get("eval_loss") is not None and m["step"] == trainer.state.global_step for m in metrics)
        if eval_rows is not None and not evaluated:
            trainer.evaluate()  # the end is always evaluated (best/ too, through the callback)
    finally:
        callback.close()
    figures: dict[str, Any] = {}
    if main:
        figures = _finish(run, config, data, model, tokenizer, metrics, train_rows, folder, precision, stage)
    return Result(run, trainer.state.global_step, callback.best, next((m["loss"] for m in reversed(metrics) if "loss" in m), None),
                  callback.stopped_early, figures)


def _finish(run: Path, config: TrainConfig, data: Data, model: Any, tokenizer: Any, metrics: list[dict[str, Any]],
            train_rows: PackedRows, folder: Path, precision: str, stage: Callable[[str], None]) -> dict[str, Any]:
    """final/, best/ (when no evaluation wrote it), loss.png and report.html."""
    stage("writing final/ and best/")
    save(model, tokenizer, run / "final")
    if not (run / "best").exists():  # no validation split: the best known is the last
        shutil.copytree(run / "final", run / "best")
    from .report import write_report

    stage("report")
    return write_report(run, config, data, model, tokenizer, metrics, train_rows, folder, precision)


class _Tagged:
    """A PackedRows whose items say which split they come from (one collator serves both)."""

    def __init__(self, rows: PackedRows, split: str):
        self.rows, self.split = rows, split

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[str, list[int]]:
        return self.split, self.rows[i]


def _write_run_files(run: Path, config: TrainConfig, data: Data, folder: Path, train_rows: PackedRows,
                     eval_rows: PackedRows | None, precision: str) -> None:
    import importlib.metadata as md

    versions = {}
    for package in ("chatloom", "torch", "transformers", "peft", "accelerate"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    info = {
        "model_folder": str(folder.resolve()),
        "data": str(Path(config.data).resolve()),
        "tokens_folder": str(data.folder.resolve()),
        "tokenized_on_the_fly": data.tokenized_here,
        "tokenizer": data.meta.get("tokenizer"),
        "template": data.meta.get("template"),
        "splits": data.meta.get("splits"),
        "digest": _tokens_digest(data),
        "packing": {"max_length": config.max_length, "rows": len(train_rows), "conversations": sum(map(len, train_rows.rows)),
                    "skipped_longer": train_rows.skipped, "fill": round(train_rows.fill, 4), "padding": 0.0,
                    "val_rows": len(eval_rows) if eval_rows is not None else 0},
        "precision": precision,
    }
    with atomic_write(run / "data.json") as fp:
        fp.write(json.dumps(info, indent=2).encode() + b"\n")
    with atomic_write(run / "versions.json") as fp:
        fp.write(json.dumps(versions, indent=2).encode() + b"\n")


def _tokens_digest(data: Data) -> str:
    """sha256 of the token files trained on (train and val .bin and .loss): what the run learned from."""
    import hashlib

    h = hashlib.sha256()
    digest_files(h, [tf.base.with_suffix(ext) for tf in (data.train, data.val) if tf is not None for ext in (".bin", ".loss")])
    return h.hexdigest()
