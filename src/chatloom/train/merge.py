"""``chatloom train merge``: a LoRA run's adapter folded into a full model folder.

    merge("runs/smol", which="best")     # → runs/smol/merged-best: config, safetensors, tokenizer, template
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError
from .models import load, run_model_folder, save


def merge(run: str | os.PathLike[str], *, which: str = "best", output: str | os.PathLike[str] | None = None) -> Path:
    folder = run_model_folder(run, which)
    if folder is None:
        raise UsageError(f"{run}: not a training run (no run.yaml)")
    dest = Path(output) if output is not None else Path(run) / f"merged-{which}"
    if dest.exists() and any(dest.iterdir()):
        raise UsageError(f"{dest}: exists and is not empty; choose another -o")
    model, tokenizer = load(str(run), which=which, dtype="fp32")  # an adapter is merged into its base here
    save(model, tokenizer, dest)
    return dest
