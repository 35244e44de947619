"""The two sides of a diff or a sync: a dataset (read and written through ``Store``) or an export
file of any format chatloom reads (read-only; its conversations are held in memory).

A side gives its conversations' states in id order (``states``) and the conversations themselves
(``get``); a dataset's is written through its ``store`` (``Store.replace_if``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import ChatloomError, UsageError
from ..model import Conversation, ensure_id
from ..sources.options import ImportOptions
from ..store import Store
from ..store.db import is_dataset_file
from ..store.sync import conversation_state


class Side:
    """One side: ``name`` is how messages and the sync base name it."""

    name: str

    def states(self) -> Iterator[tuple[str, str]]:
        raise NotImplementedError

    def get(self, conv_id: str) -> Conversation | None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class DatasetSide(Side):
    def __init__(self, path: str | Path):
        self.store = Store(path)
        self.name = str(Path(path).resolve())

    def states(self) -> Iterator[tuple[str, str]]:
        return self.store.states()

    def get(self, conv_id: str) -> Conversation | None:
        e = self.store.entry(conv_id)
        return None if e.deleted else e.conversation

    def close(self) -> None:
        self.store.close()


class FileSide(Side):
    """An export file: read once, its conversations by id (an id the file lacks is made from the
    digest, as an import makes it)."""

    def __init__(self, path: str | Path, fmt: str = "auto", options: ImportOptions | None = None):
        from ..importing.files import plan
        from ..importing.run import check_me
        from ..sources.base import Reader

        self.name = str(Path(path).resolve())
        self.convs: dict[str, Conversation] = {}
        self.skipped: list[Reader] = []  # the readers of files with bad records (skipped, as an import skips them)
        with plan([str(path)], fmt, options) as files:
            check_me(files)  # a chat export read without 'me' lists its speakers and asks, as an import does
            for file, source, _detected in files:
                reader = Reader(str(file))
                for conv in source.read(file, reader):
                    self.convs[ensure_id(conv)] = conv
                if reader.bad_count:
                    self.skipped.append(reader)

    def states(self) -> Iterator[tuple[str, str]]:
        for conv_id in sorted(self.convs):
            yield conv_id, conversation_state(self.convs[conv_id])

    def get(self, conv_id: str) -> Conversation | None:
        return self.convs.get(conv_id)


def open_side(target: str, fmt: str = "auto", options: ImportOptions | None = None) -> Side:
    """A dataset (an SQLite file that is a chatloom dataset) or an export file."""
    path = Path(target)
    if not path.exists():
        raise UsageError(f"{target}: no such dataset or file")
    if is_dataset_file(path):  # read without dropping the locks of a file open here already
        return DatasetSide(path)
    try:
        return FileSide(path, fmt, options)
    except sqlite3.Error as err:
        raise ChatloomError(f"{target}: {err}") from None


def merge_join(a: Iterator[tuple[str, str]], b: Iterator[tuple[str, str]]) -> Iterator[tuple[str, str | None, str | None]]:
    """(id, state in a, state in b) for every id of either, in id order (both inputs by id)."""
    x, y = next(a, None), next(b, None)
    while x is not None or y is not None:
        if y is None or (x is not None and x[0] < y[0]):
            yield x[0], x[1], None  # type: ignore[index]
            x = next(a, None)
        elif x is None or y[0] < x[0]:
            yield y[0], None, y[1]
            y = next(b, None)
        else:
            yield x[0], x[1], y[1]
            x, y = next(a, None), next(b, None)


def read_sides(targets: Sequence[str], options: ImportOptions | None = None) -> list[Side]:
    sides: list[Side] = []
    try:
        for t in targets:
            sides.append(open_side(t, options=options))
    except BaseException:
        for s in sides:
            s.close()
        raise
    return sides
