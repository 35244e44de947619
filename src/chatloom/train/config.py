"""The configuration of a training run: a YAML file, flags over it, one pydantic model.

    config = load_config("run.yaml", {"max_steps": 30})   # flags win over the file
    config.model, config.lora.r, config.eval_every

Unknown keys are errors that name the key (``extra="forbid"``), and so are values of the wrong
type. The whole resolved configuration is saved in the run folder as ``run.yaml``; ``--resume``
reads it back from there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import UsageError

EXAMPLE = """\
# chatloom train run.yaml — every key is optional but model and data; flags override the file:
#   chatloom train run.yaml --max-steps 100
model: smollm2            # tiny:gpt2 | tiny:llama | smollm2 | a .gguf file | a model folder | a Hub name in the cache
data: tokens              # `chatloom tokenize` output, or a dataset (.db) / JSONL export, tokenized on the fly
output: runs/smollm2-me   # the run folder: run.yaml, metrics.jsonl, loss.png, report.html, best/, final/
method: lora              # lora | qlora (4-bit, needs a CUDA GPU) | full
lora:
  r: 16
  alpha: 32
  dropout: 0.05
  target_modules: all-linear   # or a list: [q_proj, v_proj]
precision: auto           # auto (bf16 where the hardware has it, else fp32) | bf16 | fp16 | fp32
gradient_checkpointing: false
max_length: 1024          # tokens per packed row; longer conversations are left out (counted)
batch_size: 4             # packed rows per step and device
gradient_accumulation: 1
lr: 2.0e-4
schedule: cosine          # linear | cosine | constant | constant_with_warmup
warmup: 0.03              # a share of the steps (< 1) or a number of steps
weight_decay: 0.0
epochs: 1
max_steps: null           # stops here, whatever the epochs
eval_every: 50            # steps between evaluations on the validation split (and checkpoints)
eval_limit: 500           # validation conversations evaluated (the first ones; null: all)
patience: null            # stop after this many evaluations without a better validation loss
seed: 0
val: 0.05                 # for data tokenized on the fly: the validation share (or a count)
samples: 3                # held-out prompts answered by the base and the tuned model in report.html
sample_tokens: 48
"""


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    data: str
    output: str
    method: Literal["lora", "qlora", "full"] = "lora"
    lora: LoraSettings = LoraSettings()
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    gradient_checkpointing: bool = False
    max_length: int = Field(1024, ge=8)
    batch_size: int = Field(4, ge=1)
    gradient_accumulation: int = Field(1, ge=1)
    lr: float = Field(2e-4, gt=0)
    schedule: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup: float = Field(0.03, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    epochs: float = Field(1, gt=0)
    max_steps: int | None = Field(None, ge=1)
    eval_every: int = Field(50, ge=1)
    eval_limit: int | None = Field(500, ge=1)
    patience: int | None = Field(None, ge=1)
    seed: int = 0
    val: float = Field(0.05, ge=0)
    samples: int = Field(3, ge=0)
    sample_tokens: int = Field(48, ge=1)

    @model_validator(mode="after")
    def _checked(self) -> TrainConfig:
        if self.method == "full" and "lora" in self.model_fields_set:
            raise ValueError("lora: settings given, but method is full")
        return self


def _error(err: ValidationError, source: str) -> UsageError:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top)"
    what = first["msg"]
    if first["type"] == "extra_forbidden":
        what = "unknown key"
    elif first["type"] == "missing":
        what = "required: give it in the file or as a flag"
    return UsageError(f"{source}: {key}: {what}")


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise UsageError(f"{path}: cannot read: {err.strerror}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{path}{where}: not valid YAML: {getattr(err, 'problem', None) or err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def load_config(path: str | os.PathLike[str] | None, overrides: dict[str, Any]) -> TrainConfig:
    """The file's settings (if any) with ``overrides`` (flags given, not None) on top."""
    data = read_yaml(path) if path is not None else {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key.startswith("lora_"):
            data.setdefault("lora", {})
            if isinstance(data["lora"], dict):
                data["lora"][key.removeprefix("lora_")] = value
        else:
            data[key] = value
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as err:
        raise _error(err, str(path) if path is not None else "train") from None


def save_config(config: TrainConfig, path: str | os.PathLike[str]) -> None:
    from ..fileio import atomic_write

    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    with atomic_write(path) as fp:
        fp.write(text.encode())
