"""``chatloom serve --engine vllm``: the command line that hands a model or a run to vLLM.

Untested here: vLLM needs a GPU machine and its own environment (its wheels pin their own torch
and transformers). The flags are those of vLLM 0.34's own argument parser: a run whose best/final
is a LoRA adapter is served as its base with ``--enable-lora --lora-modules NAME=ADAPTER``; the
token goes in ``VLLM_API_KEY`` (not on the command line, where ``ps`` would show it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import orjson

from ..errors import UsageError

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # what vLLM's --max-lora-rank takes


def available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def command(folder: Path, *, model_name: str, host: str, port: int) -> list[str]:
    """``vllm serve …`` for a model folder, or for a LoRA adapter folder on its base."""
    if not available():
        raise UsageError("vllm is not installed (it needs a GPU machine and its own environment)")
    adapter = folder / "adapter_config.json"
    if adapter.exists():
        config = orjson.loads(adapter.read_bytes())
        base = config.get("base_model_name_or_path")
        if not base or not Path(base, "config.json").exists():
            raise UsageError(f"{folder}: the adapter's base model {base} is missing")
        rank = int(config.get("r") or 16)
        max_rank = next((r for r in LORA_RANKS if r >= rank), LORA_RANKS[-1])
        argv = ["vllm", "serve", str(base), "--enable-lora", "--lora-modules", f"{model_name}={folder}",
                "--max-lora-rank", str(max_rank)]
    else:
        argv = ["vllm", "serve", str(folder), "--served-model-name", model_name]
    return argv + ["--host", host, "--port", str(port)]
