"""``chatloom sync|pull|push`` against a real ``chatloom serve-dataset`` on 127.0.0.1: both ways
with edits, deletes, new chats and a conflict on each side; only what changed crosses the wire;
a push repeated is answered from the server's record, never applied twice; a push based on an old
state is not applied; a token off loopback, read from the key store and never written down;
``kill -9`` at random points of a sync, then a rerun: nothing lost, nothing doubled."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatloom.model import Conversation, Message
from chatloom.store import Store
from chatloom.sync.remote import Remote, change_id
from chatloom.sync.sides import DatasetSide
from tests.conftest import REPO
from tests.studio.conftest import Studio, start_studio, stop_studio
from tests.sync.conftest import edit

pytestmark = pytest.mark.slow


@pytest.fixture
def pair(chitchat: Path, tmp_path: Path) -> Iterator[tuple[Path, Studio]]:
    """A laptop's dataset, and a server's copy of it served on loopback."""
    here, there = tmp_path / "laptop.db", tmp_path / "server.db"
    shutil.copy(chitchat, here)
    shutil.copy(chitchat, there)
    server = start_studio(there, home=tmp_path / "server-home")
    yield here, server
    stop_studio(server)


def _diff_is_empty(run, a: Path, b: Path) -> bool:
    r = run("diff", str(a), str(b), "--stat", "--json")
    d = json.loads(r.stdout)
    return r.exit_code == 0 and d["added"] == d["removed"] == d["changed"] == 0


def test_sync_with_a_server_both_ways(run, pair: tuple[Path, Studio]) -> None:
    here, server = pair
    assert run("remote", "add", "server", server.url, "-d", str(here)).exit_code == 0
    first = json.loads(run("sync", "-d", str(here), "server", "--json").stdout)
    assert first["to_a"] == first["to_b"] == first["conflicts"] == 0 and first["same"] == 7_168
    with Store(here) as s:
        ids = s.ids()
    for i in range(4):
        edit(here, ids[i], " (laptop)")
    for i in range(4, 7):
        edit(server.dataset, ids[i], " (server)")
    edit(here, ids[7], " L")
    edit(server.dataset, ids[7], " S")
    with Store(here) as s:
        s.delete([ids[8]])
        s.put(Conversation(id="laptop:new", messages=[Message(role="user", content="written on the laptop")]))
    with Store(server.dataset) as s:
        s.delete([ids[9]])
    r = run("sync", "-d", str(here), "server", "--json")
    assert r.exit_code == 1  # one conflict
    d = json.loads(r.stdout)
    assert (d["to_b"], d["to_a"], d["deleted_in_b"], d["deleted_in_a"], d["conflict_ids"]) == (5, 3, 1, 1, [ids[7]])
    # only the changes crossed: a few conversations each way, not the dataset (31 MB)
    assert d["bytes_sent"] < 20_000 and d["bytes_received"] < 50_000
    with Store(server.dataset) as s:
        assert s.get(ids[7]).messages[0].content.endswith(" S")  # theirs was not overwritten
        assert s.get("laptop:new") and s.entry(ids[8]).deleted
    assert run("resolve", "-d", str(here), ids[7], "--ours").exit_code == 0
    assert run("sync", "-d", str(here), "server").exit_code == 0
    assert _diff_is_empty(run, here, server.dataset)
    again = json.loads(run("sync", "-d", str(here), "server", "--json").stdout)
    assert again["to_a"] == again["to_b"] == 0
    assert _diff_is_empty(run, here, "server")  # the remote itself, read whole through its feed
    edit(server.dataset, ids[10], " (after)")
    d = json.loads(run("diff", str(here), "server", "--json").stdout)
    assert (d["added"], d["removed"], d["changed_ids"]) == (0, 0, [ids[10]])
    assert d["changes"][ids[10]]  # turn by turn


def test_pull_and_push_one_way(run, pair: tuple[Path, Studio]) -> None:
    here, server = pair
    run("remote", "add", "server", server.url, "-d", str(here))
    run("sync", "-d", str(here), "server")
    with Store(here) as s:
        a, b = s.ids()[:2]
    edit(here, a, " mine")
    edit(server.dataset, b, " theirs")
    dry = json.loads(run("push", "-d", str(here), "server", "--dry-run", "--json").stdout)
    assert dry["to_b"] == 1 and dry["to_a"] == 0
    assert json.loads(run("pull", "-d", str(here), "server", "--json").stdout)["to_a"] == 1
    with Store(server.dataset) as s:
        assert not s.get(a).messages[0].content.endswith(" mine")  # a pull gives nothing
    assert json.loads(run("push", "-d", str(here), "server", "--json").stdout)["to_b"] == 1
    assert _diff_is_empty(run, here, server.dataset)


def test_a_push_repeated_is_answered_from_the_record_and_a_stale_one_is_refused(pair: tuple[Path, Studio]) -> None:
    here, server = pair
    with Store(here) as s:
        conv_id = s.ids()[0]
        conv = s.get(conv_id)
        before = s.state(conv_id)
    conv.messages[0].content += " pushed once"
    from chatloom.store.sync import conversation_state

    change = {"change": change_id("laptop", conv_id, before, conversation_state(conv)), "id": conv_id, "expected": before,
              "conversation": json.loads(json.dumps(__import__("msgspec").to_builtins(conv)))}  # fmt: skip
    remote = Remote(server.url)
    try:
        first = remote.apply([change])
        second = remote.apply([change])  # a retry, or a resumed push
        stale = remote.apply([{**change, "change": "another", "conversation": {**change["conversation"], "title": "stale"}}])
    finally:
        remote.close()
    assert first[0]["applied"] and second[0]["applied"] and second[0]["state"] == first[0]["state"]
    assert not stale[0]["applied"]  # based on a state the server has moved past
    with Store(server.dataset) as s:
        assert [h.op for h in s.history(conv_id)].count("sync") == 1
        assert s.get(conv_id).title != "stale"


def test_a_token_off_loopback_from_the_key_store(run, chitchat: Path, tmp_path: Path) -> None:
    there, here = tmp_path / "server.db", tmp_path / "laptop.db"
    shutil.copy(chitchat, there)
    shutil.copy(chitchat, here)
    secret = "s3cret-token-for-the-remote-test"
    server = start_studio(there, "--host", "0.0.0.0", "--token", secret, home=tmp_path / "server-home")
    try:
        run("remote", "add", "server", server.url, "-d", str(here))
        r = run("sync", "-d", str(here), "server")
        assert r.exit_code == 2 and "wants a token" in r.output
        assert run("keys", "set", "server-token", input=secret + "\n").exit_code == 0
        run("remote", "rm", "server", "-d", str(here))
        assert run("remote", "add", "server", server.url, "--key", "server-token", "-d", str(here)).exit_code == 0
        assert run("sync", "-d", str(here), "server").exit_code == 0
        r = run("remote", "add", "other", server.url, "--key", "sk-abcdefghijklmnopqrstuvwxyz0123", "-d", str(here))
        assert r.exit_code == 2 and "looks like a token" in r.output
    finally:
        stop_studio(server)
    for path in (here, Path(f"{here}-wal")):
        assert not path.exists() or secret.encode() not in path.read_bytes()


def test_kill_9_at_random_points_then_a_rerun(run, pair: tuple[Path, Studio], tmp_path: Path) -> None:
    here, server = pair
    run("remote", "add", "server", server.url, "-d", str(here))
    run("sync", "-d", str(here), "server")
    rnd = random.Random(7)
    with Store(here) as s:
        ids = s.ids()
    mine, theirs = rnd.sample(ids[:3000], 900), rnd.sample(ids[3000:], 600)
    with Store(here) as s:
        for conv in s.iter_conversations(ids=mine):
            conv.messages[-1].content += " (laptop)"
            s.put(conv)
    with Store(server.dataset) as s:
        for conv in s.iter_conversations(ids=theirs):
            conv.messages[-1].content += " (server)"
            s.put(conv)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    argv = [sys.executable, "-m", "chatloom", "sync", "-d", str(here), "server"]
    for delay in (rnd.uniform(0.3, 2.5) for _ in range(4)):
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert subprocess.run(argv, env=env, capture_output=True).returncode == 0
    assert _diff_is_empty(run, here, server.dataset)
    with Store(server.dataset) as s:
        for conv_id in mine:
            assert [h.op for h in s.history(conv_id)].count("sync") == 1  # pushed once, whatever the kills
            assert s.get(conv_id).messages[-1].content.endswith(" (laptop)")
    with Store(here) as s:
        for conv_id in theirs:
            assert s.get(conv_id).messages[-1].content.endswith(" (server)")
            assert [h.op for h in s.history(conv_id)].count("sync") == 1
        assert s.check().ok and len(set(s.ids())) == len(s.ids())
    _ = DatasetSide  # the local side of the same merge rules (tests/sync/test_sync.py)
