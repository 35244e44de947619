import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatloom.errors import ChatloomError, ConflictError, NotFoundError, StoreError
from chatloom.model import Conversation, Message, digest
from chatloom.store import Batch, Store, make_batches
from chatloom.tokens.tokenizer import get_tokenizer
from tests.conftest import conv, write_jsonl


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "t.db", create=True) as s:
        yield s


def test_missing_dataset_is_refused(tmp_path):
    with pytest.raises(StoreError, match="no such dataset"):
        Store(tmp_path / "nope.db")
    assert not (tmp_path / "nope.db").exists()


def test_other_files_are_not_datasets_and_stay_as_they_were(tmp_path):
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as db:
        db.executescript("CREATE TABLE x (y); INSERT INTO x VALUES (1);")
    before = other.read_bytes()
    for create in (False, True):
        with pytest.raises(StoreError, match="other.db: not a chatloom dataset"):
            Store(other, create=create)
    assert other.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(StoreError, match="garbage.db: not a chatloom dataset \\(not an SQLite file\\)"):
        Store(garbage, create=True)


def test_wal_and_schema_version(store):
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA user_version").fetchone()[0] >= 1


def test_import_is_idempotent(store):
    convs = [conv("hi", "hello", id=f"c{i}") for i in range(10)]
    first = store.import_conversations(convs)
    assert (first.added, first.unchanged) == (10, 0)
    again = store.import_conversations([conv("hi", "hello", id=f"c{i}") for i in range(10)])
    assert (again.added, again.updated, again.unchanged) == (0, 0, 10)
    assert store.count() == 10
    assert store.check().ok


def test_ids_from_digest_make_anonymous_records_idempotent(store):
    store.import_conversations([conv("a", "b"), conv("c", "d")])
    counts = store.import_conversations([conv("a", "b"), conv("c", "d")])
    assert counts.unchanged == 2 and store.count() == 2


def test_changed_content_is_an_update_with_history_and_undo(store):
    store.import_conversations([conv("hi", "hello", id="c")])
    counts = store.import_conversations([conv("hi", "hello there", id="c")])
    assert counts.updated == 1
    assert store.get("c").messages[1].content == "hello there"
    assert [r.op for r in store.history("c")] == ["import", "import"]
    undone, new = store.undo("c")
    assert (undone, new) == (2, 3)
    assert store.get("c").messages[1].content == "hello"
    store.undo("c")  # undoing the creation deletes it
    with pytest.raises(NotFoundError, match="deleted"):
        store.get("c")
    with pytest.raises(ChatloomError, match="nothing to undo"):
        store.undo("c")
    assert store.check().ok


def test_same_id_twice_in_one_import(store):
    counts = store.import_conversations([conv("v1", id="x"), conv("v2", id="x"), conv("v2", id="x")], batch_size=100)
    assert (counts.added, counts.updated, counts.unchanged) == (1, 1, 1)
    assert store.get("x").messages[0].content == "v2"


def test_put_with_an_old_revision_is_a_conflict(store):
    store.put(conv("hi", "hello", id="c"))
    entry = store.entry("c")
    mine = entry.conversation
    mine.messages[1].content = "edited by me"
    theirs = store.get("c")
    theirs.messages[1].content = "edited by them"
    assert store.put(theirs, base_revision=entry.revision) == 2
    with pytest.raises(ConflictError, match="based on revision 1"):
        store.put(mine, base_revision=entry.revision)
    assert store.get("c").messages[1].content == "edited by them"
    assert store.put(mine, base_revision=2) == 3


def test_delete_keeps_a_tombstone_and_reimport_respects_it(store):
    store.import_conversations([conv("a", "b", id="x"), conv("c", "d", id="y")])
    assert store.delete(["x"]) == 1
    assert store.count() == 1
    entry = store.entry("x")
    assert entry.deleted and entry.revision == 2 and entry.conversation.messages == []
    assert [c.id for c in store.iter_conversations()] == ["y"]
    counts = store.import_conversations([conv("a", "b", id="x")])
    assert counts.deleted == 1 and store.count() == 1
    store.undo("x")
    assert store.get("x").messages[0].content == "a"
    assert store.check().ok


