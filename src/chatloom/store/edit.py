"""Editing the dataset one conversation at a time: ``put``, ``delete``, ``tag``, their ``history``
and ``undo``, and the dataset's settings.

Every change is a new revision of the conversation (table ``revisions``): what it was (op), when,
the digest after it, and the conversation before it as JSON (``prev``), which ``undo`` restores.
A deletion keeps a tombstone (``deleted = 1``) so that an import does not bring the conversation
back and sync can tell a deletion from an absence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from ..errors import ChatloomError, ConflictError, NotFoundError, StoreError
from ..model import Conversation, digest, ensure_id
from .read import Read
from .rows import (
    CONV_COLUMNS,
    INSERT_CONVERSATION,
    INSERT_MESSAGES,
    ConvRow,
    conv_row,
    loads,
    message_rows,
    now,
    to_conversation,
)

#: ``run``: the import run that made it (``imports.pk``), None for any other change
INSERT_REVISION = "INSERT INTO revisions (conv, revision, op, at, digest, prev, run) VALUES (?, ?, ?, ?, ?, ?, ?)"


@dataclass
class Revision:
    """One change in a conversation's history."""

    revision: int
    op: str
    at: str
    digest: str | None
    undone: bool


class Edit(Read):
    """The edit API of ``Store``, and the row-level writes the bulk import shares with it."""

    def _insert_messages(self, rows: list[tuple[Any, ...]], start: int) -> None:
        """Insert message rows, which SQLite numbers max(pk) + 1, + 2, …: the range must come
        out as [start, start + len(rows)), and this checks that it did."""
        self.db.executemany(INSERT_MESSAGES, rows)
        if rows and self._max_pk("messages") != start + len(rows) - 1:
            raise StoreError(f"{self.path}: message numbering is not contiguous; run 'chatloom check'")

    def _index_messages(self, start: int, end: int) -> None:
        """Add messages [start, end) to the full-text index (one statement for the whole range)."""
        self.db.execute(
            "INSERT INTO messages_fts (rowid, content) SELECT pk, content FROM messages WHERE pk >= ? AND pk < ?", (start, end)
        )

    def _snapshot(self, pk: int) -> str | None:
        """The live state of a conversation as JSON (None for a tombstone): a revision's ``prev``."""
        row = ConvRow._make(self.db.execute(f"SELECT {CONV_COLUMNS} FROM conversations WHERE pk = ?", (pk,)).fetchone())
        if row.deleted:
            return None
        return msgspec.json.encode(to_conversation(row, self._messages(row))).decode()

    def _drop_messages(self, pk: int) -> None:
        start, n = self.db.execute("SELECT msg_start, n_messages FROM conversations WHERE pk = ?", (pk,)).fetchone()
        self.db.execute(
            "INSERT INTO messages_fts (messages_fts, rowid, content) "
            "SELECT 'delete', pk, content FROM messages WHERE pk >= ? AND pk < ?",
            (start, start + n),
        )
        self.db.execute("DELETE FROM messages WHERE pk >= ? AND pk < ?", (start, start + n))

    def _tombstone(self, pk: int) -> None:
        """Drop a conversation's messages and tags, keeping its row as deleted."""
        self._drop_messages(pk)
        self.db.execute("DELETE FROM tags WHERE conv = ?", (pk,))
        self.db.execute("UPDATE conversations SET deleted = 1, tags = '[]', n_messages = 0 WHERE pk = ?", (pk,))

    def _new_revision(self, pk: int, op: str, at: str, dg: str | None, prev: str | None, run: int | None = None) -> int:
        (current,) = self.db.execute("SELECT revision FROM conversations WHERE pk = ?", (pk,)).fetchone()
        self.db.execute(INSERT_REVISION, (pk, current + 1, op, at, dg, prev, run))
        self.db.execute("UPDATE conversations SET revision = ?, modified_at = ?, seq = ? WHERE pk = ?",
                        (current + 1, at, self._next_seq(), pk))  # fmt: skip
        return current + 1

    def _replace(self, pk: int, conv: Conversation, dg: str, *, op: str, at: str, run: int | None = None) -> int:
        """Write ``conv`` over conversation ``pk`` (live or tombstone), keeping the old state."""
        prev = self._snapshot(pk)
        self._overwrite(pk, conv, dg, at)
        return self._new_revision(pk, op, at, dg, prev, run)

    def _overwrite(self, pk: int, conv: Conversation, dg: str, at: str) -> None:
        """Conversation ``pk`` becomes ``conv`` (live): its row, messages, index and tags; no revision."""
        self._drop_messages(pk)
        start = self._max_pk("messages") + 1
        self._insert_messages(message_rows(conv, pk), start)
        self._index_messages(start, start + len(conv.messages))
        row = conv_row(pk, conv, dg, 0, at, start)
        self.db.execute(
            """UPDATE conversations SET digest = ?, deleted = 0, title = ?, language = ?, tags = ?, tools = ?,
               source = ?, meta = ?, created_at = ?, updated_at = ?, msg_start = ?, n_messages = ? WHERE pk = ?""",
            (row.digest, row.title, row.language, row.tags, row.tools, row.source, row.meta, row.created_at,
             row.updated_at, row.msg_start, row.n_messages, pk),
        )  # fmt: skip
        self.db.execute("DELETE FROM tags WHERE conv = ?", (pk,))
        self.db.executemany("INSERT INTO tags VALUES (?, ?)", [(t, pk) for t in conv.tags])

    def put(self, conv: Conversation, *, base_revision: int | None = None, op: str = "edit") -> int:
        """Save one conversation (insert or update); returns its new revision.

        :param base_revision: the revision the change was made from; if the dataset has moved
            past it since, ConflictError is raised and nothing is written (no lost update).
        """
        dg = digest(conv)
        ensure_id(conv, dg)
        at = now()
        with self._write():
            found = self.db.execute("SELECT pk, revision FROM conversations WHERE id = ?", (conv.id,)).fetchone()
            if found is None:
                if base_revision not in (None, 0):
                    raise ConflictError(conv.id, base_revision, 0)
                pk = self._max_pk("conversations") + 1
                start = self._max_pk("messages") + 1
                self.db.execute(INSERT_CONVERSATION, conv_row(pk, conv, dg, 1, at, start))
                self.db.execute("UPDATE conversations SET seq = ? WHERE pk = ?", (self._next_seq(), pk))
                self._insert_messages(message_rows(conv, pk), start)
                self._index_messages(start, start + len(conv.messages))
                self.db.executemany("INSERT INTO tags VALUES (?, ?)", [(t, pk) for t in conv.tags])
                self.db.execute(INSERT_REVISION, (pk, 1, "create", at, dg, None, None))
                return 1
            pk, current = found
            if base_revision is not None and base_revision != current:
                raise ConflictError(conv.id, base_revision, current)
            return self._replace(pk, conv, dg, op=op, at=at)

    def delete(self, ids: Iterable[str]) -> int:
        """Soft-delete: the conversation leaves every listing and export; a tombstone stays (for
        sync) and its last state is kept in its history, so ``undo`` restores it."""
        n = 0
        at = now()
        with self._write():
            for conv_id in ids:
                row = self._row(conv_id)
                if row.deleted:
                    continue
                prev = self._snapshot(row.pk)
                self._tombstone(row.pk)
                self.db.execute("DELETE FROM token_counts WHERE conv = ?", (row.pk,))
                self._new_revision(row.pk, "delete", at, None, prev)
                n += 1
        return n

    def _retag(self, pk: int, *, add: Sequence[str], remove: Sequence[str], at: str, run: int | None = None) -> bool:
        tags_json, deleted, dg = self.db.execute("SELECT tags, deleted, digest FROM conversations WHERE pk = ?", (pk,)).fetchone()
        if deleted:
            return False
        old = loads(tags_json, [])
        new = [t for t in dict.fromkeys([*old, *add]) if t not in remove]
        if new == old:
            return False
        prev = self._snapshot(pk)
        self.db.execute("UPDATE conversations SET tags = ? WHERE pk = ?", (orjson.dumps(new).decode(), pk))
        self.db.execute("DELETE FROM tags WHERE conv = ?", (pk,))
        self.db.executemany("INSERT INTO tags VALUES (?, ?)", [(t, pk) for t in new])
        self._new_revision(pk, "tag", at, dg, prev, run)
        return True

    def tag(self, ids: Iterable[str], *, add: Sequence[str] = (), remove: Sequence[str] = ()) -> int:
        """Add and remove tags; returns how many conversations changed (each gets a revision)."""
        at = now()
        with self._write():
            return sum(self._retag(self._row(i).pk, add=add, remove=remove, at=at) for i in ids)

    def history(self, conv_id: str) -> list[Revision]:
        """Every change of a conversation, oldest first."""
        with self._reading():
            pk = self._row(conv_id).pk
            return [
                Revision(revision, op, at, dg, bool(undone))
                for revision, op, at, dg, undone in self.db.execute(
                    "SELECT revision, op, at, digest, undone FROM revisions WHERE conv = ? ORDER BY revision", (pk,)
                )
            ]

    def undo(self, conv_id: str) -> tuple[int, int]:
        """Undo the latest change not yet undone (repeat to go further back); the undo is itself a
        new revision. Returns (the revision undone, the new revision)."""
        at = now()
        with self._write():
            pk = self._row(conv_id).pk
            target = self.db.execute(
                "SELECT revision, prev FROM revisions WHERE conv = ? AND op != 'undo' AND undone = 0 "
                "ORDER BY revision DESC LIMIT 1",
                (pk,),
            ).fetchone()
            if target is None:
                raise ChatloomError(f"{conv_id}: nothing to undo")
            revision, prev = target
            if prev is None:  # it did not exist before: undoing its creation deletes it
                snapshot = self._snapshot(pk)
                self._tombstone(pk)
                new = self._new_revision(pk, "undo", at, None, snapshot)
            else:
                conv = msgspec.json.decode(prev, type=Conversation)
                new = self._replace(pk, conv, digest(conv), op="undo", at=at)
            self.db.execute("UPDATE revisions SET undone = 1 WHERE conv = ? AND revision = ?", (pk, revision))
            return revision, new

    def state_at(self, conv_id: str, revision: int) -> Conversation | None:
        """The conversation as it was after ``revision`` (None: it did not exist, or was deleted)."""
        with self._reading():
            row = self._row(conv_id)
            if not 1 <= revision <= row.revision:
                raise NotFoundError(f"{conv_id}: no revision {revision} (the latest is {row.revision})")
            if revision == row.revision:
                return None if row.deleted else to_conversation(row, self._messages(row))
            (prev,) = self.db.execute("SELECT prev FROM revisions WHERE conv = ? AND revision = ?", (row.pk, revision + 1)).fetchone()
        return None if prev is None else msgspec.json.decode(prev, type=Conversation)

    def restore(self, conv_id: str, revision: int, *, base_revision: int | None = None) -> int:
        """Bring back the state after ``revision`` as a new revision (op ``restore``); returns it.
        ``base_revision`` as in ``put``."""
        state = self.state_at(conv_id, revision)
        at = now()
        with self._write():
            row = self._row(conv_id)
            if base_revision is not None and base_revision != row.revision:
                raise ConflictError(conv_id, base_revision, row.revision)
            if state is None:
                if row.deleted:
                    return row.revision
                snapshot = self._snapshot(row.pk)
                self._tombstone(row.pk)
                return self._new_revision(row.pk, "restore", at, None, snapshot)
            return self._replace(row.pk, state, digest(state), op="restore", at=at)

    def set_language(self, ids: Iterable[str], language: str | None) -> int:
        """Set the language of live conversations; returns how many changed (each a revision)."""
        at, n = now(), 0
        with self._write():
            for conv_id in ids:
                row = self._row(conv_id)
                if row.deleted or row.language == language:
                    continue
                conv = to_conversation(row, self._messages(row))
                conv.language = language
                self._replace(row.pk, conv, digest(conv), op="edit", at=at)
                n += 1
        return n

    # -- settings ---------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """The dataset's settings (JSON values by key)."""
        return {key: orjson.loads(value) for key, value in self.db.execute("SELECT key, value FROM settings ORDER BY key")}

    def get_setting(self, key: str, default: Any = None) -> Any:
        found = self.db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if found is None else orjson.loads(found[0])

    def set_setting(self, key: str, value: Any) -> None:
        """Set a setting; ``None`` removes it."""
        with self._write():
            if value is None:
                self.db.execute("DELETE FROM settings WHERE key = ?", (key,))
            else:
                self.db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, orjson.dumps(value).decode()))
