"""``chatloom sync`` under random edits on both sides, and under kill -9.

A property test: two datasets that start alike (A synced into an empty B, or B a file copy of A)
take random edits on each side (a message edited, one appended, a title, a tag, a deletion, an
undo, a new conversation whose id the other side may make too), then sync, round after round.
After each sync, checked against a model of the base (what both held at the last sync): what moved
on one side only is on both; what moved on both is a conflict, with A's version in A, B's in B and
B's held in A's conflicts; nothing else changed. Then every conflict is resolved (--ours or
--theirs), one more sync, and the two hold the same conversations.

A crash test: ``chatloom sync A B`` on two datasets of seven thousand conversations with three
thousand changes between them, killed (SIGKILL) at random moments and run again: nothing lost,
nothing applied twice, both files sound.

Below, one test for each way an earlier sync lost or mistook a change (each was an
xfail until its fix).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from chatloom.errors import ChatloomError, NotFoundError
from chatloom.model import Message
from chatloom.store import Store
from chatloom.store.sync import DELETED, conversation_state
from chatloom.sync.diff import diff
from chatloom.sync.merge import SyncResult, resolve, sync
from chatloom.sync.sides import DatasetSide
from tests.conftest import REPO, conv

# -- the property test ----------------------------------------------------------------------

START = [f"c{i:02d}" for i in range(12)]  # A's conversations at the start
NEW = ["n0", "n1", "n2"]  # made on either side, sometimes on both
POOL = START + NEW
WORDS = ["yes", "no", "maybe", "later"]  # few: both sides sometimes make the same change

ids = st.sampled_from(POOL)
words = st.sampled_from(WORDS)
op = st.one_of(
    st.tuples(st.just("edit"), ids, st.tuples(st.integers(0, 4), words)),
    st.tuples(st.just("append"), ids, words),
    st.tuples(st.just("retitle"), ids, st.sampled_from(["T1", "T2", None])),
    st.tuples(st.just("tag"), ids, st.sampled_from(["red", "blue"])),
    st.tuples(st.just("delete"), ids, st.none()),
    st.tuples(st.just("undo"), ids, st.none()),
    st.tuples(st.just("create"), st.sampled_from(NEW), words),
)
edits = st.lists(op, max_size=8)


def norm(state: str | None) -> str | None:
    """A tombstone and no row alike: no live conversation."""
    return None if state in (None, DELETED) else state


def apply(store: Store, step: tuple) -> None:
    """One edit, as a person makes it; an edit that does not apply (to a deleted conversation,
    an undo with nothing to undo) does nothing."""
    kind, cid, arg = step
    try:
        e = store.entry(cid)
    except NotFoundError:
        e = None
    if kind == "create":  # a new one, or the same id made again (over a tombstone, or over ours)
        store.put(conv(f"new {arg}", "ok", id=cid))
        return
    if kind == "undo":
        if e is not None:
            try:
                store.undo(cid)
            except ChatloomError:  # nothing to undo
                pass
        return
    if e is None or e.deleted:
        return
    c = e.conversation
    if kind == "delete":
        store.delete([cid])
    elif kind == "tag":
        store.tag([cid], **({"remove": [arg]} if arg in c.tags else {"add": [arg]}))
    else:
        if kind == "edit":
            c.messages[arg[0] % len(c.messages)].content = arg[1]
        elif kind == "append":
            c.messages.append(Message(role="user" if c.messages[-1].role == "assistant" else "assistant", content=arg))
        else:
            c.title = arg
        store.put(c, base_revision=e.revision)


def states(side: DatasetSide) -> dict[str, str]:
    return dict(side.store.states())


def one_side_only(before: str | None, base: str | None) -> bool:
    """The case of ``test_a_tombstone_never_synced_does_not_conflict_with_the_other_sides_new_conversation``:
    a tombstone of a conversation the other side never had, against a new one there."""
    return before == DELETED and base is None


def sync_and_check(a: DatasetSide, b: DatasetSide, base: dict[str, str | None]) -> SyncResult:
    """``sync(a, b)``, checked against the model (``base``: the live state both agreed on at the
    last sync, None for none), which it then moves on."""
    before_a, before_b = states(a), states(b)
    held = {c.id: c.theirs_state for c in a.store.conflicts()}  # conflicts open since an earlier sync
    result = sync(a, b)
    after_a, after_b = states(a), states(b)
    conflicts = {c.id: c for c in a.store.conflicts()}
    assert sorted(result.conflicts) == sorted(conflicts), "every open conflict is reported, and only those"
    assert not b.store.conflicts(), "a sync A B keeps its conflicts in A"
    for cid in sorted(set(before_a) | set(before_b)):
        xa, xb = before_a.get(cid), before_b.get(cid)
        na, nb, b0 = norm(xa), norm(xb), base.get(cid)
        ya, yb = norm(after_a.get(cid)), norm(after_b.get(cid))
        where = f"{cid}: base {b0}, A {xa} → {after_a.get(cid)}, B {xb} → {after_b.get(cid)}"
        if na == nb:
            expect = "same"
        elif cid in held or (na != b0 and nb != b0):
            expect = "conflict"
        elif na != b0:
            expect = "to_b"
        else:
            expect = "to_a"
        if expect in ("to_a", "to_b") and cid in conflicts:  # see one_side_only: a conflict, not a loss
            assert one_side_only(xb if expect == "to_b" else xa, b0), f"a change on one side only made a conflict: {where}"
            expect = "conflict"
        if expect != "same":
            event(f"a sync: {expect}" + (" (a deletion)" if expect != "conflict" and None in (na, nb) else ""))
        if expect == "same":
            assert (ya, yb) == (na, nb), f"nothing to move, yet it moved: {where}"
            assert cid not in conflicts, f"both hold the same, yet a conflict is open: {where}"
        elif expect == "to_b":
            assert ya == yb == na, f"A's change did not reach B: {where}"
            assert cid not in conflicts, where
            if na is None:  # the tombstone travelled: B has it deleted, not just absent
                assert after_b.get(cid) == DELETED, where
        elif expect == "to_a":
            assert ya == yb == nb, f"B's change did not reach A: {where}"
            assert cid not in conflicts, where
            if nb is None:
                assert after_a.get(cid) == DELETED, where
        else:  # both changes still there: A's in A, B's in B and held in A's conflicts
            assert cid in conflicts, f"changed on both sides, but no conflict: {where}"
            assert (after_a.get(cid), after_b.get(cid)) == (xa, xb), f"a conflicting change was overwritten: {where}"
            c = conflicts[cid]  # B's version as it is now (a conflict held since an earlier sync is brought up to date)
            assert c.theirs_state == (xb or DELETED), f"the conflict holds another version than B's: {where}"
            assert (DELETED if c.theirs is None else conversation_state(c.theirs)) == c.theirs_state, where
        if ya == yb:
            base[cid] = ya
    for side in (a, b):
        live = side.store.ids()
        assert len(live) == len(set(live)), "an id is there twice"
    return result


def resolve_all(a: DatasetSide, b: DatasetSide, base: dict[str, str | None], choose) -> set[str]:
    """Resolve A's conflicts as ``choose(id)`` says (``later``: leave it open); returns those
    resolved over a version of B's that B has moved past since (see ``test_a_held_conflict_...``)."""
    stale = set()
    for c in a.store.conflicts():
        how = choose(c.id)
        if how == "later":
            continue
        if (b.store.state(c.id) or DELETED) != c.theirs_state:
            stale.add(c.id)
        mine = a.store.state(c.id)
        resolve(a, c.id, how)
        assert a.store.conflict(c.id) is None
        now = a.store.state(c.id)
        assert (now == mine) if how == "ours" else (norm(now) == norm(c.theirs_state)), f"{c.id}: resolve {how}"
        base[c.id] = norm(c.theirs_state)  # the base is theirs now: the next sync sends ours over
    return stale


