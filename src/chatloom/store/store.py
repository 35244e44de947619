"""The dataset store: one SQLite file per dataset (DESIGN §2).

    store = Store("chatloom.db", create=True)       # migrates itself when opened
    counts = store.import_conversations(convs)      # batched, idempotent upsert by id
    conv = store.get("chitchat:abc")
    store.put(edited, base_revision=3)               # ConflictError if someone saved revision 4
    store.undo("chitchat:abc")

Layout choices, each for the hot path:
- a conversation's messages are one contiguous range of ``messages.pk`` (``msg_start``,
  ``n_messages``), so reading one is a range scan and streaming all of them is a merge of two
  ordered cursors, with no secondary index on ``messages`` to maintain during bulk import;
- the FTS5 index is external-content over ``messages`` and is filled per batch with one
  ``INSERT … SELECT`` over the batch's range, not row by row through triggers;
- every write runs in ``BEGIN IMMEDIATE`` (one writer at a time, others wait on busy_timeout),
  and a bulk import commits whole batches: a crash leaves a batch or nothing.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import orjson

from ..errors import ChatloomError, ConflictError, NotFoundError, StoreError
from ..model import Conversation, Message, digest, ensure_id
from ..parallel import prefetch
from .migrations import migrate

APPLICATION_ID = 0x43484C4D  # "CHLM": tells a chatloom dataset from another SQLite file
DEFAULT_DATASET = "chatloom.db"

_CONV_COLS = (
    "pk, id, digest, revision, deleted, title, language, tags, tools, source, meta, "
    "created_at, updated_at, modified_at, msg_start, n_messages"
)
_MSG_COLS = "pk, conv, role, content, name, extra"
_INSERT_MESSAGES = "INSERT INTO messages (conv, role, content, name, extra) VALUES (?, ?, ?, ?, ?)"
_IN_CHUNK = 900  # ids per "IN (?, ?, …)" query


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(value: Any) -> str | None:
    return orjson.dumps(value).decode() if value else None


def _loads(text: str | None, default: Any) -> Any:
    return orjson.loads(text) if text else default


def dataset_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The dataset a command works on: ``-d PATH``, else ``$CHATLOOM_DATASET``, else ./chatloom.db."""
    return Path(path or os.environ.get("CHATLOOM_DATASET") or DEFAULT_DATASET)


@dataclass
class ImportCounts:
    """What an import did: records read, conversations added / updated / unchanged, and those
    skipped because they were deleted in the dataset (tombstones are respected)."""

    records: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    messages: int = 0

    def __iadd__(self, other: ImportCounts) -> ImportCounts:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


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


@dataclass
class Revision:
    revision: int
    op: str
    at: str
    digest: str | None
    undone: bool


@dataclass
class CheckResult:
    problems: list[str] = field(default_factory=list)
    conversations: int = 0
    messages: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _message(row: Sequence[Any]) -> Message:
    if row[5] is None:
        return Message(role=row[2], content=row[3], name=row[4])
    return Message(role=row[2], content=row[3], name=row[4], **orjson.loads(row[5]))


def _conversation(row: Sequence[Any], messages: list[Message]) -> Conversation:
    return Conversation(
        id=row[1],
        messages=messages,
        title=row[5],
        language=row[6],
        tags=_loads(row[7], []),
        tools=_loads(row[8], []),
        source=_loads(row[9], {}),
        meta=_loads(row[10], {}),
        created_at=row[11],
        updated_at=row[12],
    )


def _extra(m: Message) -> str | None:
    """tool_calls, tool_call_id, train and meta as one JSON object; None when all are empty."""
    if m.tool_calls is None and m.tool_call_id is None and m.train is None:  # the common case
        return orjson.dumps({"meta": m.meta}).decode() if m.meta else None
    extra = {"tool_calls": m.tool_calls, "tool_call_id": m.tool_call_id, "train": m.train, "meta": m.meta}
    return orjson.dumps({k: v for k, v in extra.items() if v is not None and v != {}}).decode()


def _message_rows(conv: Conversation, conv_pk: int) -> list[tuple[Any, ...]]:
    return [(conv_pk, m.role, m.content, m.name, _extra(m)) for m in conv.messages]


def fts_query(text: str) -> str:
    """User text → an FTS5 query: every word must appear (quoted, so no FTS syntax leaks in)."""
    words = text.split()
    if not words:
        raise ChatloomError("the search text is empty")
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


