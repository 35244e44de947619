"""The dataset file: opening it (what may become a dataset, WAL, pragmas, migrations), the write
transaction, the read snapshot, and the one way SQLite's errors are said (naming the file).

``StoreBase`` is what every part of ``Store`` stands on: ``path``, the connection ``db``,
``_write()``, a ``BEGIN IMMEDIATE`` transaction that nested calls join, and ``_reading()``, a read
transaction: statements inside it see one snapshot while others write. A reader that streams
(``iter_conversations``) opens a connection of its own with ``connect``.

What may become a dataset is decided before anything is written: a file is looked at (its
header, then, when the header cannot tell, SQLite opened ``immutable``: no lock, no journal, no
side files) and only a chatloom dataset (``application_id``), or a new path, a zero-byte file or an
SQLite file with nothing in it when ``create`` is asked, is opened for writing. Another program's
SQLite file is never written, not even its journal mode.
"""

from __future__ import annotations

import functools
import inspect
import os
import sqlite3
import stat
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

from ..errors import StoreError
from .migrations import migrate

APPLICATION_ID = 0x43484C4D  # "CHLM": tells a chatloom dataset from another SQLite file
DEFAULT_DATASET = "chatloom.db"
_MAGIC = b"SQLite format 3\x00"


def dataset_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The dataset a command works on: ``-d PATH``, else ``$CHATLOOM_DATASET``, else ./chatloom.db."""
    return Path(path or os.environ.get("CHATLOOM_DATASET") or DEFAULT_DATASET)


def damaged(path: Path, what: str, *, opened: bool = True) -> str:
    """The message for a dataset file SQLite finds damaged: what it found, and what can be done
    (``opened``: SQLite could open it, so ``chatloom check`` can list the damage)."""
    recover = f"SQLite's recovery ('sqlite3 {path} .recover | sqlite3 NEW.db') copies what can still be read into a new file"
    if not opened:
        return f"{path}: the dataset file is damaged ({what}) so that SQLite cannot open it; {recover}"
    return f"{path}: the dataset file is damaged ({what}); 'chatloom check -d {path}' lists the damage, and {recover}"


def store_error(path: Path, err: sqlite3.Error, doing: str = "") -> StoreError:
    """An SQLite error as the user should read it: the file named, damage told apart from a busy
    or read-only file (``doing``: what failed, ``cannot open the dataset: `` when opening it)."""
    text = str(err)
    if isinstance(err, sqlite3.DatabaseError) and any(
        s in text for s in ("malformed", "file is not a database", "disk image", "corrupt")
    ):
        return StoreError(damaged(path, text, opened=not doing.startswith("cannot open")))
    if "readonly" in text or "read-only" in text:
        return StoreError(f"{path}: cannot write: the file (or its folder) is read-only")
    if "locked" in text or "busy" in text:
        return StoreError(f"{path}: busy: another process is writing it ({text}); try again when it is done")
    return StoreError(f"{path}: {doing}{text}")


F = TypeVar("F", bound=Callable[..., Any])


def names_its_file(method: F) -> F:
    """A public ``Store`` method whose SQLite errors name the dataset file (``store_error``);
    a generator's too, wherever it fails while it is read."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream(self: StoreBase, *args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from method(self, *args, **kwargs)
            except sqlite3.Error as err:
                raise store_error(self.path, err) from err

        return stream  # type: ignore[return-value]

    @functools.wraps(method)
    def call(self: StoreBase, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as err:
            raise store_error(self.path, err) from err

    return call  # type: ignore[return-value]


#: The dataset files this process has open, by (device, inode), with how many ``Store``s each.
#: POSIX record locks belong to a process and a file: closing *any* descriptor of the file drops
#: all of them, SQLite's too. SQLite keeps its own descriptors open for that reason, but a plain
#: ``open(path).close()`` (``_looks`` reading the header) dropped the shared lock every WAL
#: connection holds; another process closing its last connection then took the file for its own,
#: checkpointed and deleted the WAL under this one, whose later commits no one else saw. A file
#: in here is not read again.
_LIVE: dict[tuple[int, int], int] = {}
_LIVE_LOCK = threading.Lock()


def _live_key(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def is_dataset_file(path: Path) -> bool:
    """Whether ``path`` is an SQLite file, read without dropping this process's locks on it (a
    file open here already is one)."""
    try:
        st = path.stat()
    except OSError:
        return False
    if _live_key(st) in _LIVE:
        return True
    if not stat.S_ISREG(st.st_mode):
        return False
    with open(path, "rb") as f:
        return f.read(16) == _MAGIC[:16]


def _looks(path: Path, create: bool) -> bool:
    """Refuse (``StoreError``) what must not be opened as a dataset, reading only; True when the
    file is to become a new dataset (a new path, a zero-byte file, an SQLite file with nothing in
    it), False when it is one already."""
    try:
        st = path.stat()
    except FileNotFoundError:
        if create:
            return True
        raise StoreError(f"{path}: no such dataset; create one with 'chatloom import -d {path} FILE'") from None
    except OSError as err:
        raise StoreError(f"{path}: cannot open the dataset: {err.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise StoreError(f"{path}: a folder, not a dataset file")
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"{path}: not a regular file, not a dataset")
    wal = Path(f"{path}-wal")
    if st.st_size == 0 and not (wal.exists() and wal.stat().st_size):
        if create:
            return True  # a zero-byte file becomes a dataset (as SQLite itself treats it), for import only
        raise StoreError(f"{path}: empty file, not a chatloom dataset; 'chatloom import -d {path} FILE' makes it one")
    if _live_key(st) in _LIVE:
        return False  # open here already (a dataset), and reading it now would drop this process's locks (see _LIVE)
    try:
        with open(path, "rb") as f:
            header = f.read(100)
    except OSError as err:
        raise StoreError(f"{path}: cannot open the dataset: {err.strerror}") from None
    if not header.startswith(_MAGIC):
        raise StoreError(f"{path}: not a chatloom dataset (not an SQLite file)")
    app_id = int.from_bytes(header[68:72], "big") if len(header) >= 72 else 0
    if app_id == APPLICATION_ID:
        return False
    if app_id:
        raise StoreError(f"{path}: not a chatloom dataset (an SQLite file of another program: application_id {app_id:#x})")
    # The header cannot tell (most programs set no application_id): ask SQLite, immutable.
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?immutable=1"
    try:
        with _closing(sqlite3.connect(uri, uri=True)) as ro:
            (app_id,) = ro.execute("PRAGMA application_id").fetchone()
            (version,) = ro.execute("PRAGMA user_version").fetchone()
            (objects,) = ro.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as err:
        raise store_error(path, err, "cannot open the dataset: ") from None
    if app_id == APPLICATION_ID:
        return False
    if app_id or version or objects:
        raise StoreError(f"{path}: not a chatloom dataset (an SQLite file with other tables); nothing was written to it")
    if create:
        return True
    raise StoreError(f"{path}: an empty SQLite file, not a chatloom dataset; 'chatloom import -d {path} FILE' makes it one")


@contextmanager
def _closing(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    try:
        yield db
    finally:
        db.close()


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the dataset at ``path`` (one ``open_dataset`` has opened): WAL, pragmas."""
    db = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=False)
    db.execute("PRAGMA busy_timeout = 60000")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA cache_size = -65536")
    db.execute("PRAGMA temp_store = MEMORY")
    return db


def open_dataset(path: Path, *, create: bool = False) -> sqlite3.Connection:
    """The dataset at ``path``, migrated. ``StoreError`` when it is not a dataset (nothing is
    written to it then), is damaged, or cannot be opened; with ``create``, a new path, a zero-byte
    file or an empty SQLite file becomes one."""
    memory = str(path) == ":memory:"
    new = not memory and _looks(path, create)
    try:
        if new:  # claimed before WAL is switched on: that too is a write
            with _closing(sqlite3.connect(path, isolation_level=None, timeout=60)) as db:
                _claim(db, path)
        db = connect(path)
    except sqlite3.Error as err:
        raise store_error(path, err, "cannot open the dataset: ") from None
    try:
        migrate(db)
    except sqlite3.Error as err:
        db.close()
        raise store_error(path, err, "cannot open the dataset: ") from None
    except RuntimeError as err:
        db.close()
        raise StoreError(f"{path}: {err}") from None
    except BaseException:
        db.close()
        raise
    return db


def _claim(db: sqlite3.Connection, path: Path) -> None:
    """Make a new or empty file a dataset: its application id, set in the same transaction that
    looks once more that nothing else is in it (another process may have written it since)."""
    db.execute("PRAGMA busy_timeout = 60000")
    db.execute("BEGIN IMMEDIATE")
    try:
        (app_id,) = db.execute("PRAGMA application_id").fetchone()
        (version,) = db.execute("PRAGMA user_version").fetchone()
        (objects,) = db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if app_id != APPLICATION_ID:
            if app_id or version or objects:
                raise StoreError(f"{path}: not a chatloom dataset (an SQLite file with other tables); nothing was written to it")
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class StoreBase:
    """A dataset: one SQLite file. Opening it migrates it; ``create=False`` refuses a missing file."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, create: bool = False):
        self.path = dataset_path(path)
        if create and str(self.path) != ":memory:":
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StoreError(f"{self.path}: cannot create the dataset: {err.strerror}") from None
        self.db = open_dataset(self.path, create=create)
        self._depth = 0  # how many ``_write`` blocks are open
        self._seq: int | None = None  # the last change number given in this write transaction
        self._live: tuple[int, int] | None = None
        if str(self.path) != ":memory:":
            with _LIVE_LOCK:
                self._live = _live_key(self.path.stat())
                _LIVE[self._live] = _LIVE.get(self._live, 0) + 1

    def reset(self) -> None:
        """End a transaction that a caller stopped in the middle of (a request that failed
        mid-read keeps its snapshot otherwise); nothing it wrote is kept."""
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        self._depth = 0

    def checkpoint_after(self, pages: int) -> None:
        """Let this connection's commits checkpoint the WAL only once it holds ``pages`` pages
        (SQLite's default: 1,000; 0: never), for a program that checkpoints in the background
        (``checkpoint``) so that no commit waits for one."""
        self.db.execute(f"PRAGMA wal_autocheckpoint = {int(pages)}")

    def checkpoint(self) -> tuple[int, int]:
        """Copy what the WAL holds into the file, as far as no reader's snapshot needs it, without
        waiting for anyone (a passive checkpoint): (pages in the WAL, pages copied)."""
        try:
            _, log, done = self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as err:
            raise store_error(self.path, err, "cannot checkpoint: ") from None
        return log, done

    def close(self) -> None:
        self.db.close()
        if self._live is not None:
            with _LIVE_LOCK:
                left = _LIVE.get(self._live, 1) - 1
                if left:
                    _LIVE[self._live] = left
                else:
                    _LIVE.pop(self._live, None)
            self._live = None

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
        except sqlite3.Error as err:
            raise store_error(self.path, err, "cannot write: ") from None
        self._depth = 1
        self._seq = None
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """Several writes as one transaction: all of them or none (the writes inside join it).
        Shorter than one each (one commit), but the write lock is held for all of them."""
        return self._write()

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: the statements inside it see one snapshot of the dataset, whatever
        others commit meanwhile (inside a write transaction, that one's)."""
        if self._depth or self.db.in_transaction:
            yield self.db
            return
        self.db.execute("BEGIN")
        try:
            yield self.db
        finally:
            self.db.execute("COMMIT")  # it wrote nothing: this only ends the snapshot

    def _next_seq(self, n: int = 1) -> int:
        """The first of ``n`` change numbers for conversations written in this transaction (the
        changes feed's order: see migration 8)."""
        if self._seq is None:  # the highest given, even by a row since removed (undo_import keeps it as seq_floor)
            self._seq = self.db.execute(
                "SELECT max((SELECT coalesce(max(seq), 0) FROM conversations), "
                "coalesce((SELECT CAST(value AS INTEGER) FROM settings WHERE key = 'seq_floor'), 0))").fetchone()[0]
        first = self._seq + 1
        self._seq += n
        return first

    def _max_pk(self, table: str) -> int:
        return self.db.execute(f"SELECT coalesce(max(pk), 0) FROM {table}").fetchone()[0]
