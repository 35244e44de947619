"""``export``: write a dataset in a format, to one file or to a train/validation folder.

    export(store, "out.jsonl", fmt="openai")
    export(store, "out/", fmt="openai", split=0.1, seed=0)   # out/train.jsonl, out/val.jsonl
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fileio import atomic_write
from .formats import get_format
from .model import Conversation
from .split import validation_ids
from .store import Store


@dataclass
class ExportResult:
    files: dict[str, int] = field(default_factory=dict)  # path → conversations written
    dropped: Counter[str] = field(default_factory=Counter)


def export(
    store: Store,
    out: str,
    *,
    fmt: str = "openai",
    split: float | None = None,
    seed: int = 0,
    tag: str | None = None,
    progress: Callable[[int], None] | None = None,
    **options: Any,
) -> ExportResult:
    """Write the live conversations (optionally one tag) to ``out``; ``-`` is standard output.

    With ``split``, ``out`` is a folder holding ``train`` and ``val`` files, split by
    conversation (see ``chatloom.split``). Every file is written atomically.
    """
    writer = get_format(fmt, **options)
    result = ExportResult()
    done = 0

    def counted(convs: Iterator[Conversation]) -> Iterator[Conversation]:
        nonlocal done
        for conv in convs:
            yield conv
            done += 1
            if progress is not None and done % 256 == 0:
                progress(done)

    if split is None:
        convs = counted(store.iter_conversations(tag=tag))
        if out == "-":
            report = writer.write(convs, sys.stdout.buffer)
        else:
            with atomic_write(out) as fp:
                report = writer.write(convs, fp)
        result.files[out] = report.written
        result.dropped += report.dropped
        return result

    if tag is None:
        ids = [row[0] for row in store.db.execute("SELECT id FROM conversations WHERE deleted = 0")]
    else:
        ids = [row[0] for row in store.db.execute(
            "SELECT c.id FROM conversations c JOIN tags t ON t.conv = c.pk WHERE c.deleted = 0 AND t.tag = ?", (tag,))]
    val = validation_ids(ids, split, seed)
    folder = Path(out)
    paths = {name: folder / f"{name}{writer.extension}" for name in ("train", "val")}

    def only(which: str, convs: Iterator[Conversation]) -> Iterator[Conversation]:
        for conv in convs:
            if (conv.id in val) == (which == "val"):
                yield conv

    # two passes over the store keep memory flat whatever the size of the dataset
    for name, path in paths.items():
        with atomic_write(path) as fp:
            report = writer.write(only(name, store.iter_conversations(tag=tag)), fp)
        result.files[str(path)] = report.written
        result.dropped += report.dropped
    return result