def test_tags(store):
    store.import_conversations([conv("a", id="x"), conv("b", id="y")], tags=["imported"])
    assert store.get("x").tags == ["imported"]
    assert store.tag(["x"], add=["keep", "imported"]) == 1
    assert store.tag(["x"], add=["keep"]) == 0  # no change, no revision
    assert [s.id for s in store.summaries(tag="keep")] == ["x"]
    assert [c.id for c in store.iter_conversations(tag="keep")] == ["x"]
    store.tag(["x", "y"], remove=["imported"])
    assert store.get("y").tags == []
    assert store.stats()["by_tag"] == {"keep": 1}
    store.undo("y")
    assert store.get("y").tags == ["imported"]
    assert store.check().ok


def test_reimport_adds_new_tags_to_unchanged_conversations(store):
    store.import_conversations([conv("a", id="x")])
    store.import_conversations([conv("a", id="x")], tags=["second"])
    assert store.get("x").tags == ["second"]


def test_a_newer_export_keeps_the_tags_a_user_added(store):
    store.import_conversations([conv("a", id="x", tags=["from-source"])])
    store.tag(["x"], add=["keep"])
    store.import_conversations([conv("a", "and more", id="x", tags=["from-source"])])
    assert store.get("x").tags == ["from-source", "keep"]
    assert store.get("x").messages[1].content == "and more"


def test_settings(store):
    assert store.settings() == {}
    store.set_setting("languages", ["en", "de"])
    store.set_setting("tokenizer", "cl100k_base")
    assert store.settings() == {"languages": ["en", "de"], "tokenizer": "cl100k_base"}
    store.set_setting("tokenizer", None)
    assert store.get_setting("tokenizer") is None


def test_search(store):
    store.import_conversations([
        conv("I love pizza with olives", "me too", id="p"),
        conv("sushi tonight?", "yes please", id="s"),
        conv("Pizza or sushi?", "both", id="b"),
    ])
    assert {r.id for r in store.search("pizza")} == {"p", "b"}
    assert {r.id for r in store.search("pizza sushi")} == {"b"}
    assert "\x02" in store.search("olives")[0].snippet
    # FTS syntax in user text is text, not an error
    for q in ['"', "pizza OR", "NEAR(", "a*b", "-x"]:
        store.search(q)
    store.delete(["p"])
    assert {r.id for r in store.search("pizza")} == {"b"}


def test_everything_reads_back(store):
    rich = Conversation(
        id="r",
        title="t",
        language="en",
        tags=["a", "b"],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        source={"format": "openai", "file": "x.jsonl", "locator": "line 1"},
        meta={"persona": "p", "n": [1, 2]},
        created_at="2024-01-01T00:00:00Z",
        messages=[
            Message(role="system", content="sys"),
            Message(role="user", content="u", name="bob", meta={"ts": 1}),
            Message(role="assistant", content="", tool_calls=[{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}], train=False),
            Message(role="tool", content="ok", tool_call_id="1", name="f"),
            Message(role="assistant", content="done", train=True),
        ],
    )
    store.import_conversations([rich, conv("x", id="plain")])
    assert store.get("r") == rich
    assert list(store.iter_conversations()) == [rich, store.get("plain")]
    assert list(store.iter_conversations(ids=["plain", "r"])) == [store.get("plain"), rich]


def test_token_counts_are_cached_per_digest(store):
    store.import_conversations([conv("hello world", "hi", id=f"c{i}") for i in range(3)])
    tok = get_tokenizer("gpt2-chatml")
    first = store.stats(tok)["tokens"]
    assert first["total"] == 3 * tok.chatml_counts([[("user", "hello world"), ("assistant", "hi")]])[0]
    rows = store.db.execute("SELECT count(*) FROM token_counts").fetchone()[0]
    assert rows == 3
    edited = store.get("c1")
    edited.messages[1].content = "a much longer answer than before"
    store.put(edited)
    calls = []
    store.token_counts(tok, progress=lambda done, total: calls.append(total))
    assert calls == [1]  # only the edited conversation was counted again


def test_check_finds_damage(store):
    store.import_conversations([conv("a", "b", id="x"), conv("c", "d", id="y")])
    assert store.check().ok
    store.db.execute("UPDATE messages SET content = 'tampered' WHERE pk = (SELECT msg_start FROM conversations WHERE id = 'y')")
    store.db.execute("UPDATE conversations SET tags = '[\"ghost\"]' WHERE id = 'x'")
    problems = store.check().problems
    assert any("y: its content does not match its digest" in p for p in problems)
    assert any("x: its tags disagree" in p for p in problems)
    assert any("full-text index" in p for p in problems)