def make_a(path: Path) -> None:
    with Store(path, create=True) as s:
        for i, cid in enumerate(START):
            s.put(conv(f"question {i}", f"answer {i}", f"more {i}", id=cid, title=f"chat {i}", tags=["t"] if i % 3 == 0 else []))


@pytest.mark.parametrize("start", ["sync", "copy"])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_random_edits_on_both_sides_sync_to_the_same_dataset_with_every_change_kept(tmp_path_factory, start, data):
    root = tmp_path_factory.mktemp("sync")
    a_path, b_path = root / "a.db", root / "b.db"
    make_a(a_path)
    if start == "copy":
        shutil.copy(a_path, b_path)  # A is closed: everything is in the file, none in a WAL
    else:
        Store(b_path, create=True).close()
    a, b = DatasetSide(a_path), DatasetSide(b_path)
    try:
        if start == "sync":
            first = sync(a, b)
            assert sorted(first.to_b) == START and not first.conflicts
        base: dict[str, str | None] = {cid: norm(s) for cid, s in states(a).items()}  # a copy: the state both started from
        stale: set[str] = set()  # resolved over an older version of B's than B had then
        for n in range(data.draw(st.integers(1, 3), label="rounds")):
            for step in data.draw(edits, label=f"A's edits, round {n}"):
                apply(a.store, step)
            # Two copies of one file find their common base by revision (number, op, time, digest):
            # B's edits made in the same millisecond as A's would look shared (see the xfail
            # test_two_copies_edited_in_the_same_millisecond_keep_both_changes).
            time.sleep(0.002)
            for step in data.draw(edits, label=f"B's edits, round {n}"):
                apply(b.store, step)
            sync_and_check(a, b, base)
            stale |= resolve_all(a, b, base, lambda cid, n=n: data.draw(st.sampled_from(["ours", "theirs", "later"]), label=f"resolve {cid}, round {n}"))
        stale |= resolve_all(a, b, base, lambda cid: data.draw(st.sampled_from(["ours", "theirs"]), label=f"resolve {cid} at the end"))
        last = sync_and_check(a, b, base)
        if last.conflicts:  # B's newer version against ours: only where the conflict held an older one of B's
            assert set(last.conflicts) <= stale, f"resolved, synced, and still in conflict: {last.conflicts}"
            resolve_all(a, b, base, lambda cid: data.draw(st.sampled_from(["ours", "theirs"]), label=f"resolve {cid} again"))
            last = sync_and_check(a, b, base)
        assert not last.conflicts
        assert not a.store.conflicts() and not b.store.conflicts()
        d = diff(a, b)
        assert d.empty, f"after resolving all and a sync they differ: {d}"
        again = sync(a, b)  # and once more: nothing to do
        assert (again.to_a, again.to_b, again.deleted_in_a, again.deleted_in_b, again.conflicts) == ([], [], [], [], [])
        assert sorted(a.store.ids()) == sorted(b.store.ids())
        for side in (a, b):
            found = side.store.check()
            assert found.ok, found.problems
    finally:
        a.close()
        b.close()


