"""What an executor does: it runs a run of per-conversation steps over chunks of conversations and
gives each chunk's result back, in the chunks' order, whatever ran it (this process, a pool of
processes, a Ray cluster). A step is named by its key, so that a worker can build the recipe's
steps once and pick the ones a run needs.

    with LocalExecutor(recipe.model_dump(), keyed(*resolve_steps(recipe)), workers=4) as executor:
        for result in executor.map(keys, chunks): ...
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ...model import Conversation
from ..base import Drop, Step
from ..recipe import Recipe, resolve_steps

StepKey = tuple[int, int]  # (the task's index, or -1 for the recipe's own filters and transforms; the position)


@dataclass
class ChunkResult:
    """What a run of steps made of one chunk: compact enough to send between processes."""

    out: list[Conversation]
    rejects: list[tuple[int, str, Conversation]]  # (step position, reason, conversation), as they were dropped
    counts: list[tuple[int, int, Counter[str], float]]  # per step: seen, kept, what it changed, seconds


def run_chunk(steps: list[Step[Any]], convs: list[Conversation]) -> ChunkResult:
    """The steps over a chunk, each running its own loop; the streams are chained, so a
    conversation goes through every step before the next one starts."""
    rejects: list[tuple[int, str, Conversation]] = []
    stream: Iterable[Conversation] = convs
    for pos, step in enumerate(steps):
        step.reset()
        stream = step.run(stream, _dropped_into(rejects, pos))
    out = list(stream)
    return ChunkResult(out, rejects, [(s.seen, s.kept, s.stats, s.seconds) for s in steps])


def _dropped_into(rejects: list[tuple[int, str, Conversation]], pos: int) -> Drop:
    def drop(conv: Conversation, reason: str) -> None:
        rejects.append((pos, reason, conv))

    return drop


def keyed(task_steps: list[list[Step[Any]]], steps: list[Step[Any]]) -> dict[StepKey, Step[Any]]:
    """The steps of ``resolve_steps`` by key."""
    out = {(t, i): s for t, own in enumerate(task_steps) for i, s in enumerate(own)}
    out.update({(-1, i): s for i, s in enumerate(steps)})
    return out


def recipe_steps(recipe: dict[str, Any]) -> dict[StepKey, Step[Any]]:
    """A worker's own copy of a recipe's steps (``recipe`` as ``Recipe.model_dump()`` gives it)."""
    return keyed(*resolve_steps(Recipe.model_validate(recipe)))


class Executor:
    """Runs runs of per-conversation steps; a context manager that frees its workers at the end."""

    def map(self, keys: list[StepKey], chunks: Iterable[list[Conversation]]) -> Iterator[ChunkResult]:
        """For each chunk, in order: the steps ``keys`` over it."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