def test_strict_import_is_all_or_nothing(store):
    def convs():
        yield conv("a", id="1")
        yield conv("b", id="2")
        raise ChatloomError("bad record")

    with pytest.raises(ChatloomError):
        store.import_conversations(convs(), batch_size=1, atomic=True)
    assert store.count() == 0
    with pytest.raises(ChatloomError):
        store.import_conversations(convs(), batch_size=1)
    assert store.count() == 2  # without atomic, whole batches before the fault stay
    assert store.check().ok


# -- two processes ---------------------------------------------------------------------------


def _writer(path, prefix, n):
    with Store(path) as s:
        for i in range(n):
            s.import_conversations([conv(f"{prefix} {i}", "ok", id=f"{prefix}{i}")], batch_size=1)
            s.tag([f"{prefix}{i}"], add=[prefix])


def test_two_processes_writing_at_once(tmp_path):
    path = tmp_path / "shared.db"
    Store(path, create=True).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), p, 40)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Store(path) as s:
        assert s.count() == 80
        assert s.stats()["by_tag"] == {"a": 40, "b": 40}
        assert s.check().ok


def _editor(path, base, ready, go):
    with Store(path) as s:
        c = s.get("c")
        c.messages[0].content = "from the other process"
        ready.set()
        go.wait(30)
        s.put(c, base_revision=base)


def test_another_process_saving_first_makes_a_conflict(tmp_path):
    path = tmp_path / "shared.db"
    with Store(path, create=True) as s:
        s.put(conv("original", id="c"))
        base = s.entry("c").revision
        ctx = multiprocessing.get_context("spawn")
        ready, go = ctx.Event(), ctx.Event()
        p = ctx.Process(target=_editor, args=(str(path), base, ready, go))
        p.start()
        assert ready.wait(60)
        go.set()
        p.join(60)
        assert p.exitcode == 0
        mine = conv("mine", id="c")
        with pytest.raises(ConflictError):
            s.put(mine, base_revision=base)
        assert s.get("c").messages[0].content == "from the other process"


def _revision(n):
    """What revision ``n`` of conversation "c" holds: 1 to 3 messages, each saying ``n``."""
    return Conversation(id="c", messages=[Message(role="user", content=f"revision {n}")] * (1 + n % 3))


def _saver(path, go, seconds):
    with Store(path) as s:
        go.wait(60)
        end = time.monotonic() + seconds
        revision = s.entry("c").revision
        while time.monotonic() < end:
            revision = s.put(_revision(revision + 1), base_revision=revision)


def _reader(path, go, seconds, found):
    with Store(path) as s:
        go.wait(60)
        end = time.monotonic() + seconds
        reads = torn = 0
        while time.monotonic() < end:
            e = s.entry("c")
            reads += 1
            if [m.content for m in e.conversation.messages] != [m.content for m in _revision(e.revision).messages]:
                torn += 1
            (match,) = s.search("revision")  # a page: the matches, then their rows
            reads += 1
            if match.snippet.replace("\x02", "").replace("\x03", "") != f"revision {match.revision}":
                torn += 1
            (row,) = s.summaries()
            reads += 1
            if (row.n_messages, row.preview) != (1 + row.revision % 3, f"revision {row.revision}"):
                torn += 1
        found.put((reads, torn))


