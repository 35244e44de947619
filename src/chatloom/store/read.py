"""Reading the dataset: one conversation (``get``, ``entry``), the ids, a stream of all of them
(``iter_conversations``), listing rows (``summaries``) and full-text ``search``. Each is one
snapshot of the dataset: one statement, or several in one read transaction (``_reading``).

A conversation's messages are the range ``[msg_start, msg_start + n_messages)`` of
``messages.pk``: reading one is a range scan, and streaming all of them is a merge of two ordered
cursors (conversations by ``msg_start``, messages by ``pk``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import orjson

from ..errors import ChatloomError, NotFoundError
from ..model import Conversation, Message
from .db import StoreBase, connect
from .rows import CONV_COLUMNS, MSG_COLUMNS, ConvRow, loads, to_conversation, to_message


@dataclass
class Entry:
    """A stored conversation with its store-side state."""

    conversation: Conversation
    revision: int
    digest: str
    deleted: bool
    modified_at: str


@dataclass
class Summary:
    """One line of a listing."""

    id: str
    title: str | None
    preview: str
    n_messages: int
    tags: list[str]
    revision: int
    modified_at: str
    snippet: str | None = None


def fts_query(text: str) -> str:
    """User text → an FTS5 query: every word must appear (quoted, so no FTS syntax leaks in)."""
    words = text.split()
    if not words:
        raise ChatloomError("the search text is empty")
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


class Read(StoreBase):
    """The read API of ``Store``."""

    def _row(self, conv_id: str) -> ConvRow:
        row = self.db.execute(f"SELECT {CONV_COLUMNS} FROM conversations WHERE id = ?", (conv_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"{conv_id}: no such conversation in {self.path}")
        return ConvRow._make(row)

    def _messages(self, row: ConvRow, db: sqlite3.Connection | None = None) -> list[Message]:
        cur = (db or self.db).execute(
            f"SELECT {MSG_COLUMNS} FROM messages WHERE pk >= ? AND pk < ? ORDER BY pk",
            (row.msg_start, row.msg_start + row.n_messages),
        )
        return [to_message(role, content, name, extra) for _, role, content, name, extra in cur]

    @overload
    def entry(self, conv_id: str) -> Entry: ...
    @overload
    def entry(self, conv_id: str, *, most: int) -> Entry | None: ...

    def entry(self, conv_id: str, *, most: int | None = None) -> Entry | None:
        """A conversation with its revision and digest; tombstones too (``deleted=True``). Its row
        and its messages are read in one snapshot: a save by another process meanwhile gives the
        state before it or after it, never its row with the messages of another revision.
        ``most``: None, without reading them, when it has more messages than that."""
        with self._reading():
            row = self._row(conv_id)
            if most is not None and row.n_messages > most:
                return None
            messages = self._messages(row)
        return Entry(to_conversation(row, messages), row.revision, row.digest, bool(row.deleted), row.modified_at)

    def get(self, conv_id: str) -> Conversation:
        """A live conversation by id (NotFoundError when missing or deleted)."""
        e = self.entry(conv_id)
        if e.deleted:
            raise NotFoundError(f"{conv_id}: deleted (revision {e.revision}); 'chatloom undo {conv_id}' restores it")
        return e.conversation

    def ids(self, *, tag: str | None = None) -> list[str]:
        """The ids of the live conversations (optionally with one tag), in storage order."""
        if tag is None:
            rows = self.db.execute("SELECT id FROM conversations WHERE deleted = 0 ORDER BY msg_start")
        else:
            rows = self.db.execute("SELECT c.id FROM conversations c JOIN tags t ON t.conv = c.pk "
                                   "WHERE c.deleted = 0 AND t.tag = ? ORDER BY c.msg_start", (tag,))  # fmt: skip
        return [conv_id for (conv_id,) in rows]

    def count(self) -> int:
        """How many live conversations the dataset holds."""
        return self.db.execute(
            "SELECT (SELECT count(*) FROM conversations) - (SELECT count(*) FROM conversations WHERE deleted = 1)").fetchone()[0]

    def is_empty(self) -> bool:
        """Whether the dataset holds no conversation at all, not even a deleted one (a tombstone)."""
        return self.db.execute("SELECT 1 FROM conversations LIMIT 1").fetchone() is None

    def iter_conversations(self, *, tag: str | None = None, ids: Iterable[str] | None = None,
                           skip_missing: bool = False) -> Iterator[Conversation]:  # fmt: skip
        """Stream live conversations in storage order, with flat memory, on a connection of its own
        (a consistent snapshot even while others write). ``ids``: those, in that order; one that
        is not there (or deleted) is a ``NotFoundError``, or left out with ``skip_missing``."""
        db = connect(self.path)
        try:
            db.execute("BEGIN")
            if ids is not None:
                for conv_id in ids:
                    found = db.execute(
                        f"SELECT {CONV_COLUMNS} FROM conversations WHERE id = ? AND deleted = 0", (conv_id,)
                    ).fetchone()
                    if found is None:
                        if skip_missing:
                            continue
                        raise NotFoundError(f"{conv_id}: no such conversation in {self.path}")
                    row = ConvRow._make(found)
                    yield to_conversation(row, self._messages(row, db))
                return
            where, args = "deleted = 0", []
            if tag is not None:
                where += " AND pk IN (SELECT conv FROM tags WHERE tag = ?)"
                args.append(tag)
            convs = map(
                ConvRow._make, db.execute(f"SELECT {CONV_COLUMNS} FROM conversations WHERE {where} ORDER BY msg_start", args)
            )
            if tag is not None:
                for row in convs:
                    yield to_conversation(row, self._messages(row, db))
                return
            # the merge: conversations by msg_start, messages by pk, both ascending
            msgs = db.execute(f"SELECT {MSG_COLUMNS} FROM messages ORDER BY pk")
            pending = next(msgs, None)
            for row in convs:
                start, end = row.msg_start, row.msg_start + row.n_messages
                messages = []
                while pending is not None:
                    pk, role, content, name, extra = pending
                    if pk >= end:
                        break
                    if pk >= start:  # below it: stray rows, which 'chatloom check' reports
                        messages.append(to_message(role, content, name, extra))
                    pending = next(msgs, None)
                yield to_conversation(row, messages)
        finally:
            db.close()

    def _summaries(
        self, *, tag: str | None = None, limit: int | None = None, pks: Sequence[int] | None = None
    ) -> dict[int, Summary]:
        """Listing rows by conversation pk, in pk order; ``pks``: only those (one query all the same)."""
        where, args = ["c.deleted = 0"], []
        if tag is not None:
            where.append("c.pk IN (SELECT conv FROM tags WHERE tag = ?)")
            args.append(tag)
        if pks is not None:
            where.append("c.pk IN (SELECT value FROM json_each(?))")
            args.append(orjson.dumps(list(pks)).decode())
        sql = f"""
            SELECT c.pk, c.id, c.title, c.n_messages, c.tags, c.revision, c.modified_at,
                   (SELECT substr(m.content, 1, 200) FROM messages m
                     WHERE m.pk >= c.msg_start AND m.pk < c.msg_start + c.n_messages AND m.role != 'system'
                     ORDER BY m.pk LIMIT 1) AS preview
            FROM conversations c WHERE {" AND ".join(where)} ORDER BY c.pk"""
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return {
            pk: Summary(conv_id, title, (preview or "").replace("\n", " "), n_messages, loads(tags, []), revision, modified_at)
            for pk, conv_id, title, n_messages, tags, revision, modified_at, preview in self.db.execute(sql, args)
        }

    def summaries(self, *, tag: str | None = None, limit: int | None = None) -> list[Summary]:
        """Listing rows: id, title, a preview of the first non-system message, counts, tags."""
        return list(self._summaries(tag=tag, limit=limit).values())

    def search(self, text: str, *, tag: str | None = None, limit: int | None = 20) -> list[Summary]:
        """Conversations whose messages contain every word of ``text`` (FTS5, best match first),
        each with a snippet of its best-matching message. Two queries, whatever the page's size:
        the matches, read until ``limit`` conversations are found, then their listing rows."""
        where, args = "messages_fts MATCH ?", [fts_query(text)]
        if tag is not None:
            where += " AND m.conv IN (SELECT conv FROM tags WHERE tag = ?)"
            args.append(tag)
        snippets: dict[int, str] = {}  # conversation pk → its best snippet, best first
        with self._reading():  # the matches and their rows: one snapshot
            try:
                for conv, snippet in self.db.execute(
                    f"""SELECT m.conv, snippet(messages_fts, 0, '\x02', '\x03', '…', 12)
                        FROM messages_fts JOIN messages m ON m.pk = messages_fts.rowid
                        WHERE {where} ORDER BY rank""",
                    args,
                ):
                    if conv not in snippets:
                        snippets[conv] = snippet
                        if limit is not None and len(snippets) >= limit:
                            break
            except sqlite3.OperationalError as err:
                raise ChatloomError(f"{self.path}: search: {err}") from None
            rows = self._summaries(pks=list(snippets))
        found = []
        for pk, snippet in snippets.items():
            if pk in rows:
                rows[pk].snippet = snippet.replace("\n", " ")
                found.append(rows[pk])
        return found[:limit] if limit is not None else found
