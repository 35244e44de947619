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
from .merge import SyncResult, _live, moved, same

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

    def states(self, ids: list[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for i in range(0, len(ids), 5000):
            found.update(self._call("POST", "api/sync/states", json={"ids": ids[i : i + 5000]})["states"])
        return found

    def apply(self, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for i in range(0, len(changes), BATCH):
            body = msgspec.json.encode({"changes": changes[i : i + BATCH]})
            results += self._call("POST", "api/sync/apply", content=body, headers={"Content-Type": "application/json"})["results"]
        return results

    def close(self) -> None:
        self.http.close()


def change_id(dataset: str, conv_id: str, revision: int, expected: str | None) -> str:
    """The id of one push: this dataset's own id, the conversation, the revision pushed and the
    state it is based on. The same push again (a retry, a resumed run) has the same id; the same
    edit made again later is another revision, so another change."""
    return hashlib.blake2b(f"{dataset}\x00{conv_id}\x00{revision}\x00{expected}".encode(), digest_size=16).hexdigest()


@dataclass
class _Plan:
    pull: list[tuple[str, str | None, str | None]]  # (id, theirs, ours): take theirs
    push: list[tuple[str, str | None, str | None]]  # (id, ours, theirs): give ours
    conflicts: list[tuple[str, str | None, str | None]]
    settle: list[tuple[str, str]]
    same: int
    agreed: list[tuple[str, str]]  # open conflicts whose two sides hold the same now: (id, state)


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
    open_here = {c.id: c.theirs_state for c in store.conflicts(name)}  # looked at again by every sync
    local_mark = store.changes_mark()  # taken first: what changes here during the sync is seen next time
    mine = dict(_local_changes(store, info.get("local_mark")))
    theirs, remote_mark = remote.changes(info.get("remote_mark"))
    resolved = store.resolved_conflicts(name)  # resolving may have written nothing: no feed has them
    candidates = set(mine) | set(theirs) | set(resolved) | set(open_here)
    if getattr(remote, "whole", False):  # a remote read whole (the Hub, Kajiwoto): what it lacks was deleted there
        candidates |= set(base)
    # what the server's feed did not name is asked of the server, not taken to be the base: a
    # conflict or a skipped pull leaves the base behind the server's state
    theirs.update(remote.states(sorted(candidates - set(theirs))))
    plan = _Plan([], [], [], [], 0, [])
    for conv_id in sorted(candidates):
        sa = store.state(conv_id)
        sb = theirs.get(conv_id)
        b = base.get(conv_id)
        if same(sa, sb):
            plan.same += 1
            if conv_id in open_here:  # nothing is in conflict any more (as merge.sync drops it)
                plan.agreed.append((conv_id, sa or DELETED))
            if sa is not None and sb is not None and b != sa:
                plan.settle.append((conv_id, sa))
            continue
        if conv_id in open_here:
            plan.conflicts.append((conv_id, sa, sb))
            continue
        a_moved, b_moved = moved(sa, sb, b)
        if a_moved and not b_moved:
            plan.push.append((conv_id, sa, sb))
        elif b_moved and not a_moved:
            plan.pull.append((conv_id, sb, sa))
        else:
            plan.conflicts.append((conv_id, sa, sb))
    out = SyncResult(dry_run=dry_run, same=plan.same)
    complete = True  # everything planned was done: the marks may move
    if dry_run:
        out.to_a = [i for i, s, _ in plan.pull if pull and _live(s)]
        out.deleted_in_a = [i for i, s, o in plan.pull if pull and not _live(s) and _live(o)]
        out.to_b = [i for i, s, _ in plan.push if push and _live(s)]
        out.deleted_in_b = [i for i, s, o in plan.push if push and not _live(s) and _live(o)]
        out.conflicts = [i for i, _, _ in plan.conflicts]
        return out
    if plan.settle:
        store.set_sync_base(name, plan.settle)
    for conv_id, state in plan.agreed:
        store.drop_conflict(conv_id, base=state)
    if pull:
        complete &= _pull(store, name, remote, plan.pull, out)
    if push:
        complete &= _push(store, name, remote, plan.push, out)
    if plan.conflicts:
        got = remote.get([i for i, _, _ in plan.conflicts])
        for conv_id, _, sb in plan.conflicts:
            out.conflicts.append(conv_id)
            if open_here.get(conv_id) != (sb or DELETED):  # ours stays; theirs (as it is now) beside it until resolved
                store.add_conflict(conv_id, name, got.get(conv_id), sb or DELETED, base.get(conv_id))
    if pull and complete:  # everything there was taken (or is held as a conflict): seen up to its mark
        # a push-only run moves no mark; a pull-only one leaves this side's feed to the next push
        store.set_remote_marks(name, remote_mark=remote_mark, **({"local_mark": local_mark} if push else {}))
        if push:
            store.forget_resolved(name, resolved)
    return out


def _pull(store: Store, name: str, remote: Remote, todo: list[tuple[str, str | None, str | None]], out: SyncResult) -> bool:
    """Take theirs for each (id, theirs, ours); False when any was left for the next sync."""
    done = True
    for i in range(0, len(todo), BATCH):
        chunk = todo[i : i + BATCH]
        got = remote.get([c for c, s, _ in chunk if _live(s)])
        with store.transaction():  # a batch per commit: all of it, with its base, or none of it
            for conv_id, state, expected in chunk:
                conv = got.get(conv_id) if _live(state) else None
                if _live(state) and (conv is None or conversation_state(conv) != state):
                    done = False  # it moved there since its state was read: the next sync sees it
                    continue
                if not store.replace_if(conv_id, expected, conv):  # looked at and written in this transaction
                    done = False  # saved here meanwhile: the next sync sees it
                    continue
                if _live(state):
                    out.to_a.append(conv_id)
                elif _live(expected):
                    out.deleted_in_a.append(conv_id)
                store.set_sync_base(name, [(conv_id, state or DELETED)])
    return done


def _push(store: Store, name: str, remote: Remote, todo: list[tuple[str, str | None, str | None]], out: SyncResult) -> bool:
    """Give ours for each (id, ours, theirs); False when any was not applied there."""
    done = True
    uid = store.dataset_uid()
    changes, states = [], {}
    for conv_id, state, expected in todo:
        e = store.entry(conv_id)
        conv = None if e.deleted else e.conversation
        if (DELETED if conv is None else conversation_state(conv)) != (state or DELETED):
            done = False  # saved here meanwhile: the next sync sees it
            continue
        change = change_id(uid, conv_id, e.revision, expected)
        changes.append({"change": change, "id": conv_id, "expected": expected,
                        "conversation": None if conv is None else msgspec.to_builtins(conv)})  # fmt: skip
        states[change] = (conv_id, state)
    agreed = []
    for r in remote.apply(changes):
        conv_id, state = states[r["change"]]
        if not r["applied"] or r["state"] != (state or DELETED):
            done = False  # it moved there: it comes back with the next pull, or as a conflict
            continue
        (out.to_b if _live(state) else out.deleted_in_b).append(conv_id)
        agreed.append((conv_id, state or DELETED))
    store.set_sync_base(name, agreed)  # one transaction (a kill before it: the next sync finds them the same)
    return done