def test_a_read_while_another_process_saves_is_one_snapshot(tmp_path):
    """A reader in one process, a writer saving the same conversation again and again in
    another, for a few seconds: every read is one revision, its row and its messages together
    (before, a save between the row's read and the messages' gave revision N with no messages),
    and so is a page of them (a search's matches and their rows)."""
    path = tmp_path / "shared.db"
    with Store(path, create=True) as s:
        s.put(_revision(1))
    ctx = multiprocessing.get_context("spawn")
    go, found = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_saver, args=(str(path), go, 2.5)), ctx.Process(target=_reader, args=(str(path), go, 2.5, found))]
    for p in procs:
        p.start()
    go.set()
    reads, torn = found.get(timeout=120)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with Store(path) as s:
        assert s.entry("c").revision > 10  # the writer did save, many times, while the reader read
    assert reads > 10 and torn == 0, f"{torn} of {reads} reads were torn"


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_import_killed_mid_way_resumes_without_duplicates(tmp_path, chitchat_path):
    from chatloom.sources import Reader, get_source

    source = get_source("chitchat")
    convs = list(source.read(chitchat_path, Reader("x")))
    for i, c in enumerate(convs):
        c.id = f"{c.id}#{i % 3}"
    data = write_jsonl(tmp_path / "big.jsonl", convs * 1)
    total = len(convs)
    db = tmp_path / "k.db"
    cmd = [sys.executable, "-m", "chatloom", "import", "-d", str(db), "--batch-size", "500", str(data)]
    # parsed in a worker process, as a large file is (the worker must not outlive a kill)
    env = {**os.environ, "CHATLOOM_PARSE_PROCESS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    committed = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                ro = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
                committed = ro.execute("SELECT count(*) FROM conversations").fetchone()[0]
                ro.close()
            except sqlite3.OperationalError:
                committed = 0
            if committed >= 1000:
                break
        time.sleep(0.02)
    assert proc.poll() is None, "the import finished before it could be killed; make the input bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # a worker process it parsed in must not outlive it
    def ours():
        return [p for p in Path("/proc").glob("[0-9]*") if str(data).encode() in _cmdline(p)]

    deadline = time.time() + 60
    while ours() and time.time() < deadline:
        time.sleep(0.05)
    assert not ours(), "a process of the killed import is still running"
    with Store(db) as s:
        kept = s.count()
        assert 0 < kept < total
        assert kept % 500 == 0  # whole batches or nothing
        assert s.check().ok
    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed an interrupted import" in rerun.stdout
    with Store(db) as s:
        assert s.count() == total
        assert s.db.execute("SELECT count(*) FROM conversations").fetchone()[0] == total
        assert s.check().ok
        statuses = [r[0] for r in s.db.execute("SELECT status FROM imports ORDER BY pk")]
        assert statuses == ["interrupted", "done"]


# -- a property test: the store agrees with a plain dict under any sequence of operations -----

ops = st.lists(
    st.one_of(
        st.tuples(st.just("import"), st.integers(0, 5), st.sampled_from(["a", "b", "c"])),
        st.tuples(st.just("put"), st.integers(0, 5), st.sampled_from(["x", "y"])),
        st.tuples(st.just("delete"), st.integers(0, 5), st.none()),
        st.tuples(st.just("tag"), st.integers(0, 5), st.sampled_from(["t1", "t2"])),
    ),
    max_size=25,
)


@given(ops)
@settings(max_examples=60, deadline=None)
def test_store_matches_a_model(tmp_path_factory, sequence):
    path = tmp_path_factory.mktemp("prop") / "p.db"
    model: dict[str, Conversation] = {}
    deleted: set[str] = set()
    with Store(path, create=True) as s:
        for op, n, arg in sequence:
            cid = f"id{n}"
            if op == "import":
                c = conv(arg, "reply", id=cid)
                s.import_conversations([c])
                if cid not in deleted:
                    old_tags = model[cid].tags if cid in model else []
                    model[cid] = conv(arg, "reply", id=cid, tags=old_tags)
            elif op == "put":
                c = conv(arg, id=cid)
                s.put(c)
                deleted.discard(cid)
                model[cid] = c
            elif op == "delete" and cid in model:
                s.delete([cid])
                deleted.add(cid)
                del model[cid]
            elif op == "tag" and cid in model:
                s.tag([cid], add=[arg])
                if arg not in model[cid].tags:
                    model[cid].tags = [*model[cid].tags, arg]
        got = {c.id: c for c in s.iter_conversations()}
        assert {k: (digest(v), v.tags) for k, v in got.items()} == {k: (digest(v), v.tags) for k, v in model.items()}
        assert s.check().ok


def _tx_ends(batches):
    """Where the transactions end (in conversations), and the size of every batch or piece."""
    ends, sizes, n = [], [], 0
    for b in batches:
        n += len(b)
        sizes.append((len(b), b.piece))
        if not b.piece:
            ends.append(n)
    return ends, sizes


def test_every_batch_comes_in_pieces_and_transactions_end_where_they_did():
    convs = [Conversation(id=f"c{i}", messages=[Message(role="user", content=f"{i} {j}") for j in range(10)]) for i in range(100)]
    ends, sizes = _tx_ends(make_batches(convs, 10_000, max_messages=200, piece_messages=70))
    assert sizes == [(7, True), (7, True), (6, False)] * 5  # 70 + 70 + 60 messages: the batch ends at 200
    assert ends == _tx_ends(make_batches(convs, 10_000, max_messages=200))[0] == [20, 40, 60, 80, 100]
    # a batch ended by its conversation count starts its pieces afresh too
    assert _tx_ends(make_batches(convs[:30], 12, piece_messages=50))[1] == [(5, True), (5, True), (2, False)] * 2 + [(5, True), (1, False)]
    # a repeated id ends the batch even just after a piece: an empty batch closes the transaction
    again = [*convs[:4], convs[0]]
    ends, sizes = _tx_ends(make_batches(again, 10_000, max_messages=200, piece_messages=40))
    assert sizes == [(4, True), (0, False), (1, False)] and ends == [4, 5]
    # a stream that ends inside the pieces still ends its batch
    assert _tx_ends(make_batches(convs[:5], 10_000, max_messages=200, piece_messages=40))[1] == [(4, True), (1, False)]


def test_pieces_are_one_transaction_rolled_back_together_when_the_source_fails(tmp_path):
    convs = [Conversation(id=f"c{i}", messages=[Message(role="user", content=f"{i} {j}") for j in range(10)]) for i in range(30)]

    def failing():
        yield from make_batches(convs[:12], 10_000, max_messages=200, piece_messages=40)  # three pieces of 4, no end

    def cut_short():
        for b in failing():
            if not b.piece:
                raise ChatloomError("the file ends early")
            yield b

    with Store(tmp_path / "p.db", create=True) as s:
        with pytest.raises(ChatloomError, match="ends early"):
            s.import_batches(cut_short())
        assert s.count() == 0
        # whole, the same pieces commit once their batch ends
        counts = s.import_batches(make_batches(convs, 10_000, max_messages=200, piece_messages=40))
        assert counts.added == s.count() == 30 and s.check().ok


# -- search, is_empty and the bulk-write interface ------------------------------------------


def _queries(store, fn):
    """The statements ``fn()`` runs on the store's connection (not those SQLite runs inside them,
    which the trace shows as "-- …": FTS5 reads its index with statements of its own)."""
    seen = []
    store.db.set_trace_callback(seen.append)
    try:
        result = fn()
    finally:
        store.db.set_trace_callback(None)
    return result, [q for q in seen if not q.startswith("--") and q not in ("BEGIN", "COMMIT")]  # its read transaction


def test_search_runs_the_same_few_queries_for_any_page_size(store):
    store.import_conversations([conv(f"pizza number {i}", "yum", id=f"p{i}") for i in range(50)], tags=["food"])
    store.import_conversations([conv("pasta", "no pizza here", id="solo")])
    one, q1 = _queries(store, lambda: store.search("pasta"))
    many, q50 = _queries(store, lambda: store.search("pizza", limit=None))
    tagged, qt = _queries(store, lambda: store.search("pizza", tag="food", limit=30))
    assert [s.id for s in one] == ["solo"] and len(many) == 51 and len(tagged) == 30
    assert len(q1) == len(q50) == len(qt) == 2  # the matches, then the page's listing rows
    assert all(s.snippet and "\x02" in s.snippet for s in many)
    assert {s.id for s in tagged} <= {f"p{i}" for i in range(50)}


def test_search_by_tag_finds_tagged_matches_ranked_below_many_others(store):
    # the best matches are untagged: a tagged one ranked 30th is still found with limit=1
    store.import_conversations([conv("pizza pizza pizza", id=f"u{i}") for i in range(30)])
    store.import_conversations([conv("pizza and a long story about many other things entirely", id="t")], tags=["keep"])
    assert [s.id for s in store.search("pizza", tag="keep", limit=1)] == ["t"]
    assert store.search("pizza", limit=1)[0].id.startswith("u")


def test_is_empty_counts_tombstones(store):
    assert store.is_empty()
    store.import_conversations([conv("a", id="x")])
    assert not store.is_empty()
    store.delete(["x"])
    assert store.count() == 0 and not store.is_empty()  # the tombstone is kept, for sync and undo


def test_the_public_bulk_interface_as_a_worker_process_uses_it(store):
    convs = [conv(f"hello {i}", "hi") for i in range(12)]  # no ids: make_batches sets them
    made = list(make_batches(convs, 5, piece_messages=4))
    assert all(isinstance(b, Batch) for b in made)
    assert [(len(b), b.piece) for b in made] == [(2, True), (2, True), (1, False)] * 2 + [(2, True), (0, False)]  # an empty batch ends the last
    assert all(c.id and dg == digest(c) for b in made for c, dg in b)
    # what crosses the pipe: conversations, digests and the piece flag; the batch is rebuilt
    sent = [([c for c, _ in b], [d for _, d in b], b.piece) for b in made]
    counts = store.import_batches(Batch(zip(cs, ds, strict=True), piece=piece) for cs, ds, piece in sent)
    assert (counts.records, counts.added) == (12, 12) and store.count() == 12 and store.check().ok
    # a plain list is a whole batch
    again = store.import_batches([[(c, d) for c, d in made[0]]])
    assert (again.records, again.unchanged) == (2, 2)
    assert repr(Batch(piece=True)) == "Batch([], piece=True)"


def test_a_piece_left_open_by_an_interrupted_stream_writes_nothing(store):
    convs = [conv(f"hello {i}", "hi", id=f"c{i}") for i in range(6)]
    pieces = [b for b in make_batches(convs, 100, piece_messages=4) if b.piece]

    def interrupted():
        yield from pieces
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.import_batches(interrupted())
    assert store.is_empty()


def test_rows_name_the_table_columns_in_order(store):
    from chatloom.store.rows import ConvRow, conv_row, to_conversation

    columns = [name for _, name, *_ in store.db.execute("PRAGMA table_info(conversations)")]
    assert list(ConvRow._fields) == columns
    c = Conversation(id="r", title="t", language="en", tags=["a"], tools=[{"type": "function"}], source={"format": "x"},
                     meta={"k": 1}, created_at="c", updated_at="u", messages=[Message(role="user", content="hi")])  # fmt: skip
    row = conv_row(7, c, "dg", 3, "now", 11)
    assert (row.pk, row.digest, row.revision, row.deleted, row.modified_at, row.msg_start, row.n_messages) == (7, "dg", 3, 0, "now", 11, 1)
    assert to_conversation(row, c.messages) == c


# -- no import into a damaged file ---------------------------------------------------------------


def _flip_a_page_of(path, table, pagetype="leaf"):
    """Flip the b-tree header of a page of ``table`` (chosen with SQLite's dbstat table)."""
    with closing(sqlite3.connect(path)) as db:
        pages = [p for (p,) in db.execute("SELECT pageno FROM dbstat WHERE name = ? AND pagetype = ? ORDER BY pageno", (table, pagetype))]
    data = bytearray(path.read_bytes())
    start = (pages[len(pages) // 2] - 1) * 4096
    data[start : start + 8] = bytes(b ^ 0xFF for b in data[start : start + 8])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("whole", [True, False])
def test_nothing_is_imported_into_a_damaged_file(tmp_path, monkeypatch, chitchat_path, whole):
    """Small files are checked whole; above ``WHOLE_CHECK_BYTES`` (here 0), the tables every
    import reads and rewrites. Either way the damage is named, and the file is as it was."""
    from chatloom.importing import import_paths
    from chatloom.sources import Reader, get_source
    from chatloom.store import check

    if not whole:
        monkeypatch.setattr(check, "WHOLE_CHECK_BYTES", 0)
    convs = list(get_source("chitchat").read(chitchat_path, Reader("x")))
    path = tmp_path / "d.db"
    with Store(path, create=True) as s:
        s.import_conversations(convs[:400])
    _flip_a_page_of(path, "conversations")
    before = path.read_bytes()
    new = write_jsonl(tmp_path / "new.jsonl", convs[400:800])
    with pytest.raises(StoreError, match=r"d.db: the dataset file is damaged .*; nothing was imported into it"):
        import_paths(path, [str(new)], batch_size=50)
    assert path.read_bytes() == before
