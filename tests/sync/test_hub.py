"""A dataset repo on the Hugging Face Hub as a remote (``sync/hub.py``), against the minimal Hub of
``hubserver.py`` on 127.0.0.1 through the real ``huggingface_hub``: a push of chitchat as Parquet
shards and a card that ``datasets.load_dataset`` reads, pulled back into an empty dataset with
every state equal; JSONL too; edits, deletes and a conflict on both sides; a push based on an old
commit (or racing another) refused with nothing overwritten; ``kill -9`` at random points of a
push and of a pull, then a rerun: nothing lost, nothing doubled; the token in no written file."""

from __future__ import annotations

import io
import json
import logging
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pyarrow.parquet as pq
import pytest
import yaml

from chatloom.errors import UsageError
from chatloom.formats.tables import arrow_schema, from_arrow_row
from chatloom.model import Conversation, Message
from chatloom.store import Store
from chatloom.store.sync import DELETED, conversation_state
from chatloom.sync.hub import HubRemote, parse_hub_url
from chatloom.sync.merge import SyncResult
from chatloom.sync.remote import RemoteError, sync_remote
from tests.conftest import REPO
from tests.sync.conftest import edit
from tests.sync.hubserver import HubServer

pytestmark = pytest.mark.slow

TOKEN = "hf_chatloomTestToken0123456789abcdefXYZ"
REPO_ID = "me/chats"
URL = f"hf://datasets/{REPO_ID}"


@pytest.fixture(autouse=True)
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests talk to a Hub on 127.0.0.1: not offline, even after a test in this process
    loaded a model (``train.models.quiet_transformers`` sets ``HF_HUB_OFFLINE`` for itself)."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub() -> Iterator[HubServer]:
    server = HubServer(TOKEN).start()
    yield server
    server.stop()


def _dataset(path: Path, hub: HubServer, source: Path | None = None, n: int | None = None, **options) -> Path:
    """A dataset with the Hub remote ``hub``: empty, or the first ``n`` conversations of ``source``."""
    with Store(path, create=True) as s:
        if source is not None:
            with Store(source) as src:
                s.import_conversations(src.iter_conversations(ids=src.ids()[:n]))
        s.add_remote("hub", URL, "hub", {"endpoint": hub.url, **options})
    return path


def _sync(path: Path, *, pull: bool = True, push: bool = True, token: str | None = TOKEN, **kw) -> SyncResult:
    with Store(path) as s:
        remote = HubRemote.from_info(s.remotes()["hub"], token, push_only=push and not pull, dataset_uid=s.dataset_uid(), name="hub", **kw)
        try:
            return sync_remote(s, "hub", remote, pull=pull, push=push)
        finally:
            remote.close()


def _live(path: Path) -> dict[str, str]:
    with Store(path) as s:
        return {i: st for i, st in s.states() if st != DELETED}


def _on_hub(hub: HubServer) -> dict[str, str]:
    """The conversations at the head (each id once, or the test fails), by state."""
    files = hub.head(REPO_ID).files
    rows = []
    for name in sorted(f for f in files if f.startswith("data/")):
        if name.endswith(".parquet"):
            rows += pq.read_table(io.BytesIO(files[name])).to_pylist()
        else:
            rows += [json.loads(line) for line in files[name].splitlines()]
    ids = [r["id"] for r in rows]
    assert ids == sorted(set(ids)), "ids sorted, each once"
    return {r["id"]: conversation_state(from_arrow_row(r)) for r in rows}


def _one_by_one(path: Path, seed: int) -> None:
    """Conversations asked for one at a time, in no order (as ``chatloom diff`` asks a remote)."""
    with Store(path) as s:
        remote = HubRemote.from_info(s.remotes()["hub"], TOKEN)
        try:
            picked = random.Random(seed).sample(s.ids(), 60)
            assert {i: conversation_state(remote.get([i])[i]) for i in picked} == {i: s.state(i) for i in picked}
            assert remote.get(["no:such"]) == {"no:such": None}
        finally:
            remote.close()


