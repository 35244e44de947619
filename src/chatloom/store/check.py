"""Integrity: ``check`` finds damage (SQLite's own checks and chatloom's invariants) and
``repair_fts`` rebuilds the one part that can be rebuilt from the rest, the full-text index.

The invariants: a live conversation's messages are exactly the range ``[msg_start, msg_start +
n_messages)`` of ``messages.pk`` and belong to it; no message belongs to a tombstone or lies
outside its conversation's range; a conversation's revision is the latest of its history; its
tags column agrees with the ``tags`` index table; its content hashes to its digest.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from ..model import digest
from .read import Read
from .rows import loads


@dataclass
class CheckResult:
    """What ``check`` found: one line per problem."""

    problems: list[str] = field(default_factory=list)
    conversations: int = 0
    messages: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


class Check(Read):
    """The integrity checks of ``Store``."""

    def check(self) -> CheckResult:
        """Check the file (SQLite's own check, foreign keys, the FTS index) and our invariants:
        message ranges, digests, tags, revision numbers."""
        db = self.db
        res = CheckResult(conversations=self.count())
        res.messages = db.execute("SELECT count(*) FROM messages").fetchone()[0]
        res.problems += [f"sqlite: {line}" for (line,) in db.execute("PRAGMA integrity_check") if line != "ok"]
        fk = db.execute("PRAGMA foreign_key_check").fetchall()
        if fk:
            res.problems.append(f"foreign keys: {len(fk)} rows point at nothing (first: {fk[0]})")
        try:
            db.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")
        except sqlite3.DatabaseError as err:
            # names the command: the one thing a user can do about it (in Python: repair_fts())
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
        """Rebuild the full-text index from the messages."""
        with self._write():
            self.db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")
