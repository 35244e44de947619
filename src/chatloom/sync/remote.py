"""Sync with a chatloom server (``chatloom studio`` or ``chatloom serve-dataset``): the dataset
here against the one it serves, by changes feeds, not by listing everything.

Each side says what changed since the last sync: this dataset by its own changes feed from the
mark kept for the remote, the server by its feed from the remote's mark. A feed is ordered by
change numbers given inside each write transaction (migration 8): a write that waited for the
lock is numbered after the one it waited for, so no change is skipped. Only those conversations
are compared (three-way, with the base kept here per remote), and only those that move cross the
wire: a pull fetches the conversations to take, a push sends the ones to give, each change with
an id made here from what it is (so a push retried or resumed after ``kill -9`` is answered from
the server's record, never applied twice) and the state it is based on (so a conversation saved
there meanwhile is not overwritten: it comes back in the next pull, or as a conflict).

The marks move only at the end of a sync; the base moves conversation by conversation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from ..errors import ChatloomError
from ..model import Conversation
from ..store import Store
from ..store.sync import DELETED, conversation_state
from .merge import SyncResult, _live

BATCH = 200


class RemoteError(ChatloomError):
    """The server could not be reached, refused the token, or answered something else."""


class Remote:
    """A chatloom server's sync routes."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 60):
        import httpx

        self.url = url.rstrip("/") + "/"
        headers = {"X-Chatloom-Client": "sync", **({"Authorization": f"Bearer {token}"} if token else {})}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self.sent = self.received = 0  # bytes of bodies on the wire

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as err:
            raise RemoteError(f"{self.url}: {type(err).__name__}: {err}") from None
        self.sent += len(r.request.content or b"")
        self.received += len(r.content)
        if r.status_code == 401:
            raise RemoteError(f"{self.url}: the server wants a token (remote add … --key NAME)")
        if r.status_code != 200:
            raise RemoteError(f"{self.url}{path}: HTTP {r.status_code}: {r.text[:200]}")
        return msgspec.json.decode(r.content)

    def changes(self, since: str | None) -> tuple[dict[str, str], str | None]:
        """Every (id, state) changed after ``since`` (None: all), and the feed's end."""
        out: dict[str, str] = {}
        cursor = since
        while True:
            page = self._call("GET", "api/sync/changes", params={"after": cursor} if cursor else {})
            out.update((i, s) for i, s in page["changes"])
            cursor = page["next"]
            if not page["more"]:
                return out, cursor

    def get(self, ids: list[str]) -> dict[str, Conversation | None]:
        found: dict[str, Conversation | None] = {}
        for i in range(0, len(ids), BATCH):
            got = self._call("POST", "api/sync/get", json={"ids": ids[i : i + BATCH]})["conversations"]
            found.update((k, None if v is None else msgspec.convert(v, Conversation)) for k, v in got.items())
        return found

    def apply(self, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for i in range(0, len(changes), BATCH):
            body = msgspec.json.encode({"changes": changes[i : i + BATCH]})
            results += self._call("POST", "api/sync/apply", content=body, headers={"Content-Type": "application/json"})["results"]
        return results

    def close(self) -> None:
        self.http.close()


def change_id(remote: str, conv_id: str, expected: str | None, state: str) -> str:
    """The id of one push: what it is, so that the same push again has the same id."""
    return hashlib.blake2b(f"{remote}\x00{conv_id}\x00{expected}\x00{state}".encode(), digest_size=16).hexdigest()


@dataclass
class _Plan:
    pull: list[tuple[str, str | None, str | None]]  # (id, theirs, ours): take theirs
    push: list[tuple[str, str | None, str | None]]  # (id, ours, theirs): give ours
    conflicts: list[tuple[str, str | None, str | None]]
    settle: list[tuple[str, str]]
    same: int


def _local_changes(store: Store, since: str | None) -> Iterator[tuple[str, str]]:
    after = since
    while True:
        rows, after = store.changes(after, 5000)
        yield from rows
        if len(rows) < 5000:
            return


def sync_remote(store: Store, name: str, remote: Remote, *, pull: bool = True, push: bool = True, dry_run: bool = False) -> SyncResult:
    """Sync the dataset with remote ``name`` (see the module docstring); ``pull``/``push``: one
    way only; ``dry_run``: say what would move, write nothing anywhere."""
    info = store.remotes()[name]
    base = store.sync_base(name)
    open_here = {c.id: c.theirs_state for c in store.conflicts(name)}
    local_mark = store.changes_mark()  # taken first: what changes here during the sync is seen next time
    mine = dict(_local_changes(store, info.get("local_mark")))
    theirs, remote_mark = remote.changes(info.get("remote_mark"))
    resolved = store.resolved_conflicts(name)  # resolving may have written nothing: no feed has them
    plan = _Plan([], [], [], [], 0)
    for conv_id in sorted(set(mine) | set(theirs) | set(resolved)):
        sa = store.state(conv_id)
        sb = theirs[conv_id] if conv_id in theirs else base.get(conv_id)
        b = base.get(conv_id)
        if sa == sb or (not _live(sa) and not _live(sb)):
            plan.same += 1
            if sa is not None and sb is not None and b != sa:
                plan.settle.append((conv_id, sa))
            continue
        if conv_id in open_here:
            plan.conflicts.append((conv_id, sa, sb))
            continue
        a_moved, b_moved = (_live(sa), _live(sb)) if b is None else (sa != b, sb != b)
        if a_moved and not b_moved:
            plan.push.append((conv_id, sa, sb))
        elif b_moved and not a_moved:
            plan.pull.append((conv_id, sb, sa))
        else:
            plan.conflicts.append((conv_id, sa, sb))
    out = SyncResult(dry_run=dry_run, same=plan.same)
    if dry_run:
        out.to_a = [i for i, s, _ in plan.pull if pull and _live(s)]
        out.deleted_in_a = [i for i, s, o in plan.pull if pull and not _live(s) and _live(o)]
        out.to_b = [i for i, s, _ in plan.push if push and _live(s)]
        out.deleted_in_b = [i for i, s, o in plan.push if push and not _live(s) and _live(o)]
        out.conflicts = [i for i, _, _ in plan.conflicts]
        return out
    if plan.settle:
        store.set_sync_base(name, plan.settle)
    if pull:
        _pull(store, name, remote, plan.pull, out)
    if push:
        _push(store, name, remote, plan.push, out)
    if plan.conflicts:
        got = remote.get([i for i, _, _ in plan.conflicts])
        for conv_id, _, sb in plan.conflicts:
            out.conflicts.append(conv_id)
            if open_here.get(conv_id) != (sb or DELETED):  # ours stays; theirs (as it is now) beside it until resolved
                store.add_conflict(conv_id, name, got.get(conv_id), sb or DELETED, base.get(conv_id))
    if pull and push:  # a one-way run leaves the other way's changes to be seen again
        store.set_remote_marks(name, local_mark=local_mark, remote_mark=remote_mark)
        store.forget_resolved(name, resolved)
    return out


def _pull(store: Store, name: str, remote: Remote, todo: list[tuple[str, str | None, str | None]], out: SyncResult) -> None:
    got = remote.get([i for i, s, _ in todo if _live(s)])
    for conv_id, state, expected in todo:
        if store.state(conv_id) != expected:
            continue  # saved here meanwhile: the next sync sees it
        if _live(state):
            conv = got.get(conv_id)
            if conv is None or conversation_state(conv) != state:
                continue  # it moved there since the feed was read: the next sync sees it
            revision = store.entry(conv_id).revision if expected is not None else 0
            try:
                store.put(conv, base_revision=revision, op="sync")
            except ChatloomError:
                continue
            out.to_a.append(conv_id)
        elif _live(expected):
            store.delete([conv_id])
            out.deleted_in_a.append(conv_id)
        store.set_sync_base(name, [(conv_id, state or DELETED)])


def _push(store: Store, name: str, remote: Remote, todo: list[tuple[str, str | None, str | None]], out: SyncResult) -> None:
    changes, states = [], {}
    for conv_id, state, expected in todo:
        conv = None
        if _live(state):
            e = store.entry(conv_id)
            conv = e.conversation
            if conversation_state(conv) != state:
                continue  # saved here meanwhile: the next sync sees it
        changes.append({"change": change_id(name, conv_id, expected, state or DELETED), "id": conv_id, "expected": expected,
                        "conversation": None if conv is None else msgspec.to_builtins(conv)})  # fmt: skip
        states[conv_id] = (state, expected)
    by_change = {c["change"]: c["id"] for c in changes}
    for r in remote.apply(changes):
        if not r["applied"]:
            continue  # it moved there: it comes back with the next pull, or as a conflict
        conv_id = by_change[r["change"]]
        state, expected = states[conv_id]
        (out.to_b if _live(state) else out.deleted_in_b).append(conv_id)
        store.set_sync_base(name, [(conv_id, state or DELETED)])