# -- what was found, each now fixed: one test each ------------------------------------------


def _two(tmp_path: Path) -> tuple[DatasetSide, DatasetSide]:
    make_a(tmp_path / "a.db")
    Store(tmp_path / "b.db", create=True).close()
    a, b = DatasetSide(tmp_path / "a.db"), DatasetSide(tmp_path / "b.db")
    sync(a, b)
    return a, b


def _answer_differently(a: DatasetSide, b: DatasetSide) -> None:
    """Both sides change c01's answer, each its own way (a conflict)."""
    for side, text in ((a, "A's answer"), (b, "B's answer")):
        c = side.get("c01")
        c.messages[1].content = text  # type: ignore[union-attr]
        side.store.put(c)  # type: ignore[arg-type]


def _answer(side: DatasetSide, cid: str) -> str:
    return side.get(cid).messages[1].content  # type: ignore[union-attr]


def test_a_conflict_kept_in_b_survives_a_sync_run_the_other_way(tmp_path):
    a, b = _two(tmp_path)
    try:
        _answer_differently(a, b)
        first = sync(b, a)  # run from B's side: the conflict is kept in B
        assert first.conflicts == ["c01"] and b.store.conflict("c01") is not None
        second = sync(a, b)  # then from A's side, nothing resolved
        assert _answer(b, "c01") == "B's answer", "B's change was overwritten by A's"
        assert second.conflicts == ["c01"] or b.store.conflict("c01") is not None, "the open conflict was dropped"
    finally:
        a.close()
        b.close()


def test_a_tombstone_never_synced_does_not_conflict_with_the_other_sides_new_conversation(tmp_path):
    a, b = _two(tmp_path)
    try:
        a.store.put(conv("made on A", "ok", id="n0"))
        a.store.delete(["n0"])
        assert not sync(a, b).conflicts  # neither has it live: nothing to do
        b.store.put(conv("made on B", "ok", id="n0"))  # since then, only B changed it
        result = sync(a, b)
        assert not result.conflicts, "a change on B only came out as a conflict"
        assert result.to_a == ["n0"] and diff(a, b).empty
    finally:
        a.close()
        b.close()


