"""What diff and sync read and keep in a dataset: every conversation's *state* in id order
(``states``), and per remote the states both sides had at the last sync (``sync_base``), the
conflicts a sync found (``conflicts``) and their resolution.

A state is a short hash of what a person changes: the digest (the messages: roles, names,
contents, tool calls) and the metadata (title, language, tags, tool schemas, meta), or
``DELETED`` for a tombstone. Two datasets hold the same conversation when its states are equal.
It is read from the conversation rows alone (no message is read): two datasets of a million
conversations compare in seconds. A message's own ``train`` flag or ``meta`` is not in it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import orjson

from ..errors import ChatloomError
from ..model import Conversation, digest
from .edit import Edit
from .rows import dumps, now

DELETED = "deleted"


def state_of(dg: str, title: str | None, language: str | None, tags: str | None, tools: str | None, meta: str | None) -> str:
    """A conversation's state from its stored columns (tags, tools, meta as stored: JSON text)."""
    h = hashlib.blake2b(digest_size=12)
    for part in (dg, title or "", language or "", tags or "[]", tools or "", meta or ""):
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()


def conversation_state(conv: Conversation) -> str:
    """The state of a conversation that is not stored (read from a file, or a remote's)."""
    return state_of(digest(conv), conv.title, conv.language, orjson.dumps(conv.tags).decode(), dumps(conv.tools), dumps(conv.meta))


#: the columns a state is made of, in the order ``_row_state`` reads them
_STATE_COLUMNS = ("deleted", "digest", "title", "language", "tags", "tools", "meta")
_STATE = ", ".join(_STATE_COLUMNS)
#: ids looked up at once when ``differing`` pairs rows by id
_ID_CHUNK = 50_000


def _row_state(row: tuple[Any, ...]) -> str:
    """The state of the ``_STATE_COLUMNS`` of one row."""
    deleted, dg, title, language, tags, tools, meta = row
    return DELETED if deleted else state_of(dg, title, language, tags, tools, meta)


@dataclass
class Conflict:
    """A conversation both sides changed since the last sync: ours is the dataset's, theirs kept here."""

    id: str
    remote: str
    theirs: Conversation | None  # None: they deleted it
    theirs_state: str
    base_state: str | None
    at: str


