"""What a review of the sync found, one test each, against a real ``chatloom studio`` on loopback
(remote) or two datasets (local): a change made twice is pushed twice; a push refused once is
looked at again; an edit made while a conflict is open is carried after ``resolve --ours``;
resolving on one side and syncing from the other carries the resolution; an undo after the
other side resolved wins; change numbers never go back after an import is taken back."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatloom.model import Conversation, Message
from chatloom.store import Store
from chatloom.sync.diff import diff
from chatloom.sync.merge import resolve, sync
from chatloom.sync.sides import DatasetSide
from tests.studio.conftest import Studio, start_studio, stop_studio

pytestmark = pytest.mark.slow


def conv(i: str, text: str = "hello") -> Conversation:
    return Conversation(id=i, messages=[Message(role="user", content=text), Message(role="assistant", content="hi " + text)])


def write(path: Path, conv_id: str, text: str) -> None:
    with Store(path) as s:
        c = s.get(conv_id)
        c.messages[0].content = text
        s.put(c)


def first_text(path: Path, conv_id: str) -> str | None:
    with Store(path) as s:
        e = s.entry(conv_id)
    return None if e.deleted else e.conversation.messages[0].content


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, Studio]]:
    server_db, laptop = tmp_path / "server.db", tmp_path / "laptop.db"
    with Store(server_db, create=True) as s:
        for i in ("x", "y"):
            s.put(conv(i))
    shutil.copy(server_db, laptop)
    studio = start_studio(server_db, home=tmp_path / "home")
    with Store(laptop) as s:
        s.add_remote("server", studio.url, "chatloom", {})
    yield laptop, studio
    stop_studio(studio)


def _sync(run, laptop: Path, *args: str) -> dict:
    r = run("sync", "-d", str(laptop), "server", "--json", *args)
    assert r.exit_code in (0, 1), r.output
    return json.loads(r.stdout)


def test_the_same_change_made_again_is_pushed_again(run, served: tuple[Path, Studio]) -> None:
    laptop, server = served
    _sync(run, laptop)
    for add, remove in ((["good"], []), ([], ["good"]), (["good"], [])):  # the third equals the first
        with Store(laptop) as s:
            s.tag(["x"], add=add, remove=remove)
        assert _sync(run, laptop)["to_b"] == 1
        with Store(server.dataset) as s:
            assert s.get("x").tags == (["good"] if add else [])
    assert diff(DatasetSide(laptop), DatasetSide(server.dataset)).empty


def test_an_edit_made_while_a_conflict_is_open_is_carried_after_resolve(run, served: tuple[Path, Studio]) -> None:
    laptop, server = served
    _sync(run, laptop)
    write(laptop, "x", "L")
    write(server.dataset, "x", "S")
    assert _sync(run, laptop)["conflict_ids"] == ["x"]
    write(laptop, "x", "L2, written before resolving")
    assert _sync(run, laptop)["conflict_ids"] == ["x"]  # still open, reported by every sync
    assert run("resolve", "-d", str(laptop), "x", "--ours").exit_code == 0
    assert _sync(run, laptop)["to_b"] == 1
    assert first_text(server.dataset, "x") == "L2, written before resolving"
    assert _sync(run, laptop)["to_b"] == 0


def test_a_push_refused_once_is_looked_at_again(run, served: tuple[Path, Studio]) -> None:
    laptop, server = served
    _sync(run, laptop)
    with Store(laptop) as s:
        revision, before = s.entry("x").revision, s.state("x")
    write(laptop, "x", "laptop edit")
    write(server.dataset, "x", "server edit")  # the push will be refused: the server moved
    from chatloom.sync.remote import Remote, change_id

    with Store(laptop) as s:
        uid, e = s.dataset_uid(), s.entry("x")
    body = {"change": change_id(uid, "x", e.revision, before), "id": "x", "expected": before,
            "conversation": json.loads(json.dumps(__import__("msgspec").to_builtins(e.conversation)))}  # fmt: skip
    remote = Remote(server.url)
    try:
        assert not remote.apply([body])[0]["applied"]
        with Store(server.dataset) as s:
            s.undo("x")  # the server takes its edit back: x is as the push expects again
        assert remote.apply([body])[0]["applied"]  # the same change, looked at again, not answered from a record
    finally:
        remote.close()
    assert revision < e.revision and first_text(server.dataset, "x") == "laptop edit"


def _two(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    with Store(a, create=True) as s:
        for i in ("x", "y"):
            s.put(conv(i))
    shutil.copy(a, b)
    return a, b


def _local(a: Path, b: Path) -> object:
    sa, sb = DatasetSide(a), DatasetSide(b)
    try:
        return sync(sa, sb)
    finally:
        sa.close()
        sb.close()


def test_resolved_on_one_side_then_synced_from_the_other(tmp_path: Path) -> None:
    a, b = _two(tmp_path)
    write(a, "x", "A's edit")
    write(b, "x", "B's edit")
    assert _local(a, b).conflicts == ["x"]  # type: ignore[attr-defined]
    side = DatasetSide(a)
    resolve(side, "x", "ours")
    side.close()
    result = _local(b, a)  # from B's side now
    assert not result.conflicts and result.to_a == ["x"]  # type: ignore[attr-defined]
    assert first_text(a, "x") == first_text(b, "x") == "A's edit"


def test_an_undo_after_the_other_side_resolved_wins(tmp_path: Path) -> None:
    a, b = _two(tmp_path)
    write(a, "x", "A's edit")
    write(b, "x", "B's edit")
    _local(b, a)  # the conflict is held on B
    side = DatasetSide(b)
    resolve(side, "x", "theirs")  # B takes A's version
    side.close()
    with Store(a) as s:
        s.undo("x")  # A takes its edit back
    result = _local(a, b)
    assert not result.conflicts and first_text(a, "x") == first_text(b, "x") == "hello"  # type: ignore[attr-defined]


def test_change_numbers_never_go_back_after_an_import_is_taken_back(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with Store(path, create=True) as s:
        s.put(conv("x"))
        run_ = s.journal_begin("f.jsonl", "openai", "fp")
        s.import_conversations([conv("z")], journal=run_)
        _, mark = s.changes()  # a client read the feed up to z
        s.undo_import(run_)  # the import fails: z goes, its number with it
        assert s.entry("x") and "z" not in s.ids()
        c = s.get("x")
        c.title = "after the take-back"
        s.put(c)
        rows, _ = s.changes(mark)
    assert [i for i, _ in rows] == ["x"]  # numbered past z's number: the client's cursor still sees it


def test_a_conflict_both_sides_settled_alike_is_dropped_by_the_next_remote_sync(run, served: tuple[Path, Studio]) -> None:
    laptop, server = served
    _sync(run, laptop)
    write(laptop, "x", "L")
    write(server.dataset, "x", "S")
    assert _sync(run, laptop)["conflict_ids"] == ["x"]
    write(laptop, "x", "agreed")  # both write the same text, by hand, without resolve
    write(server.dataset, "x", "agreed")
    assert _sync(run, laptop)["conflict_ids"] == []
    with Store(laptop) as s:
        assert s.conflicts() == []
    assert _sync(run, laptop)["to_a"] == _sync(run, laptop)["to_b"] == 0
