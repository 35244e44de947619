"""Executors: what runs the per-conversation steps of a build. ``local.py``: this process or a pool
of processes; ``ray.py``: Ray Data, on a cluster or a local Ray. Both give the same outputs;
``base.py`` holds what they share (a chunk's result, running the steps over a chunk)."""

from __future__ import annotations

from typing import Any

from ...errors import ParamError
from ..base import Step
from .base import ChunkResult, Executor, StepKey, keyed, run_chunk

__all__ = ["ChunkResult", "Executor", "StepKey", "get_executor", "keyed", "run_chunk"]


def get_executor(name: str, recipe: dict[str, Any], steps: dict[StepKey, Step[Any]], workers: int = 1) -> Executor:
    """``local`` or ``ray``, for ``recipe`` (as ``Recipe.model_dump()`` gives it) on ``workers``
    processes or CPUs; ``steps`` are this process's own, by key (the local executor with one worker
    uses them)."""
    if name == "ray":
        from .ray import RayExecutor

        return RayExecutor(recipe, workers)
    if name != "local":
        raise ParamError("unknown {executor} '{value}'; choose local or ray", value=name)
    from .local import LocalExecutor

    return LocalExecutor(recipe, steps, workers)
