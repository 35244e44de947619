"""Integrity: ``check`` finds damage (SQLite's own checks and chatloom's invariants) and
``repair_fts`` rebuilds the one part that can be rebuilt from the rest, the full-text index.

The invariants: a live conversation's messages are exactly the range ``[msg_start, msg_start +
n_messages)`` of ``messages.pk`` and belong to it; no message belongs to a tombstone or lies
outside its conversation's range; a conversation's revision is the latest of its history; its
tags column agrees with the ``tags`` index table; its content hashes to its digest.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StoreError
from ..model import digest
from .db import connect, damaged
from .read import Read
from .rows import loads


@dataclass
class CheckResult:
    """What ``check`` found: one line per problem. ``damaged``: SQLite's own check failed, so the
    file must be recovered (chatloom's invariants were not checked: they need a sound file)."""

    problems: list[str] = field(default_factory=list)
    conversations: int = 0
    messages: int = 0
    damaged: bool = False
    notes: list[str] = field(default_factory=list)  # what could not be checked, and why

    @property
    def ok(self) -> bool:
        return not self.problems


def _problems(rows: Iterable[tuple[str]]) -> list[str]:
    """The lines of an integrity or quick check's rows that name a problem (a row may hold several)."""
    lines = (line.strip() for (text,) in rows for line in text.splitlines())
    return [line for line in lines if line and line != "ok" and not line.startswith("*** in database")]


#: up to this size a dataset file is checked whole before an import writes into it; above it, the
#: tables an import reads and rewrites row by row (see ``SoundCheck``)
WHOLE_CHECK_BYTES = 256 << 20
#: the tables every import reads or rewrites row by row (the messages and the full-text index it
#: only appends to: damage there stops the import when it meets it)
ROW_TABLES = ("conversations", "revisions", "tags", "imports", "settings", "token_counts")


class SoundCheck:
    """SQLite's ``quick_check`` of a dataset file on a connection and a thread of their own, beside
    an import: it spends its time inside SQLite, which lets the import's threads run meanwhile.
    Its snapshot is the file before the import, whatever the import writes meanwhile (WAL).

        sound = store.start_sound_check()
        store.import_batches(batches, sound=sound)   # commits nothing before it has passed
        sound.close()

    The whole file, up to ``WHOLE_CHECK_BYTES``: on the bench's dataset of 100,352 conversations
    (419 MB, in the page cache) that takes 0.45 s on an idle machine and 0.6-1.2 s on a busy one,
    about 1 s a GB, and a GB that is not in the page cache must first be read from disk: an import
    of a few hundred conversations would wait seconds for it. Above it, ``ROW_TABLES`` and their
    indexes (0.07-0.14 s on that dataset): what every import reads and rewrites; damage among the
    messages stops an import that meets it, and ``chatloom check`` finds it anywhere."""

    def __init__(self, path: Path, tables: tuple[str, ...] | None = None):
        self.path = path
        self.tables = tables  # None: the whole file
        self.problems: list[str] | None = None
        self._db = connect(path)
        self._thread = threading.Thread(target=self._run, name="chatloom-sound-check", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            found: list[str] = []
            for pragma in ["quick_check"] if self.tables is None else [f"quick_check({t})" for t in self.tables]:
                found += _problems(self._db.execute(f"PRAGMA {pragma}"))
            self.problems = found
        except sqlite3.OperationalError as err:  # interrupted by close(): not a verdict
            self.problems = [] if "interrupt" in str(err) else [str(err)]
        except sqlite3.DatabaseError as err:
            self.problems = [str(err)]

    def finished(self) -> bool:
        return not self._thread.is_alive()

    def raise_if_damaged(self) -> None:
        """Wait for the check; ``StoreError`` when it found the file damaged."""
        self._thread.join()
        if self.problems:
            more = f", and {len(self.problems) - 1} more problems" if len(self.problems) > 1 else ""
            raise StoreError(damaged(self.path, self.problems[0] + more) + "; nothing was imported into it")

    def close(self) -> None:
        """Stop the check if it still runs, and close its connection."""
        if self._thread.is_alive():
            self._db.interrupt()
            self._thread.join()
        self._db.close()


class Check(Read):
    """The integrity checks of ``Store``."""

    def start_sound_check(self) -> SoundCheck:
        """Start SQLite's quick check of the file beside what comes next: of the whole file up to
        ``WHOLE_CHECK_BYTES``, else of ``ROW_TABLES`` (see ``SoundCheck``)."""
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return SoundCheck(self.path, None if size <= WHOLE_CHECK_BYTES else ROW_TABLES)

    def sqlite_problems(self, *, quick: bool = False) -> list[str]:
        """What SQLite's own check (``PRAGMA integrity_check``, or the faster ``quick_check``,
        which skips comparing indexes with their tables) finds wrong in the file: none when it is
        sound."""
        try:
            return _problems(self.db.execute(f"PRAGMA {'quick_check' if quick else 'integrity_check'}"))
        except sqlite3.DatabaseError as err:
            return [str(err)]

    def check(self) -> CheckResult:
        """Check the file (SQLite's own check, foreign keys, the FTS index) and our invariants:
        message ranges, digests, tags, revision numbers."""
        db = self.db
        res = CheckResult()
        damage = self.sqlite_problems()
        if damage:
            res.problems += [f"sqlite: {line}" for line in damage]
            res.damaged = True
            return res
        res.conversations = self.count()
        res.messages = db.execute("SELECT count(*) FROM messages").fetchone()[0]
        fk = db.execute("PRAGMA foreign_key_check").fetchall()
        if fk:
            res.problems.append(f"foreign keys: {len(fk)} rows point at nothing (first: {fk[0]})")
        try:
            db.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")
        except sqlite3.DatabaseError as err:
            if "readonly" in str(err):  # FTS5 checks itself with a (writing) command
                res.notes.append("the full-text index was not checked: the file is read-only")
            else:  # names the command: the one thing a user can do about it (in Python: repair_fts())
                res.problems.append(f"full-text index: {err} (repair: chatloom check --repair)")
        for (conv_id,) in db.execute(
            """SELECT c.id FROM conversations c WHERE c.deleted = 0 AND c.n_messages != (
                   SELECT count(*) FROM messages m WHERE m.pk >= c.msg_start
                   AND m.pk < c.msg_start + c.n_messages AND m.conv = c.pk)"""
        ):
            res.problems.append(f"{conv_id}: its message range is broken")
        (stray,) = db.execute(
            """SELECT count(*) FROM messages m JOIN conversations c ON c.pk = m.conv
               WHERE c.deleted = 1 OR m.pk < c.msg_start OR m.pk >= c.msg_start + c.n_messages"""
        ).fetchone()
        if stray:
            res.problems.append(f"{stray} messages belong to no live conversation")
        for (conv_id,) in db.execute(
            """SELECT c.id FROM conversations c WHERE c.revision !=
                   (SELECT max(revision) FROM revisions r WHERE r.conv = c.pk) OR NOT EXISTS
                   (SELECT 1 FROM revisions r WHERE r.conv = c.pk)"""
        ):
            res.problems.append(f"{conv_id}: its revision number does not match its history")
        tag_table: dict[int, set[str]] = {}
        for tag, pk in db.execute("SELECT tag, conv FROM tags"):
            tag_table.setdefault(pk, set()).add(tag)
        for pk, conv_id, tags in db.execute("SELECT pk, id, tags FROM conversations WHERE deleted = 0"):
            if set(loads(tags, [])) != tag_table.pop(pk, set()):
                res.problems.append(f"{conv_id}: its tags disagree with the tag index")
        stored = dict(db.execute("SELECT id, digest FROM conversations WHERE deleted = 0"))
        for conv in self.iter_conversations():
            if digest(conv) != stored.get(conv.id):
                res.problems.append(f"{conv.id}: its content does not match its digest")
        return res

    def repair_fts(self) -> None:
        """Rebuild the full-text index from the messages (refused in a damaged file)."""
        damage = self.sqlite_problems(quick=True)
        if damage:
            raise StoreError(damaged(self.path, damage[0]) + "; the full-text index was not rebuilt")
        with self._write():
            self.db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")
