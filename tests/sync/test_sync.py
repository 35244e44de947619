"""``chatloom diff`` and ``chatloom sync`` on real datasets (chitchat), through the CLI: what is
added, removed and changed, turn by turn; a sync both ways with edits, deletes, new chats and a
conflict on each side; resolve; a sync of a dataset with an export file is refused, a diff of
them works; the HTML page escapes chat text."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from chatloom.model import Conversation, Message
from chatloom.store import Store
from chatloom.sync.diff import message_diff, word_diff
from tests.sync.conftest import edit


def _copies(chitchat: Path, tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    shutil.copy(chitchat, a)
    shutil.copy(chitchat, b)
    return a, b


def _flat(text: str) -> str:
    return " ".join(text.split())  # the terminal's wrapping undone


def test_diff_names_what_changed_turn_by_turn(run, chitchat: Path, tmp_path: Path) -> None:
    a, b = _copies(chitchat, tmp_path)
    with Store(b) as s:
        ids = s.ids()
        c = s.get(ids[0])
        c.messages[0].content = c.messages[0].content + " and a pizza"
        c.messages.insert(1, Message(role="assistant", content="An inserted turn"))
        del c.messages[-1]
        c.tags = ["edited"]
        s.put(c)
        s.delete([ids[1]])
        s.put(Conversation(id="new:1", messages=[Message(role="user", content="brand new")]))
    r = run("diff", str(a), str(b), "--json")
    assert r.exit_code == 1, r.output  # they differ
    d = json.loads(r.stdout)
    assert (d["added"], d["removed"], d["changed"], d["same"]) == (1, 1, 1, 7_168 - 2)
    assert d["added_ids"] == ["new:1"] and d["removed_ids"] == [ids[1]] and d["changed_ids"] == [ids[0]]
    change = d["changes"][ids[0]]
    assert change["meta"] == {"tags": [[], ["edited"]]}
    ops = [(t["op"], t.get("at"), t.get("to")) for t in change["turns"]]
    assert ("insert", None, 1) in ops and any(op == "edit" and at == 0 for op, at, _ in ops) and any(op == "delete" for op, _, _ in ops)
    edit = next(t for t in change["turns"] if t["op"] == "edit")
    assert ["+", " and a pizza"] in edit["words"] or ["+", " and"] in edit["words"]
    r = run("diff", str(a), str(b), "--stat")
    assert "1 added, 1 removed, 1 changed" in _flat(r.stdout)
    r = run("diff", str(a), str(a))
    assert r.exit_code == 0 and "0 added, 0 removed, 0 changed" in _flat(r.stdout)


def test_word_and_message_diffs() -> None:
    assert word_diff("the cat sat", "the dog sat") == [("=", "the "), ("-", "cat"), ("+", "dog"), ("=", " sat")]
    old = Conversation(messages=[Message(role="user", content="a"), Message(role="assistant", content="b")], title="x")
    new = Conversation(messages=[Message(role="user", content="a"), Message(role="assistant", content="c"),
                                 Message(role="user", content="d")], title="y")  # fmt: skip
    d = message_diff(old, new)
    assert d["meta"] == {"title": ["x", "y"]}
    assert [t["op"] for t in d["turns"]] == ["edit", "insert"]


def test_diff_html_escapes_chat_text(run, tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    for path, text in ((a, "<b>old</b>"), (b, "<script>alert(1)</script>")):
        with Store(path, create=True) as s:
            s.put(Conversation(id="x:1", messages=[Message(role="user", content=text)]))
    r = run("diff", str(a), str(b), "--html", str(tmp_path / "d.html"))
    assert r.exit_code == 1
    page = (tmp_path / "d.html").read_text()
    assert "<script>alert" not in page and "<b>" not in page and "&lt;" in page and "<ins>alert(1)</ins>" in page


def test_diff_a_dataset_with_its_own_export(run, chitchat: Path, tmp_path: Path) -> None:
    out = tmp_path / "export.jsonl"
    assert run("export", "-d", str(chitchat), "-f", "openai", "-o", str(out)).exit_code == 0
    r = run("diff", str(chitchat), str(out), "--stat", "--json")
    d = json.loads(r.stdout)
    assert r.exit_code == 0 and (d["added"], d["removed"], d["changed"], d["same"]) == (0, 0, 0, 7_168)  # chatloom's export round-trips
    lines = out.read_text().splitlines()
    first = json.loads(lines[0])
    first["messages"][0]["content"] += " (edited in the file)"
    out.write_text("\n".join([json.dumps(first), *lines[2:]]) + "\n")  # one edited, one gone
    d = json.loads(run("diff", str(chitchat), str(out), "--json").stdout)
    assert (d["added"], d["removed"], d["changed"]) == (0, 1, 1) and d["changed_ids"] == [first["id"]]
    r = run("sync", str(chitchat), str(out))
    assert r.exit_code == 2 and "sync needs two datasets" in r.output


def test_sync_both_ways_then_diff_says_nothing(run, chitchat: Path, tmp_path: Path) -> None:
    a, b = _copies(chitchat, tmp_path)
    with Store(a) as s:
        ids = s.ids()
    for i in range(0, 5):
        edit(a, ids[i], " (edited in A)")
    for i in range(5, 9):
        edit(b, ids[i], " (edited in B)")
    edit(a, ids[9], " A!")
    edit(b, ids[9], " B!")  # both: a conflict
    with Store(a) as s:
        s.delete([ids[10]])
        s.tag([ids[11]], add=["keep"])
    with Store(b) as s:
        s.delete([ids[12]])
        s.put(Conversation(id="new:b", messages=[Message(role="user", content="made in B")]))
    dry = run("sync", str(a), str(b), "--dry-run", "--json")
    assert json.loads(dry.stdout)["to_b"] == 6 and run("diff", str(a), str(b), "--stat").exit_code == 1  # nothing written
    r = run("sync", str(a), str(b), "--json")
    assert r.exit_code == 1, r.output  # a conflict is open
    res = json.loads(r.stdout)
    assert (res["to_b"], res["to_a"], res["deleted_in_b"], res["deleted_in_a"], res["conflict_ids"]) == (6, 5, 1, 1, [ids[9]])
    conflicts = json.loads(run("conflicts", "-d", str(a), "--json").stdout)
    assert [c["id"] for c in conflicts] == [ids[9]] and conflicts[0]["theirs"]["messages"][0]["content"].endswith(" B!")
    with Store(a) as s:
        assert s.get(ids[9]).messages[0].content.endswith(" A!")  # ours stays
        assert "keep" in s.get(ids[11]).tags and s.entry(ids[12]).deleted and s.get("new:b")
    with Store(b) as s:
        assert s.entry(ids[10]).deleted and "keep" in s.get(ids[11]).tags
        assert all(s.get(ids[i]).messages[0].content.endswith(" (edited in A)") for i in range(5))
    assert run("resolve", "-d", str(a), ids[9], "--theirs").exit_code == 0
    assert run("sync", str(a), str(b)).exit_code == 0
    r = run("diff", str(a), str(b))
    assert r.exit_code == 0 and "0 added, 0 removed, 0 changed" in _flat(r.stdout)
    with Store(a) as s:
        assert s.get(ids[9]).messages[0].content.endswith(" B!") and not s.conflicts()
        assert any(h.op == "resolve" for h in s.history(ids[9]))
    # a sync with nothing to do moves nothing
    assert json.loads(run("sync", str(a), str(b), "--json").stdout)["to_a"] == 0


def test_resolve_with_ours_and_with_anedit(run, chitchat: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _copies(chitchat, tmp_path)
    with Store(a) as s:
        x, y = s.ids()[:2]
    for path, mark in ((a, " A"), (b, " B")):
        edit(path, x, mark)
        edit(path, y, mark)
    assert run("sync", str(a), str(b)).exit_code == 1
    assert run("resolve", "-d", str(a), x, "--ours").exit_code == 0
    # --edit: $EDITOR gets both versions; this one keeps 'theirs' with a word added
    editor = tmp_path / "editor.py"
    editor.write_text("import json, sys\np = sys.argv[1]\ntext = open(p).read()\nbody = json.loads(text[:text.index('// keep')])\n"
                      "conv = body['theirs']\nconv['messages'][0]['content'] += ' merged'\nopen(p, 'w').write(json.dumps(conv))\n")  # fmt: skip
    editor.chmod(editor.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("EDITOR", f"{sys.executable} {editor}")
    r = run("resolve", "-d", str(a), y, "--edit")
    assert r.exit_code == 0, r.output
    assert run("sync", str(a), str(b)).exit_code == 0
    with Store(b) as s:
        assert s.get(x).messages[0].content.endswith(" A")
        assert s.get(y).messages[0].content.endswith(" B merged")
    assert run("diff", str(a), str(b)).exit_code == 0
    r = run("resolve", "-d", str(a), x, "--ours")
    assert r.exit_code == 2 and "no conflict" in r.output
    assert os.environ.get("EDITOR")  # the monkeypatched editor was used, not a real one


def test_a_first_sync_into_an_empty_dataset_copies_everything(run, chitchat: Path, tmp_path: Path) -> None:
    b = tmp_path / "empty.db"
    Store(b, create=True).close()
    r = run("sync", str(chitchat), str(b), "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["to_b"] == 7_168
    assert run("diff", str(chitchat), str(b)).exit_code == 0


@pytest.mark.parametrize("seed", range(6))
def test_the_join_inside_sqlite_finds_what_a_walk_of_both_finds(tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Store.differing`` (pairs by pk, then by id) against a merge of both sides' states in id
    order, on datasets whose pks do not line up: other insertion orders, rows on one side only,
    tombstones, edits."""
    import random

    from chatloom.sync.sides import merge_join

    monkeypatch.setattr("chatloom.store.sync._ID_CHUNK", 4)  # the ids paired by id come in several chunks
    rnd = random.Random(seed)
    pool = [f"c:{i:03d}" for i in range(60)]
    a, b = Store(tmp_path / "a.db", create=True), Store(tmp_path / "b.db", create=True)
    for store in (a, b):
        ids = rnd.sample(pool, rnd.randint(20, 60))
        for conv_id in ids:
            store.put(Conversation(id=conv_id, messages=[Message(role="user", content=f"hello {conv_id}")],
                                   tags=["t"] if rnd.random() < 0.2 else []))  # fmt: skip
        for conv_id in rnd.sample(ids, len(ids) // 5):
            c = store.get(conv_id)
            c.messages[0].content += " edited" if rnd.random() < 0.5 else ""
            c.title = "x" if rnd.random() < 0.3 else None
            store.put(c)
        store.delete(rnd.sample(ids, len(ids) // 8))
    walked = [(i, x, y) for i, x, y in merge_join(a.states(), b.states()) if x != y]
    assert list(a.differing(b.path)) == walked
    assert list(b.differing(a.path)) == [(i, y, x) for i, x, y in walked]
    a.close()
    b.close()


def test_diff_says_which_records_of_a_file_it_skipped(run, tmp_path: Path) -> None:
    a = tmp_path / "a.db"
    with Store(a, create=True) as s:
        s.put(Conversation(id="x:1", messages=[Message(role="user", content="hi")]))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x:1", "messages": [{"role": "user", "content": "hi"}]}\n{"messages": [oops\n')
    r = run("diff", str(a), str(bad), "--stat", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["same"] == 1
    assert f"{bad}: 1 bad records skipped" in r.stderr and f"{bad}:2: not valid JSON" in r.stderr


def test_diff_a_dataset_with_the_chat_export_it_was_imported_from(run, tmp_path: Path) -> None:
    """langchain's WhatsApp iOS fixture (shared/fixtures/real, read in place): a chat export needs
    --me, as an import does; with it, the dataset made from the file and the file are the same."""
    from tests.conftest import FIXTURES

    export = FIXTURES / "whatsapp_ios_langchain.txt"
    dataset = tmp_path / "wa.db"
    r = run("diff", str(dataset.with_name("none.db")), str(export))
    assert r.exit_code == 2
    assert run("import", "-d", str(dataset), str(export), "--me", "Dr. Feather").exit_code == 0
    r = run("diff", str(dataset), str(export), "--stat")
    assert r.exit_code == 2 and "Pass --me 'Dr. Feather'" in _flat(r.stderr)
    r = run("diff", str(dataset), str(export), "--me", "Dr. Feather", "--json")
    d = json.loads(r.stdout)
    assert r.exit_code == 0 and (d["added"], d["removed"], d["changed"], d["same"]) == (0, 0, 0, 1)


def _moved_file(src: Path, dst: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{src}{suffix}").exists():
            Path(f"{src}{suffix}").rename(f"{dst}{suffix}")


def test_a_dataset_moved_elsewhere_keeps_its_base_and_a_copy_is_not_taken_for_it(run, chitchat: Path, tmp_path: Path) -> None:
    """Both files moved (a home folder renamed, a USB stick mounted at another path): each finds
    the other's base by its own id, so what one side changed is carried, not held as a conflict
    (one side moving alone is covered by the other's base); a copy of a file still there is a
    stranger."""
    a, b, moved, copy = tmp_path / "a.db", tmp_path / "usb" / "b.db", tmp_path / "mnt" / "b.db", tmp_path / "copy.db"
    home = tmp_path / "home" / "a.db"
    for folder in (b.parent, moved.parent, home.parent):
        folder.mkdir()
    shutil.copy(chitchat, a)
    shutil.copy(chitchat, b)
    with Store(a) as s:
        y = s.ids()[1]
        x = "new-on-a"
        s.put(Conversation(id=x, messages=[Message(role="user", content="written on a")]))
    assert run("sync", str(a), str(b)).exit_code == 0  # x copied to b: no history the two share
    edit(a, x, " (2)")
    edit(b, y, " (usb)")
    _moved_file(b, moved)
    _moved_file(a, home)
    a = home
    assert run("sync", str(a), str(moved), "--dry-run", "--json").exit_code == 0
    d = json.loads(run("sync", str(a), str(moved), "--json").stdout)
    assert (d["to_b"], d["to_a"], d["conflicts"]) == (1, 1, 0)  # without a base, x would be a conflict
    with Store(a) as s:
        peers = s.get_setting("sync_peers")
        assert s.get(y).messages[0].content.endswith(" (usb)") and str(moved.resolve()) in peers and str(b.resolve()) not in peers
        assert s.sync_base(str(moved.resolve())) and not s.sync_base(str(b.resolve()))
    shutil.copy(moved, copy)  # the original stays where it is: the copy gets no base of its own
    edit(a, x, " (3)")
    edit(copy, x, " (copy)")
    r = run("sync", str(a), str(copy), "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["conflict_ids"] == [x]