class Store:
    """A dataset: one SQLite file. Opening it migrates it; ``create=False`` refuses a missing file."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, create: bool = False):
        self.path = dataset_path(path)
        if not create and not self.path.exists():
            raise StoreError(
                f"{self.path}: no such dataset; create one with 'chatloom import -d {self.path} FILE'"
            )
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = self._connect(self.path)
        self._depth = 0

    # -- connection and transactions ------------------------------------------------------

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 60000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA cache_size = -65536")
            db.execute("PRAGMA temp_store = MEMORY")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
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

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
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

    # -- reading ----------------------------------------------------------------------------

    def _row(self, conv_id: str) -> tuple[Any, ...]:
        row = self.db.execute(f"SELECT {_CONV_COLS} FROM conversations WHERE id = ?", (conv_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"{conv_id}: no such conversation in {self.path}")
        return row

    def _messages(self, row: Sequence[Any], db: sqlite3.Connection | None = None) -> list[Message]:
        start, n = row[14], row[15]
        cur = (db or self.db).execute(
            f"SELECT {_MSG_COLS} FROM messages WHERE pk >= ? AND pk < ? ORDER BY pk", (start, start + n)
        )
        return [_message(m) for m in cur]

    def entry(self, conv_id: str) -> Entry:
        """A conversation with its revision and digest; tombstones too (``deleted=True``)."""
        row = self._row(conv_id)
        return Entry(_conversation(row, self._messages(row)), row[3], row[2], bool(row[4]), row[13])

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
                                   "WHERE c.deleted = 0 AND t.tag = ? ORDER BY c.msg_start", (tag,))
        return [row[0] for row in rows]

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM conversations WHERE deleted = 0").fetchone()[0]

    def iter_conversations(self, *, tag: str | None = None, ids: Iterable[str] | None = None) -> Iterator[Conversation]:
        """Stream live conversations in storage order, with flat memory, on a connection of its own
        (a consistent snapshot even while others write)."""
        db = self._connect(self.path)
        try:
            db.execute("BEGIN")
            if ids is not None:
                for conv_id in ids:
                    row = db.execute(f"SELECT {_CONV_COLS} FROM conversations WHERE id = ? AND deleted = 0", (conv_id,)).fetchone()
                    if row is None:
                        raise NotFoundError(f"{conv_id}: no such conversation in {self.path}")
                    yield _conversation(row, self._messages(row, db))
                return
            where, args = "deleted = 0", []
            if tag is not None:
                where += " AND pk IN (SELECT conv FROM tags WHERE tag = ?)"
                args.append(tag)
            convs = db.execute(f"SELECT {_CONV_COLS} FROM conversations WHERE {where} ORDER BY msg_start", args)
            if tag is not None:
                for row in convs:
                    yield _conversation(row, self._messages(row, db))
                return
            # the merge: conversations by msg_start, messages by pk, both ascending
            msgs = db.execute(f"SELECT {_MSG_COLS} FROM messages ORDER BY pk")
            pending = next(msgs, None)
            for row in convs:
                start, end = row[14], row[14] + row[15]
                while pending is not None and pending[0] < start:  # stray rows: 'chatloom check' reports them
                    pending = next(msgs, None)
                messages = []
                while pending is not None and pending[0] < end:
                    messages.append(_message(pending))
                    pending = next(msgs, None)
                yield _conversation(row, messages)
        finally:
            db.close()

    def summaries(self, *, tag: str | None = None, limit: int | None = None, pks: Sequence[int] | None = None) -> list[Summary]:
        """Listing rows: id, title, a preview of the first non-system message, counts, tags."""
        where, args = ["c.deleted = 0"], []
        if tag is not None:
            where.append("c.pk IN (SELECT conv FROM tags WHERE tag = ?)")
            args.append(tag)
        if pks is not None:
            where.append(f"c.pk IN ({','.join('?' * len(pks))})")
            args.extend(pks)
        sql = f"""
            SELECT c.pk, c.id, c.title, c.n_messages, c.tags, c.revision, c.modified_at,
                   (SELECT substr(m.content, 1, 200) FROM messages m
                     WHERE m.pk >= c.msg_start AND m.pk < c.msg_start + c.n_messages AND m.role != 'system'
                     ORDER BY m.pk LIMIT 1)
            FROM conversations c WHERE {' AND '.join(where)} ORDER BY c.pk"""
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        out = {}
        for pk, cid, title, n, tags, rev, mod, preview in self.db.execute(sql, args):
            out[pk] = Summary(cid, title, (preview or "").replace("\n", " "), n, _loads(tags, []), rev, mod)
        if pks is not None:
            return [out[pk] for pk in pks if pk in out]
        return list(out.values())

    def search(self, text: str, *, tag: str | None = None, limit: int | None = 20) -> list[Summary]:
        """Conversations whose messages contain every word of ``text`` (FTS5, best match first)."""
        try:
            cur = self.db.execute(
                """SELECT m.conv, snippet(messages_fts, 0, '\x02', '\x03', '…', 12)
                   FROM messages_fts JOIN messages m ON m.pk = messages_fts.rowid
                   WHERE messages_fts MATCH ? ORDER BY rank""",
                (fts_query(text),),
            )
            order: dict[int, str] = {}
            for conv, snippet in cur:
                if conv not in order:
                    order[conv] = snippet
                    if limit is not None and len(order) >= limit * (4 if tag else 1):
                        break
        except sqlite3.OperationalError as err:
            raise ChatloomError(f"search: {err}") from None
        found = self.summaries(tag=tag, pks=list(order))
        for s in found:
            pk = self.db.execute("SELECT pk FROM conversations WHERE id = ?", (s.id,)).fetchone()[0]
            s.snippet = order[pk].replace("\n", " ")
        return found[:limit] if limit is not None else found

    # -- writing ----------------------------------------------------------------------------

    def import_conversations(
        self,
        convs: Iterable[Conversation],
        *,
        tags: Sequence[str] = (),
        batch_size: int = 5000,
        atomic: bool = False,
        journal: int | None = None,
        on_batch: Callable[[ImportCounts], None] | None = None,
    ) -> ImportCounts:
        """Upsert conversations by id, in transactions of ``batch_size``.

        New ids are added; an id whose digest is unchanged is left alone (importing the same file
        twice adds nothing); a changed one is updated with a revision; a deleted one is skipped.
        ``atomic=True`` runs everything in one transaction (``--strict``: all or nothing).
        """
        # The next batch is parsed in a thread. It is asked for just before the FTS step, one
        # long sqlite3_step that releases the GIL, so parsing overlaps indexing instead of
        # fighting the row inserts for the GIL.
        # The producer may only work while this thread is in GIL-free SQLite work (the FTS step,
        # the commit) or waiting for it: were both to run Python at once, every row
        # executemany binds would hand the GIL over and wait up to the 5 ms switch interval to
        # get it back (measured: 150 µs a conversation row instead of a few).
        gate = threading.Event()
        gate.set()
        batches = prefetch(digest_batches(convs, batch_size, gate=gate), depth=1)
        try:
            return self.import_batches(batches, tags=tags, atomic=atomic, journal=journal, on_batch=on_batch, gate=gate)
        finally:
            gate.set()  # a producer waiting at the gate must be able to finish
            batches.close()

    def import_batches(
        self,
        batches: Iterator[list[tuple[Conversation, str]]],
        *,
        tags: Sequence[str] = (),
        atomic: bool = False,
        journal: int | None = None,
        on_batch: Callable[[ImportCounts], None] | None = None,
        gate: threading.Event | None = None,
    ) -> ImportCounts:
        """``import_conversations`` for batches of (conversation, digest) made elsewhere (see
        ``digest_batches``; ids set), each written in its own transaction unless ``atomic``; a
        ``Piece`` goes on in the next batch's transaction (``batches`` must not end with one).
        The next batch is asked for just before the current one's FTS step; ``gate``, when
        given, is open only from then until the batch commits (after a piece: until the next
        batch begins). ``on_batch(counts)`` hears the counts so far each time a batch is
        committed; inside an outer transaction (``atomic``, or a caller's) nothing is committed
        before it ends, and it is not called."""
        counts = ImportCounts()
        now = _now()
        ahead: list[Any] = []

        def fetch_next() -> None:
            if gate is not None:
                gate.set()  # stays open through the FTS step and the commit
            try:
                ahead.append(next(batches, None))
            except BaseException as exc:  # raised before the next batch: after this one commits, or in its transaction
                ahead.append(exc)

        # Bulk rows reference conversations inserted in the same transaction, so the per-row
        # foreign-key lookup is skipped here (it cannot be toggled inside a transaction);
        # 'chatloom check' runs the foreign-key check over the whole file.
        fk_off = self._depth == 0
        piece_before = False  # the last batch was a piece: its transaction is open
        if fk_off:
            self.db.execute("PRAGMA foreign_keys = OFF")
        try:
            with self._write() if atomic else nullcontext(), ExitStack() as transaction:
                # An error from the producer is raised with the pieces of an unfinished batch
                # still in ``transaction``, which it rolls back.
                fetch_next()
                while True:
                    batch = ahead.pop()
                    if isinstance(batch, BaseException):
                        raise batch
                    if batch is None:
                        break
                    if gate is not None:
                        gate.clear()
                    if not piece_before:
                        transaction.enter_context(self._write())
                    if batch:
                        self._import_batch(batch, tags, now, counts, before_index=fetch_next)
                    else:  # the end of a batch sent in pieces, with nothing more in it
                        fetch_next()
                    piece_before = isinstance(batch, Piece)
                    if piece_before:
                        continue
                    if journal is not None:
                        self._journal_update(journal, counts)
                    transaction.close()  # commits, unless an outer transaction holds it
                    if on_batch is not None and self._depth == 0:
                        on_batch(counts)
        finally:
            if fk_off:
                self.db.execute("PRAGMA foreign_keys = ON")
        return counts

    def preview(self, convs: Iterable[Conversation], *, tags: Sequence[str] = (), batch_size: int = 5000) -> ImportCounts:
        """What ``import_conversations`` would count, without writing anything."""
        counts = ImportCounts()
        for batch in digest_batches(convs, batch_size):
            existing = self._existing([c.id for c, _ in batch])
            for conv, dg in batch:
                counts.records += 1
                kind = _kind(existing.get(conv.id), dg)
                setattr(counts, kind, getattr(counts, kind) + 1)
                if kind in ("added", "updated"):
                    counts.messages += len(conv.messages)
        return counts

    def _existing(self, ids: list[str]) -> dict[str, tuple[Any, ...]]:
        """(pk, id, digest, deleted, tags) of the ids already in the dataset."""
        existing: dict[str, tuple[Any, ...]] = {}
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            for row in self.db.execute(
                f"SELECT pk, id, digest, deleted, tags FROM conversations WHERE id IN ({','.join('?' * len(chunk))})", chunk
            ):
                existing[row[1]] = row
        return existing

    def _import_batch(
        self,
        batch: list[tuple[Conversation, str]],
        tags: Sequence[str],
        now: str,
        counts: ImportCounts,
        before_index: Callable[[], None] = lambda: None,
    ) -> None:
        db = self.db
        existing = self._existing([c.id for c, _ in batch])
        next_conv = self._max_pk("conversations") + 1
        first_msg = next_msg = self._max_pk("messages") + 1
        conv_rows, msg_rows, tag_rows, rev_rows, changed = [], [], [], [], []
        for conv, dg in batch:
            counts.records += 1
            if tags:
                conv.tags = list(dict.fromkeys([*conv.tags, *tags]))
            old = existing.get(conv.id)
            kind = _kind(old, dg)
            if kind == "added":
                pk = next_conv
                next_conv += 1
                conv_rows.append(self._conv_row(pk, conv, dg, 1, now, next_msg))
                msg_rows.extend(_message_rows(conv, pk))
                next_msg += len(conv.messages)
                tag_rows.extend((t, pk) for t in conv.tags)
                rev_rows.append((pk, 1, "import", now, dg, None))
                counts.added += 1
                counts.messages += len(conv.messages)
            elif kind == "deleted":
                counts.deleted += 1
            elif kind == "unchanged":
                counts.unchanged += 1
                missing = [t for t in conv.tags if t not in _loads(old[4], [])]
                if missing:
                    self._retag(old[0], add=missing, remove=(), now=now)
            else:  # a newer version of it: the tags a user added to the old one stay
                conv.tags = list(dict.fromkeys([*_loads(old[4], []), *conv.tags]))
                changed.append((old[0], conv, dg))
        db.executemany(f"INSERT INTO conversations ({_CONV_COLS}) VALUES ({','.join('?' * 16)})", conv_rows)
        self._insert_messages(msg_rows, first_msg)
        before_index()
        db.execute(
            "INSERT INTO messages_fts (rowid, content) SELECT pk, content FROM messages WHERE pk >= ? AND pk < ?",
            (first_msg, next_msg),
        )
        db.executemany("INSERT INTO tags VALUES (?, ?)", tag_rows)
        db.executemany("INSERT INTO revisions (conv, revision, op, at, digest, prev) VALUES (?,?,?,?,?,?)", rev_rows)
        for pk, conv, dg in changed:
            self._replace(pk, conv, dg, op="import", now=now)
            counts.updated += 1
            counts.messages += len(conv.messages)

    def _insert_messages(self, rows: list[tuple[Any, ...]], start: int) -> None:
        """Insert message rows, which SQLite numbers max(pk) + 1, + 2, …: the range must come
        out as [start, start + len(rows)), and this checks that it did."""
        self.db.executemany(_INSERT_MESSAGES, rows)
        if rows and self._max_pk("messages") != start + len(rows) - 1:
            raise StoreError(f"{self.path}: message numbering is not contiguous; run 'chatloom check'")

    @staticmethod
    def _conv_row(pk: int, conv: Conversation, dg: str, revision: int, now: str, msg_start: int) -> tuple[Any, ...]:
        return (
            pk, conv.id, dg, revision, 0, conv.title, conv.language, orjson.dumps(conv.tags).decode(),
            _json(conv.tools), _json(conv.source), _json(conv.meta), conv.created_at, conv.updated_at,
            now, msg_start, len(conv.messages),
        )  # fmt: skip

    def _snapshot(self, pk: int) -> str | None:
        """The live state of a conversation as JSON (None for a tombstone): a revision's ``prev``."""
        row = self.db.execute(f"SELECT {_CONV_COLS} FROM conversations WHERE pk = ?", (pk,)).fetchone()
        if row[4]:
            return None
        return msgspec.json.encode(_conversation(row, self._messages(row))).decode()

    def _drop_messages(self, pk: int) -> None:
        start, n = self.db.execute("SELECT msg_start, n_messages FROM conversations WHERE pk = ?", (pk,)).fetchone()
        self.db.execute(
            "INSERT INTO messages_fts (messages_fts, rowid, content) "
            "SELECT 'delete', pk, content FROM messages WHERE pk >= ? AND pk < ?",
            (start, start + n),
        )
        self.db.execute("DELETE FROM messages WHERE pk >= ? AND pk < ?", (start, start + n))

    def _new_revision(self, pk: int, op: str, now: str, dg: str | None, prev: str | None) -> int:
        rev = self.db.execute("SELECT revision FROM conversations WHERE pk = ?", (pk,)).fetchone()[0] + 1
        self.db.execute("INSERT INTO revisions (conv, revision, op, at, digest, prev) VALUES (?,?,?,?,?,?)", (pk, rev, op, now, dg, prev))
        self.db.execute("UPDATE conversations SET revision = ?, modified_at = ? WHERE pk = ?", (rev, now, pk))
        return rev

    def _replace(self, pk: int, conv: Conversation, dg: str, *, op: str, now: str) -> int:
        """Write ``conv`` over conversation ``pk`` (live or tombstone), keeping the old state."""
        prev = self._snapshot(pk)
        self._drop_messages(pk)
        start = self._max_pk("messages") + 1
        self._insert_messages(_message_rows(conv, pk), start)
        self.db.execute(
            "INSERT INTO messages_fts (rowid, content) SELECT pk, content FROM messages WHERE pk >= ? AND pk < ?",
            (start, start + len(conv.messages)),
        )
        row = self._conv_row(pk, conv, dg, 0, now, start)
        self.db.execute(
            """UPDATE conversations SET digest = ?, deleted = 0, title = ?, language = ?, tags = ?, tools = ?,
               source = ?, meta = ?, created_at = ?, updated_at = ?, msg_start = ?, n_messages = ? WHERE pk = ?""",
            (dg, *row[5:13], start, len(conv.messages), pk),
        )
        self.db.execute("DELETE FROM tags WHERE conv = ?", (pk,))
        self.db.executemany("INSERT INTO tags VALUES (?, ?)", [(t, pk) for t in conv.tags])
        return self._new_revision(pk, op, now, dg, prev)

    def put(self, conv: Conversation, *, base_revision: int | None = None, op: str = "edit") -> int:
        """Save one conversation (insert or update); returns its new revision.

        :param base_revision: the revision the change was made from; if the dataset has moved
            past it since, ConflictError is raised and nothing is written (no lost update).
        """
        dg = digest(conv)
        ensure_id(conv, dg)
        now = _now()
        with self._write():
            row = self.db.execute("SELECT pk, revision FROM conversations WHERE id = ?", (conv.id,)).fetchone()
            if row is None:
                if base_revision not in (None, 0):
                    raise ConflictError(conv.id, base_revision, 0)
                pk = self._max_pk("conversations") + 1
                start = self._max_pk("messages") + 1
                self.db.execute(f"INSERT INTO conversations ({_CONV_COLS}) VALUES ({','.join('?' * 16)})", self._conv_row(pk, conv, dg, 1, now, start))
                self._insert_messages(_message_rows(conv, pk), start)
                self.db.execute(
                    "INSERT INTO messages_fts (rowid, content) SELECT pk, content FROM messages WHERE pk >= ?", (start,)
                )
                self.db.executemany("INSERT INTO tags VALUES (?, ?)", [(t, pk) for t in conv.tags])
                self.db.execute("INSERT INTO revisions (conv, revision, op, at, digest, prev) VALUES (?,1,'create',?,?,NULL)", (pk, now, dg))
                return 1
            pk, current = row
            if base_revision is not None and base_revision != current:
                raise ConflictError(conv.id, base_revision, current)
            return self._replace(pk, conv, dg, op=op, now=now)

    def delete(self, ids: Iterable[str]) -> int:
        """Soft-delete: the conversation leaves every listing and export; a tombstone stays (for
        sync) and its last state is kept in its history, so ``undo`` restores it."""
        n = 0
        now = _now()
        with self._write():
            for conv_id in ids:
                row = self._row(conv_id)
                pk = row[0]
                if row[4]:
                    continue
                prev = self._snapshot(pk)
                self._drop_messages(pk)
                self.db.execute("DELETE FROM tags WHERE conv = ?", (pk,))
                self.db.execute("DELETE FROM token_counts WHERE conv = ?", (pk,))
                self.db.execute("UPDATE conversations SET deleted = 1, tags = '[]', n_messages = 0 WHERE pk = ?", (pk,))
                self._new_revision(pk, "delete", now, None, prev)
                n += 1
        return n

    def _retag(self, pk: int, *, add: Sequence[str], remove: Sequence[str], now: str) -> bool:
        tags_json, deleted = self.db.execute("SELECT tags, deleted FROM conversations WHERE pk = ?", (pk,)).fetchone()
        if deleted:
            return False
        old = _loads(tags_json, [])
        new = [t for t in dict.fromkeys([*old, *add]) if t not in remove]
        if new == old:
            return False
        prev = self._snapshot(pk)
        self.db.execute("UPDATE conversations SET tags = ? WHERE pk = ?", (orjson.dumps(new).decode(), pk))
        self.db.execute("DELETE FROM tags WHERE conv = ?", (pk,))
        self.db.executemany("INSERT INTO tags VALUES (?, ?)", [(t, pk) for t in new])
        dg = self.db.execute("SELECT digest FROM conversations WHERE pk = ?", (pk,)).fetchone()[0]
        self._new_revision(pk, "tag", now, dg, prev)
        return True

    def tag(self, ids: Iterable[str], *, add: Sequence[str] = (), remove: Sequence[str] = ()) -> int:
        """Add and remove tags; returns how many conversations changed (each gets a revision)."""
        now = _now()
        with self._write():
            return sum(self._retag(self._row(i)[0], add=add, remove=remove, now=now) for i in ids)

    def history(self, conv_id: str) -> list[Revision]:
        pk = self._row(conv_id)[0]
        return [
            Revision(rev, op, at, dg, bool(undone))
            for rev, op, at, dg, undone in self.db.execute(
                "SELECT revision, op, at, digest, undone FROM revisions WHERE conv = ? ORDER BY revision", (pk,)
            )
        ]

    def undo(self, conv_id: str) -> tuple[int, int]:
        """Undo the latest change not yet undone (repeat to go further back); the undo is itself a
        new revision. Returns (the revision undone, the new revision)."""
        now = _now()
        with self._write():
            pk = self._row(conv_id)[0]
            target = self.db.execute(
                "SELECT revision, op, prev FROM revisions WHERE conv = ? AND op != 'undo' AND undone = 0 "
                "ORDER BY revision DESC LIMIT 1",
                (pk,),
            ).fetchone()
            if target is None:
                raise ChatloomError(f"{conv_id}: nothing to undo")
            rev, _, prev = target
            if prev is None:  # it did not exist before: undoing its creation deletes it
                snapshot = self._snapshot(pk)
                self._drop_messages(pk)
                self.db.execute("DELETE FROM tags WHERE conv = ?", (pk,))
                self.db.execute("UPDATE conversations SET deleted = 1, tags = '[]', n_messages = 0 WHERE pk = ?", (pk,))
                new = self._new_revision(pk, "undo", now, None, snapshot)
            else:
                conv = msgspec.json.decode(prev, type=Conversation)
                new = self._replace(pk, conv, digest(conv), op="undo", now=now)
            self.db.execute("UPDATE revisions SET undone = 1 WHERE conv = ? AND revision = ?", (pk, rev))
            return rev, new

    # -- settings ---------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        return {k: orjson.loads(v) for k, v in self.db.execute("SELECT key, value FROM settings ORDER BY key")}

    def get_setting(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else orjson.loads(row[0])

    def set_setting(self, key: str, value: Any) -> None:
        with self._write():
            if value is None:
                self.db.execute("DELETE FROM settings WHERE key = ?", (key,))
            else:
                self.db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, orjson.dumps(value).decode()))

    # -- the import journal -----------------------------------------------------------------

    def journal_begin(self, file: str, fmt: str, fingerprint: str) -> tuple[int, dict[str, Any] | None]:
        """Record the start of an import of one file. Returns the run's id and, when an earlier
        run of the same file (same fingerprint) never finished, what that run had committed."""
        with self._write():
            row = self.db.execute(
                "SELECT pk, records, added, updated FROM imports WHERE file = ? AND fingerprint = ? AND status = 'running' "
                "ORDER BY pk DESC LIMIT 1",
                (file, fingerprint),
            ).fetchone()
            interrupted = None
            if row is not None:
                self.db.execute("UPDATE imports SET status = 'interrupted' WHERE pk = ?", (row[0],))
                interrupted = {"records": row[1], "added": row[2], "updated": row[3]}
            cur = self.db.execute(
                "INSERT INTO imports (file, format, fingerprint, status, started_at) VALUES (?, ?, ?, 'running', ?)",
                (file, fmt, fingerprint, _now()),
            )
            return cur.lastrowid, interrupted

    def _journal_update(self, run: int, c: ImportCounts, status: str | None = None) -> None:
        self.db.execute(
            "UPDATE imports SET records = ?, added = ?, updated = ?, unchanged = ?, "
            "status = coalesce(?, status), finished_at = CASE WHEN ? IS NULL THEN NULL ELSE ? END WHERE pk = ?",
            (c.records, c.added, c.updated, c.unchanged, status, status, _now(), run),
        )

    def journal_end(self, run: int, counts: ImportCounts, *, status: str, bad: int = 0) -> None:
        with self._write():
            self._journal_update(run, counts, status)
            self.db.execute("UPDATE imports SET bad = ? WHERE pk = ?", (bad, run))

    # -- token counts and stats -------------------------------------------------------------

    def token_counts(self, tokenizer: Any, *, progress: Callable[[int, int], None] | None = None) -> list[int]:
        """Tokens per live conversation as rendered in ChatML (see ``Tokenizer.chatml_counts``).

        Counts are cached per tokenizer and digest; only new or changed conversations are counted.
        """
        key = tokenizer.cache_key
        rows = self.db.execute(
            """SELECT c.pk, c.digest, t.tokens FROM conversations c
               LEFT JOIN token_counts t ON t.tokenizer = ? AND t.conv = c.pk AND t.digest = c.digest
               WHERE c.deleted = 0 ORDER BY c.msg_start""",
            (key,),
        ).fetchall()
        missing = {pk: dg for pk, dg, tokens in rows if tokens is None}
        counts = {pk: tokens for pk, _, tokens in rows if tokens is not None}
        if missing:
            done = 0
            for batch in self._iter_texts(missing, batch=2000):
                sums = tokenizer.chatml_counts([texts for _, texts in batch])
                with self._write():
                    self.db.executemany(
                        "INSERT OR REPLACE INTO token_counts VALUES (?, ?, ?, ?)",
                        [(key, pk, missing[pk], n) for (pk, _), n in zip(batch, sums)],
                    )
                counts.update((pk, n) for (pk, _), n in zip(batch, sums))
                done += len(batch)
                if progress is not None:
                    progress(done, len(missing))
        return [counts[pk] for pk, _, _ in rows]

    def _iter_texts(self, pks: dict[int, str], batch: int) -> Iterator[list[tuple[int, list[tuple[str, str]]]]]:
        """(pk, [(role, content)]) for the given conversations, in batches, streaming."""
        db = self._connect(self.path)
        try:
            db.execute("BEGIN")
            convs = db.execute("SELECT pk, msg_start, n_messages FROM conversations WHERE deleted = 0 ORDER BY msg_start")
            msgs = db.execute("SELECT pk, role, content FROM messages ORDER BY pk")
            pending = next(msgs, None)
            out: list[tuple[int, list[tuple[str, str]]]] = []
            for pk, start, n in convs:
                while pending is not None and pending[0] < start:
                    pending = next(msgs, None)
                texts = []
                while pending is not None and pending[0] < start + n:
                    texts.append((pending[1], pending[2]))
                    pending = next(msgs, None)
                if pk in pks:
                    out.append((pk, texts))
                    if len(out) >= batch:
                        yield out
                        out = []
            if out:
                yield out
        finally:
            db.close()

    def stats(self, tokenizer: Any | None = None, *, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """The dataset at a glance; with a tokenizer, token counts per conversation too."""
        db = self.db
        out: dict[str, Any] = {
            "dataset": str(self.path),
            "conversations": self.count(),
            "messages": db.execute("SELECT coalesce(sum(n_messages), 0) FROM conversations WHERE deleted = 0").fetchone()[0],
            "deleted": db.execute("SELECT count(*) FROM conversations WHERE deleted = 1").fetchone()[0],
            "by_role": dict(db.execute("SELECT role, count(*) FROM messages GROUP BY role ORDER BY count(*) DESC")),
            "by_tag": dict(db.execute("SELECT tag, count(*) FROM tags GROUP BY tag ORDER BY count(*) DESC, tag")),
            "by_language": dict(
                db.execute(
                    "SELECT coalesce(language, 'unknown'), count(*) FROM conversations WHERE deleted = 0 "
                    "GROUP BY 1 ORDER BY 2 DESC, 1"
                )
            ),
            "by_source": dict(
                db.execute(
                    "SELECT coalesce(json_extract(source, '$.format'), 'unknown'), count(*) FROM conversations "
                    "WHERE deleted = 0 GROUP BY 1 ORDER BY 2 DESC, 1"
                )
            ),
        }
        n = out["conversations"]
        out["turns"] = {"mean": round(out["messages"] / n, 2) if n else 0}
        if tokenizer is not None:
            import numpy as np

            counts = np.asarray(self.token_counts(tokenizer, progress=progress), dtype=np.int64)
            out["tokens"] = {
                "tokenizer": tokenizer.name,
                "total": int(counts.sum()),
                "mean": round(float(counts.mean()), 2) if n else 0,
                "p50": int(np.percentile(counts, 50)) if n else 0,
                "p95": int(np.percentile(counts, 95)) if n else 0,
                "max": int(counts.max()) if n else 0,
            }
            out["_token_counts"] = counts
        return out

    # -- integrity --------------------------------------------------------------------------

    def check(self) -> CheckResult:
        """Check the file (SQLite's own check, foreign keys, the FTS index) and our invariants:
        message ranges, digests, tags, revision numbers."""
        db = self.db
        res = CheckResult(conversations=self.count())
        res.messages = db.execute("SELECT count(*) FROM messages").fetchone()[0]
        bad = [r[0] for r in db.execute("PRAGMA integrity_check") if r[0] != "ok"]
        res.problems += [f"sqlite: {b}" for b in bad]
        fk = db.execute("PRAGMA foreign_key_check").fetchall()
        if fk:
            res.problems.append(f"foreign keys: {len(fk)} rows point at nothing (first: {fk[0]})")
        try:
            db.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")
        except sqlite3.DatabaseError as err:
            res.problems.append(f"full-text index: {err} (repair: chatloom check --repair)")
        for (cid,) in db.execute(
            """SELECT c.id FROM conversations c WHERE c.deleted = 0 AND c.n_messages != (
                   SELECT count(*) FROM messages m WHERE m.pk >= c.msg_start
                   AND m.pk < c.msg_start + c.n_messages AND m.conv = c.pk)"""
        ):
            res.problems.append(f"{cid}: its message range is broken")
        stray = db.execute(
            """SELECT count(*) FROM messages m JOIN conversations c ON c.pk = m.conv
               WHERE c.deleted = 1 OR m.pk < c.msg_start OR m.pk >= c.msg_start + c.n_messages"""
        ).fetchone()[0]
        if stray:
            res.problems.append(f"{stray} messages belong to no live conversation")
        for (cid,) in db.execute(
            """SELECT c.id FROM conversations c WHERE c.revision !=
                   (SELECT max(revision) FROM revisions r WHERE r.conv = c.pk) OR NOT EXISTS
                   (SELECT 1 FROM revisions r WHERE r.conv = c.pk)"""
        ):
            res.problems.append(f"{cid}: its revision number does not match its history")
        tag_table: dict[int, set[str]] = {}
        for tag, pk in db.execute("SELECT tag, conv FROM tags"):
            tag_table.setdefault(pk, set()).add(tag)
        for pk, cid, tags in db.execute("SELECT pk, id, tags FROM conversations WHERE deleted = 0"):
            if set(_loads(tags, [])) != tag_table.pop(pk, set()):
                res.problems.append(f"{cid}: its tags disagree with the tag index")
        stored = dict(db.execute("SELECT id, digest FROM conversations WHERE deleted = 0"))
        for conv in self.iter_conversations():
            if digest(conv) != stored.get(conv.id):
                res.problems.append(f"{conv.id}: its content does not match its digest")
        return res

    def repair_fts(self) -> None:
        """Rebuild the full-text index from the messages."""
        with self._write():
            self.db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")


def _kind(old: tuple[Any, ...] | None, dg: str) -> str:
    """What importing a conversation does, given its stored row (pk, id, digest, deleted, tags):
    ``added``, ``deleted`` (a tombstone: skipped), ``unchanged`` or ``updated``."""
    if old is None:
        return "added"
    if old[3]:
        return "deleted"
    return "unchanged" if old[2] == dg else "updated"


class Piece(list):  # type: ignore[type-arg]
    """A batch whose transaction goes on with the next batch (see ``digest_batches``)."""


def digest_batches(
    convs: Iterable[Conversation], size: int, max_messages: int = 60_000, gate: threading.Event | None = None,
    piece_messages: int | None = None,
) -> Iterator[list[tuple[Conversation, str]]]:  # fmt: skip
    """Batches of (conversation, digest) with ids set, of ``size`` conversations or
    ``max_messages`` messages, whichever comes first (more batches of long chats let parsing
    overlap indexing; fewer than ~50k messages a batch makes the FTS step dearer). An id
    repeated inside a batch starts a new batch, so the second copy is compared with the first
    as stored. Each batch is one transaction of ``import_batches``.

    ``piece_messages``: every batch comes in pieces, ``Piece`` lists of about that many messages,
    so that a writer in another process starts on a batch soon and never waits long for the next
    piece; the pieces of a batch are one transaction all the same, so where a transaction ends
    does not change (a file cut short inside a batch writes nothing of it). ``gate``: wait for it
    before each conversation (see ``import_conversations``)."""
    batch: list[tuple[Conversation, str]] = []
    seen: set[str] = set()
    messages = 0  # of the whole batch, pieces sent included (``seen`` holds its ids)
    piece_start = 0  # the messages of the batch before this piece; above 0: a piece was sent, and the batch must still end
    for conv in convs:
        if gate is not None:
            gate.wait()
        dg = digest(conv)
        cid = ensure_id(conv, dg)
        if cid in seen:
            yield batch  # may be empty after a piece: it still ends the transaction
            batch, seen, messages, piece_start = [], set(), 0, 0
        batch.append((conv, dg))
        seen.add(cid)
        messages += len(conv.messages)
        if len(seen) >= size or messages >= max_messages:
            yield batch
            batch, seen, messages, piece_start = [], set(), 0, 0
        elif piece_messages is not None and messages - piece_start >= piece_messages:
            yield Piece(batch)
            batch, piece_start = [], messages
    if batch or piece_start:
        yield batch


def fingerprint(path: Path) -> str:
    """Size, mtime and the hash of the first MiB: cheap, and enough to know a file again."""
    st = path.stat()
    with open(path, "rb") as f:
        head = hashlib.sha256(f.read(1 << 20)).hexdigest()[:16]
    return f"{st.st_size}:{st.st_mtime_ns}:{head}"