def test_two_copies_edited_in_the_same_millisecond_keep_both_changes(tmp_path, monkeypatch):
    make_a(tmp_path / "a.db")
    shutil.copy(tmp_path / "a.db", tmp_path / "b.db")
    monkeypatch.setattr("chatloom.store.edit.now", lambda: "2025-01-01T00:00:00.000Z")  # one millisecond
    a, b = DatasetSide(tmp_path / "a.db"), DatasetSide(tmp_path / "b.db")
    try:
        for side, title in ((a, "A's title"), (b, "B's title")):
            c = side.get("c01")
            c.title = title
            side.store.put(c)
        result = sync(a, b)
        assert a.get("c01").title == "A's title" or a.store.conflict("c01") is not None, "A's title was lost"  # type: ignore[union-attr]
        assert result.conflicts == ["c01"]
    finally:
        a.close()
        b.close()


def test_a_held_conflict_shows_the_others_version_as_it_is_now(tmp_path):
    a, b = _two(tmp_path)
    try:
        _answer_differently(a, b)
        assert sync(a, b).conflicts == ["c01"]  # left open
        c = b.get("c01")
        c.messages[1].content = "B's second answer"
        b.store.put(c)
        assert sync(a, b).conflicts == ["c01"]
        held = a.store.conflict("c01")
        assert held.theirs_state == b.store.state("c01"), "the conflict holds B's first answer, B has its second"  # type: ignore[union-attr]
    finally:
        a.close()
        b.close()


# -- kill -9 ------------------------------------------------------------------------------


