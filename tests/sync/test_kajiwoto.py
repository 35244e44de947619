"""Kajiwoto as a remote, against the GraphQL server of ``kajiwotoserver.py`` on 127.0.0.1: both API
generations; pages of 100, paced (no 429), a 429 and a 503 waited out; exact duplicates kept and
counted; a pulled dataset written back as kajitool's 10-column CSV byte for byte; kajitool's own
layout (``../shared/fixtures/real/kajiwoto_kajitool_layout_SYNTHETIC.csv``) synced, its new row
sent once and linked to the id Kajiwoto gave it; edits and deletes of rows kept here and reported;
a change there pulled; ``kill -9`` during a push, then a rerun: every row sent once; the session
token and password never written to a file."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from chatloom.model import Conversation, Message
from chatloom.store import Store
from tests.conftest import FIXTURES, REPO
from tests.sync.kajiwotoserver import Kajiwoto, Server

FIXTURE = FIXTURES / "kajiwoto_kajitool_layout_SYNTHETIC.csv"
TOKEN = "session-kaji-7f3c9a1e5b"


@pytest.fixture(params=["v1", "v2"])
def kaji(request: pytest.FixtureRequest) -> Iterator[Server]:
    service = Kajiwoto(api=request.param, min_interval=0.02)
    service.tokens[TOKEN] = "u1"
    service.add_group("g1")
    server = Server(service)
    yield server
    server.close()


def _seed(service: Kajiwoto, n: int = 230) -> None:
    """Rows as a Kajiwoto dataset has them: plain exchanges, conditions, a follow-up, copies, a deleted row."""
    for i in range(n):
        service.add_row("g1", f"question {i}?", f"answer {i}, %{{name}}!", condition="00000")
    service.add_row("g1", "Hi!", "Hello %{name}!", asm="HAPPY", condition="23300")
    service.add_row("g1", "How are you?", "Great, %{kajiname} is great", condition="20000", history=["Hi!"])
    service.add_row("g1", "Hi!", "Hello %{name}!", asm="HAPPY", condition="23300")  # an exact copy: kept
    service.add_row("g1", "question 3?", "answer 3, %{name}!", condition="00000")  # and another
    service.add_row("g1", "old", "gone", deleted=True)


def _add(run, db: Path, server: Server, *extra: str) -> None:
    assert run("keys", "set", "kaji-session", input=TOKEN + "\n").exit_code == 0
    r = run("remote", "add", "kaji", "kajiwoto://g1", "--endpoint", server.url, "--key", "kaji-session", "--throttle", "0.03",
            "--api", server.service.api, *extra, "-d", str(db))  # fmt: skip
    assert r.exit_code == 0, r.output


def _expected_csv(rows: list[dict]) -> bytes:
    """kajitool's ToCSV of each row (its cheat sheet's names), written as Go's csv.Writer does."""
    day = {"0": "daytime_any", "2": "daytime_morning"}
    seen = {"0": "seen_any", "3": "seen_5_days_ago"}
    attach = {"0": "attachment_any", "3": "attachment_liked"}
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    for r in rows:
        c = r["condition"]
        w.writerow([r["id"], r["userMessage"], r["message"], "emotion_happy_or_excited" if r["asm"] == "HAPPY" else "emotion_any",
                    attach[c[2]], day[c[0]], seen[c[1]], str(r["deleted"]).lower(), ";".join(r["history"]) or "EMPTY", "EMPTY"])  # fmt: skip
    return out.getvalue().encode()