class Sync(Edit):
    """The sync API of ``Store``."""

    def states(self) -> Iterator[tuple[str, str]]:
        """(id, state) of every conversation, tombstones included (state ``DELETED``), by id;
        one snapshot, on a connection of its own, streaming."""
        from .db import connect

        db = connect(self.path)
        try:
            db.execute("BEGIN")
            for conv_id, *row in db.execute(f"SELECT id, {_STATE} FROM conversations ORDER BY id"):
                yield conv_id, _row_state(tuple(row))
        finally:
            db.close()

    def differing(self, other: str | Path) -> Iterator[tuple[str, str | None, str | None]]:
        """(id, state here, state in ``other``) for each conversation whose row differs between
        this dataset and the dataset file ``other``, in id order (None: that side never had it).

        The other file is attached and compared inside SQLite; no row that is the same comes to
        Python. Rows are paired by pk first (a walk of both tables in pk order, as sqldiff does:
        copies of one file, and datasets synced from one, mostly share their pks), and the rows
        whose pk holds another id there are paired by id; the other table is walked again only
        when it holds rows that no pairing found."""
        from .db import connect

        db = connect(self.path)
        pick_a, pick_b = ", ".join(f"a.{c}" for c in _STATE_COLUMNS), ", ".join(f"b.{c}" for c in _STATE_COLUMNS)
        same = " AND ".join(f"a.{c} IS b.{c}" for c in _STATE_COLUMNS)
        out: list[tuple[str, str | None, str | None]] = []
        try:
            db.execute("ATTACH DATABASE ? AS other", (str(Path(other).resolve()),))  # read here, never written
            db.execute("BEGIN")
            unaligned: dict[str, tuple[Any, ...]] = {}
            for row in db.execute(
                f"SELECT a.id, b.id, {pick_a}, {pick_b} FROM main.conversations a LEFT JOIN other.conversations b ON b.pk = a.pk "
                f"WHERE b.id IS NOT a.id OR NOT ({same})"
            ):
                if row[1] == row[0]:
                    out.append((row[0], _row_state(row[2:9]), _row_state(row[9:16])))
                else:
                    unaligned[row[0]] = row[2:9]
            ids = list(unaligned)  # taken once: the pairing below takes ids out of unaligned
            for i in range(0, len(ids), _ID_CHUNK):  # by id, in chunks
                for conv_id, *theirs in db.execute(
                    f"SELECT b.id, {pick_b} FROM other.conversations b WHERE b.id IN (SELECT value FROM json_each(?))",
                    (orjson.dumps(ids[i : i + _ID_CHUNK]).decode(),),
                ):
                    out.append((conv_id, _row_state(unaligned.pop(conv_id)), _row_state(tuple(theirs))))
            out += [(conv_id, _row_state(mine), None) for conv_id, mine in unaligned.items()]
            (n_here,) = db.execute("SELECT count(*) FROM main.conversations").fetchone()
            (n_there,) = db.execute("SELECT count(*) FROM other.conversations").fetchone()
            reached = n_here - len(unaligned)  # the rows there that the pk and the id pairings reached
            if n_there > reached:  # rows there no pairing reached: those not here at all
                for conv_id, *theirs in db.execute(
                    f"SELECT b.id, {pick_b} FROM other.conversations b LEFT JOIN main.conversations a ON a.pk = b.pk "
                    f"WHERE a.id IS NOT b.id AND NOT EXISTS (SELECT 1 FROM main.conversations x WHERE x.id = b.id)"
                ):
                    out.append((conv_id, None, _row_state(tuple(theirs))))
        finally:
            db.close()
        out.sort()
        for conv_id, here, there in out:
            if here != there:
                yield conv_id, here, there

    def state(self, conv_id: str) -> str | None:
        """One conversation's state (None: the dataset never had it)."""
        row = self.db.execute(f"SELECT {_STATE} FROM conversations WHERE id = ?", (conv_id,)).fetchone()
        return None if row is None else _row_state(row)

    def revision_marks(self, conv_id: str) -> list[tuple[int, str, str, str | None]]:
        """(revision, op, at, digest) of each change: two copies of one file share a prefix."""
        return self.db.execute(
            "SELECT r.revision, r.op, r.at, r.digest FROM revisions r JOIN conversations c ON c.pk = r.conv "
            "WHERE c.id = ? ORDER BY r.revision", (conv_id,)).fetchall()  # fmt: skip

    def replace_if(self, conv_id: str, expected: str | None, conv: Conversation | None, *, op: str = "sync") -> bool:
        """Write ``conv`` (None: delete it) only while the conversation is in the state
        ``expected`` (None: absent), the look and the write in one transaction: a save that came
        in between is never overwritten. True when it was written (or nothing was to be done)."""
        with self._write():
            if self.state(conv_id) != expected:
                return False
            if conv is not None:
                conv.id = conv_id
                self.put(conv, op=op)
            elif expected not in (None, DELETED):
                self.delete([conv_id])
            return True

    def states_of(self, ids: Iterable[str]) -> dict[str, str | None]:
        """The states of these conversations now (None: never here)."""
        return {i: self.state(i) for i in ids}

    def dataset_uid(self) -> str:
        """This dataset's own id (made on first use, kept in its settings): what names it to a
        remote, whatever its path."""
        uid = self.get_setting("dataset_uid")
        if uid is None:
            import uuid

            uid = uuid.uuid4().hex
            self.set_setting("dataset_uid", uid)
        return str(uid)

    # -- a dataset served as a remote: its changes feed, and changes pushed to it ---------------

    def changes(self, after: str | None = None, limit: int = 5000) -> tuple[list[tuple[str, str]], str | None]:
        """A page of the changes feed: (id, state) of the conversations written after the cursor
        (None: all), in the order of their last write (each write's change number: migration 8),
        and the cursor of the page's end (the same cursor when nothing follows). A cursor is the
        last change number seen; rows from before migration 8 are all 0 and page by pk."""
        seq, pk = 0, 0
        if after:
            try:
                seq, pk = (int(x) for x in after.split(".", 1))
            except ValueError:
                raise ChatloomError(f"not a changes cursor: {after[:40]!r}") from None
        rows = self.db.execute(
            f"SELECT id, {_STATE}, seq, pk FROM conversations WHERE (seq, pk) > (?, ?) ORDER BY seq, pk LIMIT ?",
            (seq, pk, limit)).fetchall()  # fmt: skip
        if not rows:
            return [], after
        return [(r[0], _row_state(r[1:8])) for r in rows], f"{rows[-1][8]}.{rows[-1][9]}"

    def changes_mark(self) -> str | None:
        """The cursor of the feed's end now: what a sync has seen of this side."""
        row = self.db.execute("SELECT seq, pk FROM conversations ORDER BY seq DESC, pk DESC LIMIT 1").fetchone()
        return None if row is None else f"{row[0]}.{row[1]}"

    def apply_change(self, change: str, conv_id: str, expected: str | None, conv: Conversation | None) -> tuple[bool, str | None]:
        """Apply one pushed change (``conv``, or None: delete) when the conversation is still in
        the state the client based it on (``expected``), in one transaction with its record: the
        same change id again is answered from the record, never applied twice. Returns (applied,
        the conversation's state now)."""
        with self._write():
            done = self.db.execute("SELECT applied FROM sync_applied WHERE change = ?", (change,)).fetchone()
            if done is not None and done[0]:  # applied before: a retry is answered, not applied again
                return True, self.state(conv_id)
            # (one refused before is looked at again: the conversation may be back in the state it expects)
            applied = self.replace_if(conv_id, expected, conv)  # joins this transaction
            now_state = self.state(conv_id)
            self.db.execute("INSERT OR REPLACE INTO sync_applied (change, id, applied, state, at) VALUES (?, ?, ?, ?, ?)",
                            (change, conv_id, int(applied), now_state, now()))  # fmt: skip
            return applied, now_state

    def linked(self, key: str) -> dict[str, str]:
        """``meta[key]["id"]`` → conversation id, over the conversations that carry one, tombstones
        too (a platform's own row id: how a remote that names rows its own way finds them here)."""
        path = f'$."{key}".id'
        rows = self.db.execute("SELECT json_extract(meta, ?), id FROM conversations WHERE meta IS NOT NULL "
                               "AND json_extract(meta, ?) != '' ORDER BY deleted DESC", (path, path))  # fmt: skip
        return {str(r): i for r, i in rows}  # a live one wins over a tombstone

    # -- the base: what both sides held at the last sync, per remote ---------------------------

    def sync_base(self, remote: str) -> dict[str, str]:
        return dict(self.db.execute("SELECT id, state FROM sync_base WHERE remote = ?", (remote,)))

    def set_sync_base(self, remote: str, states: Iterable[tuple[str, str]]) -> None:
        """Record (id, state) pairs as both sides' agreed state (one transaction; none: no write)."""
        rows = [(remote, i, s) for i, s in states]
        if not rows:
            return
        with self._write():
            self.db.executemany("INSERT OR REPLACE INTO sync_base (remote, id, state) VALUES (?, ?, ?)", rows)

    def rekey_remote(self, old: str, new: str) -> None:
        """Keep what is kept under ``old`` (the base, the conflicts) under ``new``: a peer dataset
        that moved (its file renamed, or mounted elsewhere)."""
        with self._write():
            self.db.execute("UPDATE OR IGNORE sync_base SET remote = ? WHERE remote = ?", (new, old))
            self.db.execute("DELETE FROM sync_base WHERE remote = ?", (old,))
            self.db.execute("UPDATE sync_conflicts SET remote = ? WHERE remote = ?", (new, old))

    def drop_sync_base(self, remote: str, ids: Iterable[str]) -> None:
        """Forget the base of ``ids`` with ``remote``: the next sync takes them as never synced."""
        with self._write():
            self.db.executemany("DELETE FROM sync_base WHERE remote = ? AND id = ?", [(remote, i) for i in ids])

    # -- conflicts --------------------------------------------------------------------------

    def add_conflict(self, conv_id: str, remote: str, theirs: Conversation | None, theirs_state: str, base_state: str | None) -> None:
        with self._write():
            self.db.execute(
                "INSERT OR REPLACE INTO sync_conflicts (id, remote, theirs, theirs_state, base_state, at) VALUES (?, ?, ?, ?, ?, ?)",
                (conv_id, remote, None if theirs is None else msgspec.json.encode(theirs).decode(), theirs_state, base_state, now()),
            )

    def conflicts(self, remote: str | None = None, *, conv_id: str | None = None) -> list[Conflict]:
        """The open conflicts (with ``remote``; of one conversation), by id."""
        where, args = ["resolved = 0"], []
        for column, value in (("remote", remote), ("id", conv_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        rows = self.db.execute(f"SELECT id, remote, theirs, theirs_state, base_state, at FROM sync_conflicts "
                               f"WHERE {' AND '.join(where)} ORDER BY id", args)  # fmt: skip
        return [Conflict(i, r, None if t is None else msgspec.json.decode(t, type=Conversation), ts, bs, at) for i, r, t, ts, bs, at in rows]

    def conflict(self, conv_id: str) -> Conflict | None:
        found = self.conflicts(conv_id=conv_id)
        return found[0] if found else None

    def drop_conflict(self, conv_id: str, *, base: str | None = None, resolved: bool = False) -> None:
        """The conflict is over; ``base``: the state both sides are to be taken as having agreed
        on (theirs, by default), so that the next sync moves the resolution to them. ``resolved``:
        resolved here, and kept (marked) until a sync has looked at it again."""
        with self._write():
            row = self.db.execute("SELECT remote, theirs_state FROM sync_conflicts WHERE id = ?", (conv_id,)).fetchone()
            if resolved:
                self.db.execute("UPDATE sync_conflicts SET resolved = 1 WHERE id = ?", (conv_id,))
            else:
                self.db.execute("DELETE FROM sync_conflicts WHERE id = ?", (conv_id,))
            if row is not None:
                self.db.execute("INSERT OR REPLACE INTO sync_base (remote, id, state) VALUES (?, ?, ?)",
                                (row[0], conv_id, base if base is not None else row[1]))  # fmt: skip

    def resolved_conflicts(self, remote: str) -> list[str]:
        """The conflicts resolved here since the last sync with ``remote``."""
        return [i for (i,) in self.db.execute("SELECT id FROM sync_conflicts WHERE remote = ? AND resolved = 1", (remote,))]

    def forget_resolved(self, remote: str, ids: Iterable[str]) -> None:
        with self._write():
            self.db.executemany("DELETE FROM sync_conflicts WHERE remote = ? AND id = ? AND resolved = 1", [(remote, i) for i in ids])

    # -- remotes ----------------------------------------------------------------------------

    def remotes(self) -> dict[str, dict[str, Any]]:
        return {name: {"url": url, "kind": kind, **orjson.loads(options)}
                for name, url, kind, options in self.db.execute("SELECT name, url, kind, options FROM sync_remotes ORDER BY name")}  # fmt: skip

    def add_remote(self, name: str, url: str, kind: str, options: dict[str, Any]) -> None:
        with self._write():
            self.db.execute("INSERT INTO sync_remotes (name, url, kind, options) VALUES (?, ?, ?, ?)",
                            (name, url, kind, orjson.dumps(options).decode()))  # fmt: skip

    def set_remote_marks(self, name: str, **marks: str | None) -> None:
        """Keep, in a remote's options, how far a sync has seen each side's changes feed."""
        with self._write():
            (options,) = self.db.execute("SELECT options FROM sync_remotes WHERE name = ?", (name,)).fetchone()
            self.db.execute("UPDATE sync_remotes SET options = ? WHERE name = ?",
                            (orjson.dumps({**orjson.loads(options), **marks}).decode(), name))  # fmt: skip

    def remove_remote(self, name: str) -> bool:
        with self._write():
            gone = self.db.execute("DELETE FROM sync_remotes WHERE name = ?", (name,)).rowcount
            self.db.execute("DELETE FROM sync_base WHERE remote = ?", (name,))
            self.db.execute("DELETE FROM sync_conflicts WHERE remote = ?", (name,))
        return bool(gone)