def _card(hub: HubServer) -> tuple[dict, str]:
    text = hub.head(REPO_ID).files["README.md"].decode()
    _, front, body = text.split("---\n", 2)
    return yaml.safe_load(front), body


def test_push_parquet_pull_back_and_load_dataset(run, chitchat: Path, hub: HubServer, tmp_path: Path) -> None:
    a = _dataset(tmp_path / "a.db", hub, chitchat, shard_size=3000)
    b = _dataset(tmp_path / "b.db", hub)
    assert len(_sync(a, pull=False).to_b) == 7_168  # the first push creates the repo (private)
    assert hub.private[REPO_ID]
    assert sorted(f for f in hub.head(REPO_ID).files if f.startswith("data/")) == [
        f"data/train-0000{k}-of-00003.parquet" for k in range(3)]  # fmt: skip
    assert len(_sync(b, push=False).to_a) == 7_168
    assert _live(a) == _live(b) == _on_hub(hub)
    d = json.loads(run("diff", str(a), str(b), "--stat", "--json").stdout)
    assert d["added"] == d["removed"] == d["changed"] == 0
    again = _sync(b)
    assert again.same == 7_168 and not (again.to_a or again.to_b)
    assert len(hub.repos[REPO_ID]) == 2  # nothing to give: no commit
    _one_by_one(b, 1)

    from datasets import Features, load_dataset
    from huggingface_hub import snapshot_download

    folder = snapshot_download(REPO_ID, repo_type="dataset", endpoint=hub.url, token=TOKEN, local_dir=tmp_path / "snapshot")
    ds = load_dataset(folder, split="train", cache_dir=str(tmp_path / "datasets-cache"))
    assert ds.num_rows == 7_168 and ds.features == Features.from_arrow_schema(arrow_schema())
    with Store(a) as s:
        first = s.get(ds[0]["id"])
        messages = sum(len(c.messages) for c in s.iter_conversations())
    assert [m["content"] for m in ds[0]["messages"]] == [m.content for m in first.messages]
    meta, body = _card(hub)
    assert meta["dataset_info"]["features"] == Features.from_arrow_schema(arrow_schema())._to_yaml_list()
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    assert meta["dataset_info"]["splits"][0]["name"] == "train" and meta["dataset_info"]["splits"][0]["num_examples"] == 7_168
    assert f"| train | 7,168 | {messages:,} |" in body and first.messages[0].content not in body  # counts, no chat