def test_pull_pages_keeps_duplicates_and_writes_kajitools_csv_back(run, kaji: Server, tmp_path: Path) -> None:
    _seed(kaji.service)
    db = tmp_path / "kaji.db"
    _add(run, db, kaji)
    r = run("pull", "-d", str(db), "kaji", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    rows = kaji.service.groups["g1"]["rows"]
    assert d["to_a"] == len(rows) == 235 and d["duplicates_kept"] == 2 and d["conflicts"] == 0
    lists = [op for op in kaji.service.ops if op in ("aiTrainedList", "datasetLines")]
    assert len(lists) >= 3 and kaji.service.throttled == 0  # three pages of ≤ 100, paced under the server's limit
    with Store(db) as s:
        follow = s.get(f"kajiwoto:{rows[231]['id']}")
        assert [m.content for m in follow.messages] == ["Hi!", "Hello {{user}}!", "How are you?", "Great, {{char}} is great"]
    out = tmp_path / "kaji.csv"
    assert run("export", "-d", str(db), "-f", "kajiwoto", "-o", str(out)).exit_code == 0
    assert out.read_bytes() == _expected_csv(rows)
    # and kajitool's CSV imported again writes the same bytes
    again = tmp_path / "again.db"
    assert run("import", str(out), "-d", str(again), "--format", "kajiwoto").exit_code == 0
    out2 = tmp_path / "again.csv"
    assert run("export", "-d", str(again), "-f", "kajiwoto", "-o", str(out2)).exit_code == 0
    assert out2.read_bytes() == out.read_bytes()
    # nothing moved since: a second sync finds everything the same and sends nothing
    d2 = json.loads(run("sync", "-d", str(db), "kaji", "--json").stdout)
    assert (d2["to_a"], d2["to_b"], d2["same"]) == (0, 0, 235)
    assert not [op for op in kaji.service.ops if op in ("trainDataset", "addToDataset")]
    d3 = json.loads(run("diff", str(db), "kaji", "--stat", "--json").stdout)
    assert (d3["added"], d3["removed"], d3["changed"], d3["same"]) == (0, 0, 0, 235)
    rows[0]["message"] = "edited on the site"
    rows.append({**rows[1], "id": "r-new"})
    r = run("diff", str(db), "kaji", "--json")
    d4 = json.loads(r.stdout)
    assert r.exit_code == 1 and (d4["added_ids"], d4["changed_ids"]) == (["kajiwoto:r-new"], [f"kajiwoto:{rows[0]['id']}"])


def test_kajitools_csv_synced_its_new_row_sent_once_and_linked(run, kaji: Server, tmp_path: Path) -> None:
    rows = list(csv.reader(FIXTURE.open(newline="")))
    for row in rows[:3]:  # the rows with an ID are on Kajiwoto; the fourth is new
        asm = "HAPPY" if row[3] == "emotion_happy_or_excited" else ""
        cond = {"daytime_any": "0", "daytime_morning": "2"}[row[5]] + "0" + {"attachment_any": "0", "attachment_liked": "3"}[row[4]] + "00"
        history = [] if row[8] == "EMPTY" else row[8].split(";")
        kaji.service.add_row("g1", row[1], row[2], asm=asm, condition=cond, history=history, row_id=row[0])
    db = tmp_path / "kaji.db"
    assert run("import", str(FIXTURE), "-d", str(db), "--format", "kajiwoto").exit_code == 0
    _add(run, db, kaji)
    d = json.loads(run("sync", "-d", str(db), "kaji", "--json").stdout)
    assert (d["to_b"], d["to_a"], d["same"], d["conflicts"], d["linked"]) == (1, 0, 3, 0, 1)
    sent = kaji.service.groups["g1"]["rows"][-1]
    assert (sent["userMessage"], sent["message"], sent["history"]) == ("What's up?", "Not much, you?", [])
    out = tmp_path / "back.csv"
    run("export", "-d", str(db), "-f", "kajiwoto", "-o", str(out))
    original = FIXTURE.read_bytes().replace(b"\r\n", b"\n").splitlines()
    written = out.read_bytes().splitlines()
    assert written[:3] == original[:3]  # kajitool's rows, byte for byte (DuplicateIDs kept)
    assert written[3] == f'{sent["id"]},What\'s up?,"Not much, you?",emotion_any,attachment_any,daytime_any,seen_any,false,EMPTY,EMPTY'.encode()
    d = json.loads(run("sync", "-d", str(db), "kaji", "--json").stdout)
    assert (d["to_b"], d["to_a"], d["same"]) == (0, 0, 4)
    assert len(kaji.service.groups["g1"]["rows"]) == 4


def test_edits_kept_here_new_chats_sent_changes_there_pulled(run, kaji: Server, tmp_path: Path) -> None:
    _seed(kaji.service, 20)
    db = tmp_path / "kaji.db"
    _add(run, db, kaji)
    run("pull", "-d", str(db), "kaji")
    rows = kaji.service.groups["g1"]["rows"]
    with Store(db) as s:
        c = s.get(f"kajiwoto:{rows[0]['id']}")
        c.messages[-1].content = "edited here"
        s.put(c)
        s.delete([f"kajiwoto:{rows[1]['id']}"])
        c = s.get(f"kajiwoto:{rows[2]['id']}")
        s.put(msgspec.structs.replace(c, title="a title Kajiwoto has no place for", tags=["mine"]))
        s.put(Conversation(id="new-1", messages=[Message(role="user", content="New one?"), Message(role="assistant", content="Yes, {{user}}.")]))
        s.put(Conversation(id="new-2", messages=[Message(role="user", content="Hi!"), Message(role="assistant", content="Hello {{user}}!"),
                                                 Message(role="user", content="And then?"), Message(role="assistant", content="Then this.")]))  # fmt: skip
        s.put(Conversation(id="long", messages=[Message(role="user", content=f"t{i}") if i % 2 == 0 else Message(role="assistant", content="r")
                                                for i in range(6)]))  # fmt: skip
    rows[5]["message"] = "changed on Kajiwoto"  # an edit on the site
    removed = rows.pop(6)  # and a row deleted there
    r = run("sync", "-d", str(db), "kaji", "--json")
    d = json.loads(r.stdout)
    assert d["to_a"] == 1 and d["to_b"] == 2 and d["linked"] == 2 and d["deleted_in_a"] == 1
    assert set(d["not_sent"]) == {f"kajiwoto:{rows[0]['id']}", f"kajiwoto:{rows[1]['id']}", "long"}
    added = rows[-2:]
    assert [(a["userMessage"], a["history"]) for a in added] == [("New one?", []), ("And then?", ["Hi!"])]
    assert added[0]["message"] == "Yes, %{name}."
    with Store(db) as s:
        assert s.get(f"kajiwoto:{rows[5]['id']}").messages[-1].content == "changed on Kajiwoto"
        assert s.get(f"kajiwoto:{rows[0]['id']}").messages[-1].content == "edited here"  # kept, not overwritten
        assert s.entry(f"kajiwoto:{rows[1]['id']}").deleted
        assert s.entry(f"kajiwoto:{removed['id']}").deleted
        assert s.get(f"kajiwoto:{rows[2]['id']}").title == "a title Kajiwoto has no place for"
        assert s.get("new-2").meta["kajiwoto"]["id"] == added[1]["id"]
        assert not s.conflicts()
    d = json.loads(run("sync", "-d", str(db), "kaji", "--json").stdout)
    assert d["to_b"] == d["to_a"] == d["linked"] == 0 and len(rows) == 26  # nothing sent twice


def test_throttling_a_429_and_a_503_are_waited_out(run, tmp_path: Path) -> None:
    service = Kajiwoto(api="v1", min_interval=0.3)
    service.tokens[TOKEN] = "u1"
    service.add_group("g1")
    _seed(service, 150)
    server = Server(service)
    try:
        db = tmp_path / "kaji.db"
        assert run("keys", "set", "kaji-session", input=TOKEN + "\n").exit_code == 0
        run("remote", "add", "kaji", "kajiwoto://g1", "--endpoint", server.url, "--key", "kaji-session", "--throttle", "0", "-d", str(db))
        service.fail_next = 1
        d = json.loads(run("pull", "-d", str(db), "kaji", "--json").stdout)
        assert d["to_a"] == 155 and service.throttled >= 1  # it went too fast, was told so, and waited
    finally:
        server.close()


def test_login_with_password_and_what_is_never_written(run, kaji: Server, tmp_path: Path) -> None:
    _seed(kaji.service, 5)
    db = tmp_path / "kaji.db"
    assert run("keys", "set", "kaji-password", input="hunter2\n").exit_code == 0
    run("remote", "add", "kaji", "kajiwoto://g1", "--endpoint", kaji.url, "--user", "kaji", "--key", "kaji-password",
        "--throttle", "0.03", "--api", kaji.service.api, "-d", str(db))  # fmt: skip
    d = json.loads(run("sync", "-d", str(db), "kaji", "--json").stdout)
    assert d["to_a"] == 10 and "login" in kaji.service.ops
    with Store(db) as s:
        s.put(Conversation(id="n", messages=[Message(role="user", content="a"), Message(role="assistant", content="b")]))
    assert run("sync", "-d", str(db), "kaji").exit_code == 0
    issued = [t for t in kaji.service.tokens if t != TOKEN]
    for path in [db, Path(f"{db}-wal"), *tmp_path.glob("**/*.log")]:
        if path.exists():
            data = path.read_bytes()
            assert b"hunter2" not in data and not any(t.encode() in data for t in issued)
    r = run("remote", "add", "x", "kajiwoto://a/b", "-d", str(db))
    assert r.exit_code == 2 and "kajiwoto://DATASET_ID" in r.output
    kaji.service.users["kaji"] = ("u1", "changed-on-the-site")
    r = run("sync", "-d", str(db), "kaji")
    assert r.exit_code == 2 and "wrong username or password" in r.output


@pytest.mark.slow
def test_kill_9_during_a_push_then_a_rerun_sends_each_row_once(run, tmp_path: Path) -> None:
    service = Kajiwoto(api="v1")
    service.tokens[TOKEN] = "u1"
    service.add_group("g1")
    server = Server(service)
    try:
        db = tmp_path / "kaji.db"
        _add_plain = ["remote", "add", "kaji", "kajiwoto://g1", "--endpoint", server.url, "--key", "kaji-session", "--throttle", "0.02"]
        assert run("keys", "set", "kaji-session", input=TOKEN + "\n").exit_code == 0
        run(*_add_plain, "-d", str(db))
        with Store(db) as s:
            for i in range(60):
                s.put(Conversation(id=f"c{i}", messages=[Message(role="user", content=f"q{i % 50}"), Message(role="assistant", content="a")]))
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        argv = [sys.executable, "-m", "chatloom", "push", "-d", str(db), "kaji"]
        rnd = random.Random(11)
        rows = service.groups["g1"]["rows"]
        for target in sorted(rnd.sample(range(1, 60), 3)):  # killed while it waits for the answer that added row `target`
            service.hold_at = target
            service.held.clear()
            service.release.clear()
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            assert service.held.wait(60), "the push never reached its row"
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            service.release.set()
            assert len(rows) == target  # it was stopped mid-push, its last row added and never acknowledged
        service.hold_at = 0
        done = subprocess.run([*argv[:3], "sync", "-d", str(db), "kaji", "--json"], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert len(rows) == 60  # 60 sent, each once, whatever the kills (ten are copies of another: kept)
        with Store(db) as s:
            linked = {s.get(f"c{i}").meta["kajiwoto"]["id"] for i in range(60)}
            assert linked == {r["id"] for r in rows} and len(s.ids()) == 60
        d = json.loads(done.stdout)
        assert d["conflicts"] == 0
    finally:
        server.close()


def _put(db: Path, conv_id: str, user: str, reply: str, **kw) -> None:
    with Store(db) as s:
        s.put(Conversation(id=conv_id, messages=[Message(role="user", content=user), Message(role="assistant", content=reply)], **kw))


def test_an_emotion_is_sent_where_the_api_can_carry_it(run, kaji: Server, tmp_path: Path) -> None:
    db = tmp_path / "kaji.db"
    _add(run, db, kaji)
    row = {"id": "", "user_message": "Yay?", "message": "Yay!", "asm": "emotion_happy_or_excited", "attachment": "attachment_liked",
           "daytime": "daytime_morning", "last_seen": "seen_any", "deleted": "false", "history": "EMPTY", "duplicate_ids": "EMPTY"}  # fmt: skip
    _put(db, "happy", "Yay?", "Yay!", title="kept here", meta={"kajiwoto": row})
    d = json.loads(run("sync", "-d", str(db), "kaji", "--json").stdout)
    rows = kaji.service.groups["g1"]["rows"]
    if kaji.service.api == "v1":  # trainDataset has no emotion: refused and said, never sent without it
        assert "happy" in d["not_sent"] and "sends no emotion" in d["not_sent"]["happy"] and rows == []
    else:
        assert d["to_b"] == d["linked"] == 1 and (rows[0]["asm"], rows[0]["condition"]) == ("HAPPY", "20300")  # daytime, last seen, attachment
    d = json.loads(run("sync", "-d", str(db), "kaji", "--json").stdout)
    with Store(db) as s:
        assert s.get("happy").title == "kept here"  # not taken for deleted there, whatever the API
    assert d["deleted_in_a"] == 0 and len(rows) == (0 if kaji.service.api == "v1" else 1)


def test_a_chat_deleted_here_after_it_was_sent_stays_deleted(run, kaji: Server, tmp_path: Path) -> None:
    db = tmp_path / "kaji.db"
    _add(run, db, kaji)
    _put(db, "mine", "Q?", "A.")
    assert json.loads(run("sync", "-d", str(db), "kaji", "--json").stdout)["linked"] == 1
    with Store(db) as s:
        s.delete(["mine"])
    d = json.loads(run("sync", "-d", str(db), "kaji", "--json").stdout)
    assert d["to_a"] == 0 and list(d["not_sent"]) == ["mine"]  # Kajiwoto cannot delete it: said, and kept deleted here
    with Store(db) as s:
        assert s.ids() == [] and s.entry("mine").deleted


def test_a_write_whose_answer_is_lost_is_not_sent_twice(run, kaji: Server, tmp_path: Path) -> None:
    db = tmp_path / "kaji.db"
    _add(run, db, kaji)
    _put(db, "mine", "Q?", "A.")
    kaji.service.fail_after_write = 1  # the row is added, the answer is a 502
    r = run("sync", "-d", str(db), "kaji")
    assert r.exit_code == 2 and "may have been added" in r.output and "Traceback" not in r.output
    assert len(kaji.service.groups["g1"]["rows"]) == 1  # not sent again by a retry
    dry = json.loads(run("sync", "-d", str(db), "kaji", "--dry-run", "--json").stdout)
    assert dry["to_a"] == dry["deleted_in_a"] == dry["to_b"] == 0  # the row found as the one sent, not as a new one
    d = json.loads(run("sync", "-d", str(db), "kaji", "--json").stdout)
    assert d["linked"] == 1 and d["to_a"] == d["to_b"] == 0 and len(kaji.service.groups["g1"]["rows"]) == 1
    with Store(db) as s:
        assert s.ids() == ["mine"] and s.get("mine").meta["kajiwoto"]["id"] == kaji.service.groups["g1"]["rows"][0]["id"]


def test_a_send_that_never_arrived_is_sent_again(run, kaji: Server, tmp_path: Path) -> None:
    db = tmp_path / "kaji.db"
    _add(run, db, kaji)
    _put(db, "mine", "Q?", "A.")
    run("sync", "-d", str(db), "kaji")
    rows = kaji.service.groups["g1"]["rows"]
    rows.clear()  # as if it had never arrived (the base says it was sent)
    with Store(db) as s:  # and not linked yet: the state a kill right before the send leaves
        c = s.get("mine")
        c.meta = {}
        s.put(c)
        s.set_remote_marks("kaji", pending={"mine": ["Q?", "A.", "", "00000", []]})
    d = json.loads(run("sync", "-d", str(db), "kaji", "--json").stdout)
    assert d["deleted_in_a"] == 0 and d["to_b"] == 1 and len(rows) == 1
    with Store(db) as s:
        assert s.get("mine").meta["kajiwoto"]["id"] == rows[0]["id"]


def test_a_listing_cut_short_deletes_nothing(run, kaji: Server, tmp_path: Path) -> None:
    _seed(kaji.service, 30)
    db = tmp_path / "kaji.db"
    _add(run, db, kaji)
    run("pull", "-d", str(db), "kaji")
    kaji.service.hide_last = True
    r = run("sync", "-d", str(db), "kaji")
    assert r.exit_code == 2 and "the listing gave 34 rows where the dataset says it has 35" in r.output
    with Store(db) as s:
        assert len(s.ids()) == 35


def test_endpoints_and_secrets_of_other_remotes(run, kaji: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "kaji.db"
    r = run("remote", "add", "k", "kajiwoto://g1", "--endpoint", "http://[::1", "-d", str(db))
    assert r.exit_code == 2 and r.output.startswith("error: --endpoint") and "Traceback" not in r.output
    r = run("remote", "add", "k", "kajiwoto://g1", "--endpoint", "ftp://x/graphql", "-d", str(db))
    assert r.exit_code == 2 and "http:// or https://" in r.output
    run("remote", "add", "k", "kajiwoto://g1", "--endpoint", kaji.url, "--throttle", "0", "-d", str(db))
    monkeypatch.setenv("CHATLOOM_REMOTE_TOKEN", "a-chatloom-server-token")  # another kind's: never sent to Kajiwoto
    r = run("sync", "-d", str(db), "k")
    assert r.exit_code == 2 and "needs a session token" in r.output and kaji.service.ops == []  # nothing was sent
    monkeypatch.setenv("CHATLOOM_KAJIWOTO_SECRET", TOKEN)
    assert run("sync", "-d", str(db), "k").exit_code == 0
