"""Bulk import: many conversations upserted by id in few transactions (``chatloom import``).

    counts = store.import_conversations(convs, tags=["2024"])    # batched, idempotent: an
                                                                  # unchanged id is left alone

The public bulk-write interface, for a reader that parses somewhere else (``importing.worker``
parses in another process) and a store that writes what it sends:

    for batch in make_batches(convs, 5000, piece_messages=4096):    # where the parsing is
        send([c for c, _ in batch], [d for _, d in batch], batch.piece)
    store.import_batches(Batch(zip(cs, ds), piece=piece) for cs, ds, piece in received)  # the writer

- ``make_batches(convs, size)`` digests each conversation, sets its id, and cuts the stream into
  ``Batch``es: lists of (conversation, digest) pairs, each one transaction of ``import_batches``.
- A batch with ``piece=True`` is a part of one: its transaction goes on with the next batch, so
  the writer can start on a batch before the whole of it is parsed. Where transactions end does
  not depend on the pieces; a stream must not end with a piece.
- ``store.import_batches(batches)`` writes them and returns ``ImportCounts``; a plain list is a
  whole batch.

A file is imported whole or not at all without one long transaction: every revision an import
makes records its run (``journal``), and ``store.undo_import(run)`` takes back what a run
committed when its file fails part-way.

Layout choices, each for the hot path: rows are built in Python and written with one
``executemany`` per table; the FTS5 index is filled per batch with one ``INSERT … SELECT`` over
the batch's message range, not row by row; the next batch is parsed while this one is indexed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass

import msgspec

from ..model import Conversation, digest, ensure_id
from ..parallel import prefetch
from .check import SoundCheck
from .edit import INSERT_REVISION, Edit
from .journal import ImportRun, Journal
from .rows import EXISTING_COLUMNS, INSERT_CONVERSATION, Existing, conv_row, loads, message_rows, now

_IN_CHUNK = 900  # ids per "IN (?, ?, …)" query


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


class Batch(list[tuple[Conversation, str]]):
    """(conversation, digest) pairs, ids set: one transaction of ``Store.import_batches``, or with
    ``piece=True`` a part of one that goes on in the next batch."""

    __slots__ = ("piece",)

    def __init__(self, pairs: Iterable[tuple[Conversation, str]] = (), *, piece: bool = False):
        super().__init__(pairs)
        self.piece = piece

    def __repr__(self) -> str:
        return f"Batch({list.__repr__(self)}, piece={self.piece})"


def make_batches(
    convs: Iterable[Conversation], size: int, *, max_messages: int = 60_000, piece_messages: int | None = None
) -> Iterator[Batch]:
    """Batches of (conversation, digest) with ids set, of ``size`` conversations or
    ``max_messages`` messages, whichever comes first (more batches of long chats let parsing
    overlap indexing; fewer than ~50k messages a batch makes the FTS step dearer). An id
    repeated inside a batch starts a new batch, so the second copy is compared with the first
    as stored.

    ``piece_messages``: every batch comes in pieces (``piece=True``) of about that many
    messages, so that a writer in another process starts on a batch soon and never waits long
    for the next piece; the pieces of a batch are one transaction all the same, so where a
    transaction ends does not change (a file cut short inside a batch writes nothing of it)."""
    return _batches(convs, size, max_messages, piece_messages)


def _batches(
    convs: Iterable[Conversation], size: int, max_messages: int = 60_000, piece_messages: int | None = None,
    gate: threading.Event | None = None,
) -> Iterator[Batch]:  # fmt: skip
    """``make_batches``; ``gate``: wait for it before each conversation (see ``import_conversations``)."""
    batch = Batch()
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
            batch, seen, messages, piece_start = Batch(), set(), 0, 0
        batch.append((conv, dg))
        seen.add(cid)
        messages += len(conv.messages)
        if len(seen) >= size or messages >= max_messages:
            yield batch
            batch, seen, messages, piece_start = Batch(), set(), 0, 0
        elif piece_messages is not None and messages - piece_start >= piece_messages:
            batch.piece = True
            yield batch
            batch, piece_start = Batch(), messages
    if batch or piece_start:
        yield batch


def _kind(old: Existing | None, dg: str) -> str:
    """What importing a conversation does, given its stored row: ``added``, ``deleted`` (a
    tombstone: skipped), ``unchanged`` or ``updated``."""
    if old is None:
        return "added"
    if old.deleted:
        return "deleted"
    return "unchanged" if old.digest == dg else "updated"


class Bulk(Edit, Journal):
    """The bulk import of ``Store``."""

    def import_conversations(
        self,
        convs: Iterable[Conversation],
        *,
        tags: Sequence[str] = (),
        batch_size: int = 5000,
        atomic: bool = False,
        journal: ImportRun | None = None,
        on_batch: Callable[[ImportCounts], None] | None = None,
        sound: SoundCheck | None = None,
    ) -> ImportCounts:
        """Upsert conversations by id, in transactions of ``batch_size``.

        New ids are added; an id whose digest is unchanged is left alone (importing the same file
        twice adds nothing); a changed one is updated with a revision; a deleted one is skipped.
        ``atomic=True`` runs everything in one transaction (all or nothing). ``journal``: the run
        (``journal_begin``) whose row is written with the first batch and updated with each;
        ``on_batch`` and ``sound``: see ``import_batches``.
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
        batches = prefetch(_batches(convs, batch_size, gate=gate), depth=1)
        try:
            return self.import_batches(batches, tags=tags, atomic=atomic, journal=journal, on_batch=on_batch, gate=gate, sound=sound)
        finally:
            gate.set()  # a producer waiting at the gate must be able to finish
            batches.close()

    def import_batches(
        self,
        batches: Iterable[list[tuple[Conversation, str]]],
        *,
        tags: Sequence[str] = (),
        atomic: bool = False,
        journal: ImportRun | None = None,
        on_batch: Callable[[ImportCounts], None] | None = None,
        gate: threading.Event | None = None,
        sound: SoundCheck | None = None,
    ) -> ImportCounts:
        """``import_conversations`` for batches made elsewhere (``make_batches``; see this module's
        docstring), each written in its own transaction unless ``atomic``; a ``Batch`` with
        ``piece=True`` goes on in the next batch's transaction. The next batch is asked for
        just before the current one's FTS step; ``gate``, when given, is open only from then
        until the batch commits (after a piece: until the next batch begins). ``on_batch(counts)``
        hears the counts so far each time a batch is committed; inside an outer transaction
        (``atomic``, or a caller's) nothing is committed before it ends, and it is not called.

        ``sound``: the check of the file running beside the import (``start_sound_check``).
        Nothing is committed before it has passed: the first transaction stays open, taking
        in the batches that come meanwhile, until it ends; a damaged file is a ``StoreError``
        and nothing is written (no import into a damaged file)."""
        counts = ImportCounts()
        at = now()
        source = iter(batches)
        ahead: list[list[tuple[Conversation, str]] | BaseException | None] = []

        def fetch_next() -> None:
            if gate is not None:
                gate.set()  # stays open through the FTS step and the commit
            try:
                ahead.append(next(source, None))
            except BaseException as exc:  # raised before the next batch: after this one commits, or in its transaction
                ahead.append(exc)

        # Bulk rows reference conversations inserted in the same transaction, so the per-row
        # foreign-key lookup is skipped here (it cannot be toggled inside a transaction);
        # 'chatloom check' runs the foreign-key check over the whole file.
        fk_off = self._depth == 0
        piece_before = False  # the last batch was a piece (or the check is running): its transaction is open
        run = journal.pk if journal is not None else None  # the run's row, once a transaction has written it
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
                        if journal is not None:
                            run = self._journal_row(journal)
                    if batch:
                        self._import_batch(batch, tags, at, counts, run, before_index=fetch_next)
                    else:  # the end of a batch sent in pieces, with nothing more in it
                        fetch_next()
                    piece_before = isinstance(batch, Batch) and batch.piece
                    if piece_before:
                        continue
                    if sound is not None:
                        if not sound.finished() and ahead[-1] is not None:
                            piece_before = True  # more is coming: it joins this transaction
                            continue
                        sound.raise_if_damaged()
                        sound = None
                    if run is not None:
                        self._journal_update(run, counts)
                    transaction.close()  # commits, unless an outer transaction holds it
                    if self._depth == 0:
                        if journal is not None:
                            journal.pk = run
                        if on_batch is not None:
                            on_batch(counts)
                if sound is not None:  # a stream with no batch at all
                    sound.raise_if_damaged()
            if journal is not None and self._depth == 0:
                journal.pk = run
        finally:
            if fk_off:
                self.db.execute("PRAGMA foreign_keys = ON")
        return counts

    def undo_import(self, run: ImportRun, *, bad: int = 0) -> tuple[int, int]:
        """Take back what import run ``run`` committed, in one transaction, and record it as
        ``failed`` (with ``bad`` records): the conversations it added are removed (row, messages,
        index, tags, history), those it changed (updated, tagged) get their state from before it
        back, and lose the revisions it made. A conversation someone else has changed since is
        left as it is. Returns (conversations taken back, conversations left as they are). A run
        that committed nothing writes nothing: the file is as it was."""
        if run.pk is None:
            return 0, 0
        taken = left = 0
        with self._write():
            changed = self.db.execute(
                "SELECT conv, min(revision), max(revision) FROM revisions WHERE run = ? GROUP BY conv", (run.pk,)
            ).fetchall()
            # the change numbers given so far stay given, even those of rows removed here (the
            # changes feed's cursors are past them: a number given again would be skipped)
            self.db.execute("INSERT OR REPLACE INTO settings (key, value) SELECT 'seq_floor', "
                            "max(coalesce(max(seq), 0), coalesce((SELECT CAST(value AS INTEGER) FROM settings WHERE key = 'seq_floor'), 0)) "
                            "FROM conversations")  # fmt: skip
            for pk, first, last in changed:
                (current,) = self.db.execute("SELECT revision FROM conversations WHERE pk = ?", (pk,)).fetchone()
                if current != last:
                    left += 1
                    continue
                (prev,) = self.db.execute("SELECT prev FROM revisions WHERE conv = ? AND revision = ?", (pk, first)).fetchone()
                if prev is None:  # the run added it (an import never writes over a tombstone)
                    self._drop_messages(pk)
                    for table in ("tags", "token_counts", "revisions"):
                        self.db.execute(f"DELETE FROM {table} WHERE conv = ?", (pk,))
                    self.db.execute("DELETE FROM conversations WHERE pk = ?", (pk,))
                else:
                    conv = msgspec.json.decode(prev, type=Conversation)
                    before = self.db.execute("SELECT digest, at FROM revisions WHERE conv = ? AND revision = ?", (pk, first - 1)).fetchone()
                    dg, at = before if before is not None and before[0] is not None else (digest(conv), now())
                    self._overwrite(pk, conv, dg, at)
                    self.db.execute("DELETE FROM revisions WHERE conv = ? AND revision >= ?", (pk, first))
                    self.db.execute("UPDATE conversations SET revision = ?, modified_at = ?, seq = ? WHERE pk = ?",
                                    (first - 1, at, self._next_seq(), pk))  # fmt: skip
                taken += 1
            self._journal_update(run.pk, ImportCounts(), "failed")
            self.db.execute("UPDATE imports SET bad = ? WHERE pk = ?", (bad, run.pk))
            if run.earlier is not None:  # the earlier run it resumed is unfinished again, as before it
                self.db.execute("UPDATE imports SET status = 'running' WHERE pk = ? AND status = 'interrupted'", (run.earlier,))
        return taken, left

    def preview(self, convs: Iterable[Conversation], *, tags: Sequence[str] = (), batch_size: int = 5000) -> ImportCounts:
        """What ``import_conversations`` would count, without writing anything."""
        counts = ImportCounts()
        for batch in _batches(convs, batch_size):
            existing = self._existing([c.id for c, _ in batch])
            for conv, dg in batch:
                counts.records += 1
                kind = _kind(existing.get(conv.id), dg)
                setattr(counts, kind, getattr(counts, kind) + 1)
                if kind in ("added", "updated"):
                    counts.messages += len(conv.messages)
        return counts

    def _existing(self, ids: list[str]) -> dict[str, Existing]:
        """The stored state of the ids already in the dataset."""
        existing: dict[str, Existing] = {}
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            sql = f"SELECT {EXISTING_COLUMNS} FROM conversations WHERE id IN ({','.join('?' * len(chunk))})"
            for row in map(Existing._make, self.db.execute(sql, chunk)):
                existing[row.id] = row
        return existing

    def _import_batch(
        self,
        batch: list[tuple[Conversation, str]],
        tags: Sequence[str],
        at: str,
        counts: ImportCounts,
        run: int | None,
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
                conv_rows.append(conv_row(pk, conv, dg, 1, at, next_msg))
                msg_rows.extend(message_rows(conv, pk))
                next_msg += len(conv.messages)
                tag_rows.extend((t, pk) for t in conv.tags)
                rev_rows.append((pk, 1, "import", at, dg, None, run))
                counts.added += 1
                counts.messages += len(conv.messages)
            elif kind == "deleted":
                counts.deleted += 1
            elif kind == "unchanged":
                assert old is not None
                counts.unchanged += 1
                missing = [t for t in conv.tags if t not in loads(old.tags, [])]
                if missing:
                    self._retag(old.pk, add=missing, remove=(), at=at, run=run)
            else:  # a newer version of it: the tags a user added to the old one stay
                assert old is not None
                conv.tags = list(dict.fromkeys([*loads(old.tags, []), *conv.tags]))
                changed.append((old.pk, conv, dg))
        db.executemany(INSERT_CONVERSATION, conv_rows)
        if conv_rows:  # their change numbers, in pk order (the pks are contiguous)
            first_pk = conv_rows[0].pk
            db.execute("UPDATE conversations SET seq = ? + pk - ? WHERE pk >= ? AND pk < ?",
                       (self._next_seq(len(conv_rows)), first_pk, first_pk, first_pk + len(conv_rows)))  # fmt: skip
        self._insert_messages(msg_rows, first_msg)
        before_index()
        self._index_messages(first_msg, next_msg)
        db.executemany("INSERT INTO tags VALUES (?, ?)", tag_rows)
        db.executemany(INSERT_REVISION, rev_rows)
        for pk, conv, dg in changed:
            self._replace(pk, conv, dg, op="import", at=at, run=run)
            counts.updated += 1
            counts.messages += len(conv.messages)
