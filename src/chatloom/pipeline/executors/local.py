"""The local executor: the steps run in this process, or (``workers`` > 1) in a pool of
``workers`` processes, each of which builds the recipe's steps once (``_init_worker``) and gets
each chunk as JSON bytes. ``parallel.ordered_map`` keeps the chunks in order and a bounded number
in flight, and draws them in this thread, so that a segment's map can feed on another's on the
same pool."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from ...model import Conversation
from ...parallel import ordered_map, process_pool
from ..base import Step
from .base import ChunkResult, Executor, StepKey, recipe_steps, run_chunk


class LocalExecutor(Executor):
    """:param recipe: the recipe as ``Recipe.model_dump()`` gives it (the workers build its steps)
    :param steps: this process's steps, by key (used when ``workers`` is 1)
    """

    def __init__(self, recipe: dict[str, Any], steps: dict[StepKey, Step[Any]], workers: int = 1):
        self.steps = steps
        self._stack = contextlib.ExitStack()
        # spawn, not fork: the tokenizers' threads and fork do not mix
        self.pool = self._stack.enter_context(process_pool(workers, context="spawn", initializer=_init_worker, initargs=(recipe,)))

    def map(self, keys: list[StepKey], chunks: Iterable[list[Conversation]]) -> Iterator[ChunkResult]:
        if self.pool is None:
            steps = [self.steps[k] for k in keys]
            return (run_chunk(steps, chunk) for chunk in chunks)
        encode = msgspec.json.Encoder()
        return ordered_map(_work, ((keys, encode.encode(chunk)) for chunk in chunks), self.pool)

    def close(self) -> None:
        self._stack.close()


# -- in each worker process --------------------------------------------------------------------

_worker_steps: dict[StepKey, Step[Any]] = {}
_decode = msgspec.json.Decoder(list[Conversation])


def _init_worker(recipe: dict[str, Any]) -> None:
    _worker_steps.clear()
    _worker_steps.update(recipe_steps(recipe))


def _work(job: tuple[list[StepKey], bytes]) -> ChunkResult:
    keys, payload = job
    return run_chunk([_worker_steps[(k[0], k[1])] for k in keys], _decode.decode(payload))
