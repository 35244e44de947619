"""The dataset file: opening it (WAL, pragmas, the application id, migrations) and write transactions.

``StoreBase`` is what every part of ``Store`` stands on: ``path``, the connection ``db``, and
``_write()``, a ``BEGIN IMMEDIATE`` transaction that nested calls join. A reader that must see
one snapshot while others write (``iter_conversations``) opens a connection of its own with
``connect``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from ..errors import StoreError
from .migrations import migrate

APPLICATION_ID = 0x43484C4D  # "CHLM": tells a chatloom dataset from another SQLite file
DEFAULT_DATASET = "chatloom.db"


def dataset_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The dataset a command works on: ``-d PATH``, else ``$CHATLOOM_DATASET``, else ./chatloom.db."""
    return Path(path or os.environ.get("CHATLOOM_DATASET") or DEFAULT_DATASET)


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the dataset at ``path``, migrated; StoreError if it is not a dataset."""
    try:
        db = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 60000")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA cache_size = -65536")
        db.execute("PRAGMA temp_store = MEMORY")
        (version,) = db.execute("PRAGMA user_version").fetchone()
        (app_id,) = db.execute("PRAGMA application_id").fetchone()
        if version == 0:
            if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise StoreError(f"{path}: not a chatloom dataset (an SQLite file with other tables)")
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        elif app_id != APPLICATION_ID:
            raise StoreError(f"{path}: not a chatloom dataset (SQLite application_id {app_id:#x})")
        migrate(db)
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{path}: cannot open the dataset: {err}") from None
    except RuntimeError as err:
        raise StoreError(f"{path}: {err}") from None
    return db


class StoreBase:
    """A dataset: one SQLite file. Opening it migrates it; ``create=False`` refuses a missing file."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, create: bool = False):
        self.path = dataset_path(path)
        if not create and not self.path.exists():
            raise StoreError(f"{self.path}: no such dataset; create one with 'chatloom import -d {self.path} FILE'")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = connect(self.path)
        self._depth = 0  # how many ``_write`` blocks are open

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE); nested calls join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield self.db
            finally:
                self._depth -= 1
            return
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as err:
            raise StoreError(f"{self.path}: cannot write: {err}") from None
        self._depth = 1
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0

    def _max_pk(self, table: str) -> int:
        return self.db.execute(f"SELECT coalesce(max(pk), 0) FROM {table}").fetchone()[0]