def _edge_cases() -> list[Conversation]:
    """What a chat export may hold that chitchat does not: tool calls and schemas, flags, metadata."""
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Zürich"}'}}
    return [
        Conversation(id="edge:tools", title="Wetter ☀", language="de", tags=["tools", "de"], source={"format": "openai", "file": "x.jsonl"},
                     tools=[{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
                     meta={"rating": 5, "nested": {"a": [1, 2]}}, created_at="2024-05-01T10:00:00Z", updated_at="2024-05-02T10:00:00Z",
                     messages=[Message(role="system", content="Be brief."), Message(role="user", content="Wetter in Zürich?", name="anna"),
                               Message(role="assistant", content="", tool_calls=[call], train=False),
                               Message(role="tool", content='{"temp": 21}', tool_call_id="call_1", meta={"ms": 12}),
                               Message(role="assistant", content="21 °C, sonnig.\n\n- trocken", train=True)]),  # fmt: skip
        Conversation(id="edge:empty-content", messages=[Message(role="user", content="")]),
    ]


def test_jsonl_round_trip(chitchat: Path, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("chatloom.sync.hub.ROW_GROUP", 40)  # read back by groups of 40 lines: a shard has several
    a = _dataset(tmp_path / "a.db", hub, chitchat, n=300, format="jsonl", shard_size=128)
    with Store(a) as s:
        for conv in _edge_cases():
            s.put(conv)
    b = _dataset(tmp_path / "b.db", hub, format="jsonl")
    _sync(a, pull=False)  # a push creates the repo (a sync or a pull asks for one: test_the_token…)
    assert sorted(f for f in hub.head(REPO_ID).files if f.startswith("data/"))[-1] == "data/train-00002-of-00003.jsonl"
    assert len(_sync(b).to_a) == 302
    assert _live(a) == _live(b) == _on_hub(hub)
    with Store(a) as sa, Store(b) as sb:
        for conv in _edge_cases():
            assert sb.get(conv.id) == sa.get(conv.id)  # every field, not only the state
    _one_by_one(a, 2)

    from datasets import load_dataset

    files = hub.head(REPO_ID).files
    for name, data in files.items():
        (tmp_path / "folder" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "folder" / name).write_bytes(data)
    ds = load_dataset(str(tmp_path / "folder"), split="train", cache_dir=str(tmp_path / "datasets-cache"))
    assert ds.num_rows == 302 and "messages" in ds.features


def _subset(chitchat: Path, tmp_path: Path, hub: HubServer, n: int) -> tuple[Path, Path, list[str]]:
    """A (n conversations) pushed, and B pulled from the Hub: two datasets in sync through it."""
    a = _dataset(tmp_path / "a.db", hub, chitchat, n=n, shard_size=250)
    b = _dataset(tmp_path / "b.db", hub)
    _sync(a, pull=False)
    _sync(a)
    _sync(b)
    with Store(a) as s:
        return a, b, sorted(s.ids())


def test_edits_deletes_and_a_conflict_on_both_sides(run, chitchat: Path, hub: HubServer, tmp_path: Path) -> None:
    a, b, ids = _subset(chitchat, tmp_path, hub, 800)
    for i in (1, 2, 3):
        edit(a, ids[i], " (a)")
    for i in (10, 11):
        edit(b, ids[i], " (b)")
    edit(a, ids[20], " A")
    edit(b, ids[20], " B")
    with Store(a) as s:
        s.delete([ids[30]])
        s.put(Conversation(id="a:new", messages=[Message(role="user", content="written in A")]))
    with Store(b) as s:
        s.delete([ids[31]])
        s.put(Conversation(id="zz:new-in-b", messages=[Message(role="user", content="written in B")]))
    r = _sync(a)
    assert (len(r.to_b), r.deleted_in_b, r.to_a, r.conflicts) == (5, [ids[30]], [], [])
    r = _sync(b)
    assert (len(r.to_a), r.deleted_in_a, len(r.to_b), r.deleted_in_b, r.conflicts) == (4, [ids[30]], 3, [ids[31]], [ids[20]])
    with Store(b) as s:
        (c,) = s.conflicts("hub")
        assert c.id == ids[20] and c.theirs.messages[0].content.endswith(" A")  # A's, from the Hub, beside B's
        assert s.get(ids[20]).messages[0].content.endswith(" B")
    assert _on_hub(hub)[ids[20]] == _live(a)[ids[20]]  # theirs was not overwritten
    assert run("resolve", "-d", str(b), ids[20], "--ours").exit_code == 0
    assert _sync(b).to_b == [ids[20]]
    r = _sync(a)
    assert (len(r.to_a), r.deleted_in_a, r.conflicts) == (4, [ids[31]], [])  # B's 2 edits, its new chat, the resolution
    assert _live(a) == _live(b) == _on_hub(hub)
    assert "zz:new-in-b" in _live(a) and ids[30] not in _live(b) and ids[31] not in _live(a)
    d = json.loads(run("diff", str(a), str(b), "--stat", "--json").stdout)
    assert d["added"] == d["removed"] == d["changed"] == 0


def test_a_push_based_on_an_old_commit_is_refused(chitchat: Path, hub: HubServer, tmp_path: Path) -> None:
    a, b, ids = _subset(chitchat, tmp_path, hub, 300)
    edit(a, ids[0], " (a, one)")
    assert _sync(a, pull=False).to_b == [ids[0]]  # the head is A's own commit: a push only goes on
    edit(a, ids[1], " (a, two)")
    assert _sync(a, pull=False).to_b == [ids[1]]
    _sync(b)
    edit(b, ids[2], " (b)")
    _sync(b)  # B commits after A's last sync
    head = hub.head(REPO_ID).oid
    edit(a, ids[3], " (a, stale)")
    with pytest.raises(RemoteError, match=r"newer commit .* 'chatloom pull hub' first"):
        _sync(a, pull=False)
    assert hub.head(REPO_ID).oid == head and _on_hub(hub)[ids[3]] != _live(a)[ids[3]]  # nothing overwritten
    r = _sync(a)  # a pull, then the push
    assert (r.to_a, r.to_b) == ([ids[2]], [ids[3]])

    # the race: B commits between A's read of the head and A's commit
    edit(a, ids[4], " (a, racing)")
    edit(b, ids[5], " (b, racing)")
    with Store(a) as s:
        remote = HubRemote.from_info(s.remotes()["hub"], TOKEN, dataset_uid=s.dataset_uid(), name="hub")
        conv = s.get(ids[4])
    try:
        theirs, _ = remote.changes(None)
        _sync(b)
        head = hub.head(REPO_ID).oid
        change = {"change": "c1", "id": ids[4], "expected": theirs[ids[4]], "conversation": msgspec.to_builtins(conv)}
        with pytest.raises(RemoteError, match="newer commit"):
            remote.apply([change])
    finally:
        remote.close()
    assert hub.head(REPO_ID).oid == head and ids[5] in _on_hub(hub)
    r = _sync(a)
    assert (r.to_a, r.to_b) == ([ids[5]], [ids[4]])
    assert _live(a) == _on_hub(hub)


RUN = """
import os, sys
from chatloom.store import Store
from chatloom.sync.hub import HubRemote
from chatloom.sync.remote import sync_remote
path, pull, push, cache = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1", sys.argv[4]
with Store(path) as s:
    r = HubRemote.from_info(s.remotes()["hub"], os.environ["HUB_TOKEN"], push_only=push and not pull, dataset_uid=s.dataset_uid(), cache_dir=cache)
    try:
        sync_remote(s, "hub", r, pull=pull, push=push)
    finally:
        r.close()
"""


def _killed_then_run(rnd: random.Random, argv: list[str], env: dict[str, str], kills: int) -> None:
    """Start ``argv`` and kill -9 it at a random point (unless it is done by then), ``kills``
    times; then run it to the end."""
    for delay in (rnd.uniform(0.1, 1.8) for _ in range(kills)):
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("seed", [3, 11])
def test_kill_9_at_random_points_of_a_push_and_a_pull(chitchat: Path, hub: HubServer, tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    a = _dataset(tmp_path / "a.db", hub, chitchat, n=1500, shard_size=250)
    b = _dataset(tmp_path / "b.db", hub)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), HUB_TOKEN=TOKEN, TMPDIR=str(tmp_path))
    base = [sys.executable, "-c", RUN]
    _killed_then_run(rnd, [*base, str(a), "0", "1", str(tmp_path / "cache-a")], env, 3)
    assert _on_hub(hub) == _live(a)  # no loss; no id twice (_on_hub)
    with Store(a) as s:
        mine = rnd.sample(s.ids(), 150)
        for conv in s.iter_conversations(ids=mine):
            conv.messages[-1].content += " (edited)"
            s.put(conv)
    _killed_then_run(rnd, [*base, str(a), "0", "1", str(tmp_path / "cache-a")], env, 2)
    assert _on_hub(hub) == _live(a)
    _killed_then_run(rnd, [*base, str(b), "1", "0", str(tmp_path / "cache-b")], env, 3)
    assert _live(b) == _live(a)
    with Store(b) as s:
        assert s.check().ok and len(set(s.ids())) == len(s.ids()) == 1500
        for conv_id in mine[:20]:
            assert s.get(conv_id).messages[-1].content.endswith(" (edited)")
            assert len(s.history(conv_id)) == 1  # pulled once, whatever the kills


def test_the_token_is_written_nowhere_and_is_asked_for(chitchat: Path, hub: HubServer, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    a = _dataset(tmp_path / "a.db", hub, chitchat, n=50)
    b = _dataset(tmp_path / "b.db", hub)
    cache = tmp_path / "cache"
    with pytest.raises(RemoteError, match="no such dataset .* 'chatloom push' creates it"):
        _sync(b, push=False, cache_dir=cache)  # a pull of a repo that is not there
    _sync(a, pull=False, cache_dir=cache)
    _sync(b, cache_dir=cache)
    assert _live(a) == _live(b)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in written) and len(written) > 4
    for path in written:
        assert TOKEN.encode() not in path.read_bytes(), path
    for commit in hub.repos[REPO_ID]:
        assert TOKEN not in commit.message and all(TOKEN.encode() not in data for data in commit.files.values())
    with Store(a) as s:
        assert "token" not in json.dumps(s.remotes()["hub"])
    assert "api/datasets/me/chats" in caplog.text and TOKEN not in caplog.text  # huggingface_hub's and httpx2's logs at DEBUG
    with pytest.raises(RemoteError, match="wants a token: 'chatloom keys set NAME'"):
        _sync(b, token=None)
    with pytest.raises(RemoteError, match="refused the token"):
        _sync(b, token="hf_wrong")


def test_bad_urls_and_options() -> None:
    assert parse_hub_url("hf://datasets/me/chats") == "me/chats"
    for url in ("hf://me/chats", "hf://datasets/me", "hf://datasets/me/chats/more", "hf://datasets/me/-x", "https://huggingface.co/me"):
        with pytest.raises(UsageError, match="hf://datasets/OWNER/NAME"):
            parse_hub_url(url)
    with pytest.raises(UsageError, match="parquet or jsonl"):
        HubRemote.from_info({"url": URL, "format": "csv"}, None)
    remote = HubRemote.from_info({"url": URL, "endpoint": "http://127.0.0.1:9"}, TOKEN)  # nothing listens there
    with pytest.raises(RemoteError, match="cannot reach http://127.0.0.1:9"):
        remote.changes(None)
    remote.close()
    assert not remote.cache.exists()  # its own cache goes with it


def test_through_the_cli_with_the_key_store(run, chitchat: Path, hub: HubServer, tmp_path: Path) -> None:
    """What a user types: the token in the key store, a first ``sync`` that makes the repo, a pull
    into a new dataset, a pull then a push one way each, ``diff`` against the remote."""
    laptop, desk = tmp_path / "laptop.db", tmp_path / "desk.db"
    with Store(laptop, create=True) as s, Store(chitchat) as src:
        s.import_conversations(src.iter_conversations(ids=src.ids()[:300]))
    assert run("keys", "set", "hf", input=TOKEN + "\n").exit_code == 0
    for db in (laptop, desk):
        r = run("remote", "add", "hub", URL, "--endpoint", hub.url, "--key", "hf", "--shard-size", "120", "-d", str(db))
        assert r.exit_code == 0, r.output
    r = run("sync", "-d", str(laptop), "hub", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["to_b"] == 300
    assert sorted(f for f in hub.head(REPO_ID).files if f.startswith("data/")) == [f"data/train-0000{i}-of-00003.parquet" for i in range(3)]
    assert json.loads(run("pull", "-d", str(desk), "hub", "--json").stdout)["to_a"] == 300
    edit(desk, _live(desk).popitem()[0], " (desk)")
    assert run("push", "-d", str(desk), "hub").exit_code == 0
    d = json.loads(run("diff", str(laptop), "hub", "--stat", "--json").stdout)
    assert (d["changed"], d["added"], d["removed"]) == (1, 0, 0)
    assert run("pull", "-d", str(laptop), "hub").exit_code == 0
    assert run("diff", str(laptop), "hub", "--stat").exit_code == 0
    with Store(laptop) as s:
        edited = s.ids()[0]
    edit(laptop, edited, " (laptop)")
    assert run("push", "-d", str(laptop), "hub").exit_code == 0  # after the pull above: not stale
    assert run("diff", str(laptop), str(desk), "--stat").exit_code == 1
    assert run("pull", "-d", str(desk), "hub").exit_code == 0
    assert run("diff", str(laptop), str(desk), "--stat").exit_code == 0
    r = run("remote", "add", "x", "hf://models/me/m", "-d", str(laptop))
    assert r.exit_code == 2 and "hf://datasets/" in r.output
    from huggingface_hub import scan_cache_dir

    cached = scan_cache_dir(tmp_path / "home" / "cache" / "hub")  # chatloom's own cache, not ~/.cache
    assert [len(repo.revisions) for repo in cached.repos] == [1]  # older snapshots pruned


def _upload(hub: HubServer, files: dict[str, bytes]) -> None:
    """A commit made by someone else, with huggingface_hub itself."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo(REPO_ID, repo_type="dataset", exist_ok=True)
    api.create_commit(REPO_ID, [CommitOperationAdd(path_in_repo=p, path_or_fileobj=b) for p, b in files.items()],
                      commit_message="by hand", repo_type="dataset")  # fmt: skip


def _shard(convs: list[Conversation], **extra: list) -> bytes:
    import pyarrow as pa

    from chatloom.formats.tables import arrow_row

    table = pa.Table.from_pylist([arrow_row(c) for c in convs], schema=arrow_schema())
    for column, values in extra.items():
        table = table.append_column(column, pa.array(values))
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


def test_a_card_written_by_hand_is_kept_and_foreign_columns_are_not_dropped(hub: HubServer, tmp_path: Path) -> None:
    convs = [Conversation(id=f"c{i}", messages=[Message(role="user", content=f"q{i}"), Message(role="assistant", content="a")]) for i in range(3)]
    card = "---\nlicense: mit\ntags:\n- mine\n---\n# My chats\n\nWords a person wrote about them.\n"
    _upload(hub, {"README.md": card.encode(), "data/train-00000-of-00001.parquet": _shard(convs)})
    db = _dataset(tmp_path / "a.db", hub)
    assert len(_sync(db).to_a) == 3
    edit(db, "c1", " (edited)")
    assert _sync(db).to_b == ["c1"]
    meta, text = yaml.safe_load(hub.head(REPO_ID).files["README.md"].decode().split("---")[1]), hub.head(REPO_ID).files["README.md"].decode()
    assert "Words a person wrote about them." in text and meta["license"] == "mit" and "mine" in meta["tags"]
    assert meta["configs"][0]["data_files"][0]["path"] == "data/train-*" and meta["dataset_info"]["splits"][0]["num_examples"] == 3
    _upload(hub, {"data/train-00000-of-00001.parquet": _shard(convs, score=[1, 2, 3])})
    head = hub.head(REPO_ID).oid
    edit(db, "c2", " (edited)")
    with pytest.raises(RemoteError, match=r"columns chatloom does not keep \(score\)"):
        _sync(db)
    assert hub.head(REPO_ID).oid == head  # nothing pushed, nothing dropped


def test_another_remotes_secret_is_never_sent_to_the_hub(run, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "a.db"
    _put_one = Conversation(id="x", messages=[Message(role="user", content="q"), Message(role="assistant", content="a")])
    with Store(db, create=True) as s:
        s.put(_put_one)
    assert run("remote", "add", "hub", URL, "--endpoint", hub.url, "-d", str(db)).exit_code == 0
    monkeypatch.setenv("CHATLOOM_REMOTE_TOKEN", TOKEN)  # a chatloom server's variable: not the Hub's
    r = run("sync", "-d", str(db), "hub")
    assert r.exit_code == 2 and "wants a token" in r.output and REPO_ID not in hub.repos
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert run("sync", "-d", str(db), "hub").exit_code == 0 and REPO_ID in hub.repos
    r = run("remote", "add", "h2", URL, "--endpoint", "http://[::1", "-d", str(db))
    assert r.exit_code == 2 and r.output.startswith("error: --endpoint")
