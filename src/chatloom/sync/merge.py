"""``chatloom sync A B``: a three-way merge of two datasets, conversation by conversation, with
the states both had at their last sync as the base (kept in both, under the other's path; a peer
whose file moved, renamed or mounted elsewhere, is found by its own id and keeps its base).

For each conversation, with base b, ours a (A) and theirs t (B):
- a == t: nothing to do;
- only one side moved from b: its version goes to the other (a deletion is a tombstone, and
  travels as one);
- both moved, differently: a **conflict**. Both versions are kept: A's stays A's, and B's is
  held beside it in A (``chatloom conflicts``) until ``chatloom resolve ID --ours|--theirs|--edit``
  settles it; the next sync carries the resolution to B. B keeps its version meanwhile.
- No base (the first sync): a conversation on one side only is copied; one on both sides with
  different states is a conflict.

Each conversation moves in its own transaction on each side, and the base is recorded as it
goes: a sync stopped at any point (Ctrl+C, kill -9) and run again finishes the rest, with nothing
applied twice (putting a state a side already holds changes nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..store.sync import DELETED, conversation_state
from .sides import DatasetSide, Side, merge_join


@dataclass
class SyncResult:
    to_b: list[str] = field(default_factory=list)  # A's version written to B
    to_a: list[str] = field(default_factory=list)  # B's version written to A
    deleted_in_a: list[str] = field(default_factory=list)
    deleted_in_b: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    same: int = 0
    dry_run: bool = False

    def counts(self) -> dict[str, int]:
        return {"to_b": len(self.to_b), "to_a": len(self.to_a), "deleted_in_a": len(self.deleted_in_a),
                "deleted_in_b": len(self.deleted_in_b), "conflicts": len(self.conflicts), "same": self.same}  # fmt: skip


def _live(s: str | None) -> bool:
    return s is not None and s != DELETED


def same(sa: str | None, sb: str | None) -> bool:
    """Both sides hold the same: one state, or nothing live on either."""
    return sa == sb or (not _live(sa) and not _live(sb))


def moved(sa: str | None, sb: str | None, base: str | None) -> tuple[bool, bool]:
    """Which side changed since the base; with no base (never synced), which side has it live.
    One side: its version goes over; both: a conflict."""
    return (_live(sa), _live(sb)) if base is None else (sa != base, sb != base)


def sync(a: Side, b: Side, *, dry_run: bool = False, progress: Callable[[int], None] | None = None) -> SyncResult:
    """Merge A and B both ways (see the module docstring); ``dry_run``: say what would move, write nothing."""
    if not (isinstance(a, DatasetSide) and isinstance(b, DatasetSide)):
        raise UsageError("sync needs two datasets (an export file can be diffed, or imported)")
    out = SyncResult(dry_run=dry_run)
    kb, ka = _key(a, b, dry_run), _key(b, a, dry_run)  # what each keeps the other's base under
    base_a = a.store.sync_base(kb)
    base_b = b.store.sync_base(ka)
    open_a = {c.id: c.theirs_state for c in a.store.conflicts(kb)}  # A has not resolved these yet
    open_b = {c.id for c in b.store.conflicts(ka)}  # B has not (a sync run from B's side found them)
    resolved_a, resolved_b = set(a.store.resolved_conflicts(kb)), set(b.store.resolved_conflicts(ka))
    agreed: list[tuple[str, str]] = []

    def settle(conv_id: str, state: str) -> None:
        agreed.append((conv_id, state))
        if len(agreed) >= 500:
            flush()

    def flush() -> None:
        if not dry_run and agreed:
            a.store.set_sync_base(kb, agreed)
            b.store.set_sync_base(ka, agreed)
        agreed.clear()

    for n, (conv_id, sa, sb) in enumerate(merge_join(a.states(), b.states())):
        if progress is not None and n % 1000 == 0:
            progress(n)
        # the base: A's, unless B resolved a conflict over it since (a resolution moves its side's base)
        base = base_b.get(conv_id) if conv_id in resolved_b and conv_id not in resolved_a else base_a.get(conv_id, base_b.get(conv_id))
        if same(sa, sb):
            out.same += 1
            if not dry_run:
                for side, pending in ((a, open_a), (b, open_b)):
                    if conv_id in pending:  # both hold the same now: nothing is in conflict any more
                        side.store.drop_conflict(conv_id, base=sa or DELETED)
            if sa is not None and sb is not None and base != sa:
                settle(conv_id, sa)
            continue
        if conv_id in open_a or conv_id in open_b:  # waits for 'chatloom resolve' on the side that holds it
            out.conflicts.append(conv_id)
            if not dry_run and conv_id in open_a and open_a[conv_id] != (sb or DELETED):  # theirs as it is now
                a.store.add_conflict(conv_id, kb, b.get(conv_id), sb or DELETED, base)
            continue
        if base is None and sa is not None and sb is not None:
            base = _common_state(a, b, conv_id)  # two copies of one file: their shared history
        a_moved, b_moved = moved(sa, sb, base)
        if a_moved and not b_moved:
            if _carry(a, b, conv_id, sa, sb, out.to_b, out.deleted_in_b, dry_run):
                settle(conv_id, sa or DELETED)
        elif b_moved and not a_moved:
            if _carry(b, a, conv_id, sb, sa, out.to_a, out.deleted_in_a, dry_run):
                settle(conv_id, sb or DELETED)
        else:
            out.conflicts.append(conv_id)
            if not dry_run:  # ours stays; theirs is kept beside it until it is resolved
                a.store.add_conflict(conv_id, kb, b.get(conv_id), sb or DELETED, base)
    flush()
    if not dry_run:
        a.store.forget_resolved(kb, resolved_a)
        b.store.forget_resolved(ka, resolved_b)
        for side, other in ((a, b), (b, a)):
            _note_peer(side, other)
    return out


PEERS = "sync_peers"  # a dataset's setting: the path of each dataset it synced with → that one's own id


def _moved(side: DatasetSide, other: DatasetSide) -> str | None:
    """The path ``other`` had when ``side`` last synced with it, when it has moved since: a peer
    of the same id, whose file is gone, with a base kept under its old path. None when it is known
    where it is, or was never seen (a copy leaves its original in place: it is not taken for it)."""
    peers: dict[str, str] = side.store.get_setting(PEERS) or {}
    uid = other.store.get_setting("dataset_uid")
    if uid is None or other.name in peers:
        return None
    for path, peer in sorted(peers.items()):
        if peer == uid and not Path(path).exists() and side.store.sync_base(path):
            return path
    return None


def _key(side: DatasetSide, other: DatasetSide, dry_run: bool) -> str:
    """What ``side`` keeps its base with ``other`` under: ``other``'s path, where what was kept
    under its old path moves when it has moved (a dry run reads it where it is)."""
    was = _moved(side, other)
    if was is None:
        return other.name
    if dry_run:
        return was
    side.store.rekey_remote(was, other.name)
    return other.name


def _note_peer(side: DatasetSide, other: DatasetSide) -> None:
    peers: dict[str, str] = side.store.get_setting(PEERS) or {}
    uid = other.store.dataset_uid()
    kept = {p: u for p, u in peers.items() if Path(p).exists() or u != uid}  # a move's old path is forgotten
    if kept.get(other.name) != uid or len(kept) != len(peers):
        side.store.set_setting(PEERS, {**kept, other.name: uid})


def _common_state(a: DatasetSide, b: DatasetSide, conv_id: str) -> str | None:
    """The state both had before they went apart, when their histories share a beginning (a file
    copied, then edited on both): the state after the last revision they have in common, the same
    on both sides (revisions alike in number, kind, time and digest can still differ in their
    metadata: two copies retitled in the same millisecond)."""
    marks_a, marks_b = a.store.revision_marks(conv_id), b.store.revision_marks(conv_id)
    shared = []
    for x, y in zip(marks_a, marks_b):
        if x != y:
            break
        shared.append(x[0])
    for revision in reversed(shared):
        sa, sb = a.store.state_at(conv_id, revision), b.store.state_at(conv_id, revision)
        state_a = DELETED if sa is None else conversation_state(sa)
        if state_a == (DELETED if sb is None else conversation_state(sb)):
            return state_a
    return None


def _carry(src: DatasetSide, dst: DatasetSide, conv_id: str, state: str | None, expected: str | None, written: list[str],
           deleted: list[str], dry_run: bool) -> bool:  # fmt: skip
    """``src``'s version of one conversation (or its deletion) to ``dst``, in one transaction there,
    only over the version of it that was compared (``expected``): one saved there meanwhile is
    left for the next sync, never overwritten. True when it was carried."""
    if dry_run:
        if _live(state) or _live(expected):
            (written if _live(state) else deleted).append(conv_id)
        return True
    conv = None
    if _live(state):
        conv = src.get(conv_id)
        if conv is None or conversation_state(conv) != state:  # what was compared is what is sent
            return False
    if not dst.store.replace_if(conv_id, expected, conv):  # look and write in one transaction there
        return False  # saved there in the meantime: the next sync sees it
    if _live(state):
        written.append(conv_id)
    elif _live(expected):
        deleted.append(conv_id)
    return True


def resolve(side: DatasetSide, conv_id: str, how: str, edited: object | None = None) -> str:
    """Settle a conflict on this side: ``ours`` keeps this side's version, ``theirs`` takes the
    other's, ``edit`` saves ``edited`` (a conversation). The next sync carries it over."""
    c = side.store.conflict(conv_id)
    if c is None:
        raise UsageError(f"{conv_id}: no conflict to resolve ('chatloom conflicts' lists them)")
    if how == "theirs":
        if c.theirs is None:
            if side.store.state(conv_id) not in (None, DELETED):
                side.store.delete([conv_id])
        else:
            side.store.put(c.theirs, op="resolve")
    elif how == "edit":
        side.store.put(edited, op="resolve")  # type: ignore[arg-type]
    elif how != "ours":
        raise UsageError(f"resolve: --ours, --theirs or --edit, not {how!r}")
    side.store.drop_conflict(conv_id, resolved=True)  # the base becomes theirs: the next sync sends ours (or agrees)
    return side.store.state(conv_id) or DELETED