def _revisions(path: Path) -> dict[str, list[str]]:
    """Every conversation's ops, oldest first."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out: dict[str, list[str]] = {}
        for cid, op_ in db.execute("SELECT c.id, r.op FROM revisions r JOIN conversations c ON c.pk = r.conv ORDER BY c.id, r.revision"):
            out.setdefault(cid, []).append(op_)
        return out
    finally:
        db.close()


def _synced(paths: tuple[Path, Path]) -> int:
    """How many revisions a sync has written so far, on both sides (read-only, while it runs)."""
    n = 0
    for path in paths:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            n += db.execute("SELECT count(*) FROM revisions WHERE op IN ('sync', 'delete', 'create')").fetchone()[0]
        except sqlite3.OperationalError:  # busy a moment
            pass
        finally:
            db.close()
    return n


def _edit(store: Store, cid: str, how: int, mark: str) -> None:
    if how == 0:
        c = store.get(cid)
        c.messages[-1].content += f" [{mark}]"
        store.put(c)
    elif how == 1:
        c = store.get(cid)
        c.title = f"{mark} {cid}"
        store.put(c)
    else:
        store.tag([cid], add=[mark])


@pytest.mark.slow
def test_a_sync_killed_at_random_moments_and_run_again_loses_nothing_and_applies_nothing_twice(tmp_path, chitchat_path):
    from chatloom.importing.run import import_paths

    a_path, b_path = tmp_path / "a.db", tmp_path / "b.db"
    import_paths(a_path, [str(chitchat_path)], fmt="chitchat")
    Store(b_path, create=True).close()
    a, b = DatasetSide(a_path), DatasetSide(b_path)
    rng = random.Random(20251207)
    try:
        assert not sync(a, b).conflicts and diff(a, b).empty
        everyone = sorted(a.store.ids())
        assert len(everyone) > 5000
        rng.shuffle(everyone)
        on_a, on_b = everyone[:1900], everyone[1900:2900]  # apart: no conflicts
        # A: 1,500 edited once, 300 twice, 100 deleted, 100 new (2,300 edits); B: 900 edited, 100 deleted, 100 new
        for i, cid in enumerate(on_a[:1800]):
            _edit(a.store, cid, i % 3, "A")
            if i >= 1500:
                _edit(a.store, cid, (i + 1) % 3, "A again")
        a.store.delete(on_a[1800:])
        for i, cid in enumerate(on_b[:900]):
            _edit(b.store, cid, i % 3, "B")
        b.store.delete(on_b[900:])
        for i in range(100):
            a.store.put(conv(f"new on A {i}", "ok", id=f"new-a-{i:03d}"))
            b.store.put(conv(f"new on B {i}", "ok", id=f"new-b-{i:03d}"))
        changed_a = {cid: a.store.state(cid) for cid in [*on_a, *(f"new-a-{i:03d}" for i in range(100))]}
        changed_b = {cid: b.store.state(cid) for cid in [*on_b, *(f"new-b-{i:03d}" for i in range(100))]}
    finally:
        a.close()
        b.close()
    before_a, before_b = _revisions(a_path), _revisions(b_path)
    to_move = len(changed_a) + len(changed_b)

    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "chatloom", "sync", str(a_path), str(b_path)]
    start = _synced((a_path, b_path))

    def moved() -> int:
        return _synced((a_path, b_path)) - start

    def killed(delay: float | None) -> int:
        """One run, killed after ``delay`` seconds (None: once a fifth of the work is done); its exit code."""
        with subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
            if delay is None:
                deadline = time.monotonic() + 120
                while proc.poll() is None and moved() < to_move // 5 and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert proc.poll() is None, "the sync finished before it could be killed part-way"
            else:
                time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate()
        assert proc.returncode in (0, -signal.SIGKILL), err
        return proc.returncode

    killed(None)  # once under way for sure, then at random moments
    delays = [rng.uniform(0.05, 1.5) for _ in range(rng.randint(3, 5))]
    killed_mid_way = 0
    for delay in delays:
        done = moved()
        if killed(delay) == -signal.SIGKILL and done < moved() < to_move:
            killed_mid_way += 1
    moved_before_last = moved()
    assert 0 < moved_before_last, "no run got as far as moving one conversation"
    last = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert last.returncode == 0, last.stdout + last.stderr
    again = subprocess.run([*cmd, "--json"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    counts = json.loads(again.stdout)
    assert [counts[k] for k in ("to_a", "to_b", "deleted_in_a", "deleted_in_b", "conflicts")] == [0] * 5, counts

    after_a, after_b = _revisions(a_path), _revisions(b_path)
    a, b = DatasetSide(a_path), DatasetSide(b_path)
    try:
        d = diff(a, b)
        assert d.empty, f"added {d.added[:5]}, removed {d.removed[:5]}, changed {d.changed[:5]}"
        assert not a.store.conflicts() and not b.store.conflicts()
        for side in (a, b):
            live = side.store.ids()
            assert len(live) == len(set(live))
            assert not side.store.db.execute("SELECT id FROM conversations GROUP BY id HAVING count(*) > 1").fetchall()
            found = side.store.check()
            assert found.ok, found.problems
        assert sorted(a.store.ids()) == sorted(b.store.ids())
        assert set(after_a) == set(after_b)
        # every change is on both sides, as it was made (nothing lost, nothing older over it)
        for cid, state in changed_a.items():
            assert a.store.state(cid) == state and b.store.state(cid) == state, f"{cid}: A's change"
        for cid, state in changed_b.items():
            assert a.store.state(cid) == state and b.store.state(cid) == state, f"{cid}: B's change"
        # and each went over once: one revision on the other side, none on its own
        gained_a = {cid: ops[len(before_a.get(cid, [])):] for cid, ops in after_a.items()}
        gained_b = {cid: ops[len(before_b.get(cid, [])):] for cid, ops in after_b.items()}

        def expected(cid: str, state: str) -> list[str]:
            return ["delete"] if state == DELETED else ["create"] if cid.startswith("new-") else ["sync"]

        wrong = Counter()
        for cid in after_a:
            if cid in changed_a:
                want_a, want_b = [], expected(cid, changed_a[cid])
            elif cid in changed_b:
                want_a, want_b = expected(cid, changed_b[cid]), []
            else:
                want_a = want_b = []
            if gained_a[cid] != want_a or gained_b[cid] != want_b:
                wrong[f"A {gained_a[cid]} (want {want_a}), B {gained_b[cid]} (want {want_b})"] += 1
        assert not wrong, f"revisions the sync wrote, against one per change: {dict(wrong.most_common(5))}"
    finally:
        a.close()
        b.close()
    print(f"kills: 1 polled + {len(delays)} at {[round(x, 2) for x in delays]} s ({killed_mid_way} of those mid-way); "
          f"{moved_before_last} of {to_move} moved before the last run")
