"""A large export is parsed in a worker process while the dataset is written: the result must be
the same as reading it here, errors included, and the worker must never outlive the import."""

import itertools
import json
import multiprocessing
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from chatloom.errors import SourceError
from chatloom.importing import ImportOptions, import_paths
from chatloom.importing import worker as parse_process
from chatloom.model import Conversation, Message
from chatloom.sources import Reader, Source
from chatloom.store import Store
from tests.sources.common import raises_as_cli_says

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the worker process is forked, on Linux only")


def _whatsapp(path: Path, chats: int = 60, bad_line: int | None = None) -> Path:
    """A WhatsApp export of ``chats`` sessions three hours apart, with system lines, media and
    merged turns; line ``bad_line`` (1-based) gets a time no clock shows."""
    lines, t = [], datetime(2023, 1, 13, 8, 0)

    def header(rest: str) -> str:
        clock = "25:61" if len(lines) + 1 == bad_line else f"{t:%H:%M}"
        return f"{t:%d/%m/%Y}, {clock} - {rest}"

    for c in range(chats):
        for i in range(6):
            who = "Ana" if i % 3 == 0 else ("Ben" if c % 2 else "Cy")
            lines.append(header(f"{who}: " + ("<Media omitted>" if i == 4 else f"chat {c} line {i}")))
            if i == 2:
                lines.append("  and a second line")
            t += timedelta(minutes=2)
        lines.append(header("Ben left"))
        t += timedelta(hours=3)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _import(monkeypatch, mode: str, db: Path, path: Path, me: str = "Ana", **kw):
    monkeypatch.setenv("CHATLOOM_PARSE_PROCESS", mode)
    with Store(db, create=True) as store:
        (result,) = import_paths(store, [str(path)], ImportOptions(me=[me]), **kw)
        return result, list(store.iter_conversations())


@pytest.mark.parametrize(("name", "me"), [("whatsapp", "Ana"), ("discordchatexporter_general.json", "Adam"),
                                          ("telegram_batch_export_chatminer.json", "Author 1")])  # fmt: skip
def test_a_worker_process_imports_what_this_process_imports(tmp_path, monkeypatch, fixture, name, me):
    path = _whatsapp(tmp_path / "WhatsApp Chat with Ben.txt") if name == "whatsapp" else fixture(name)
    here, convs_here = _import(monkeypatch, "0", tmp_path / "here.db", path, me, batch_size=7)
    there, convs_there = _import(monkeypatch, "1", tmp_path / "there.db", path, me, batch_size=7)
    assert convs_here == convs_there and convs_here
    assert here.to_dict() == there.to_dict()
    if name == "whatsapp":  # the counts that live in the reader came back from the worker
        assert here.counts.added == 60 and there.speakers == {"Ana": 120, "Ben": 120, "Cy": 120}
        assert there.dropped == {"system line": 60}


def test_a_bad_record_in_the_worker_is_counted_or_under_strict_stops_the_file(tmp_path, monkeypatch):
    path = _whatsapp(tmp_path / "chat.txt", bad_line=10)
    assert "25:61" in path.read_text().splitlines()[9]
    here, _ = _import(monkeypatch, "0", tmp_path / "here.db", path)
    there, convs = _import(monkeypatch, "1", tmp_path / "there.db", path)
    assert there.bad == here.bad == 1
    assert there.examples == here.examples and ":10: unreadable time" in there.examples[0]
    assert len(convs) == 60
    monkeypatch.setenv("CHATLOOM_PARSE_PROCESS", "1")
    with Store(tmp_path / "strict.db", create=True) as store:
        with raises_as_cli_says(SourceError, r"chat.txt:10: unreadable time .*--strict: nothing of this file was imported"):
            import_paths(store, [str(path)], ImportOptions(me=["Ana"]), strict=True)
        assert store.count() == 0


@pytest.mark.parametrize("batch_size", [5000, 7])
def test_a_truncated_file_writes_nothing(tmp_path, monkeypatch, batch_size):
    """8,000 messages in 400 sessions, in one batch or in many, cut short: the error, and nothing
    written, in-process and through the worker (the end of the file is checked first)."""
    t0 = datetime(2024, 1, 1)
    messages = [{"id": str(i), "type": "Default", "timestamp": (t0 + timedelta(hours=3 * (i // 20), minutes=i % 20)).isoformat() + "+00:00",
                 "content": f"message {i}", "author": {"name": "Ana" if i % 2 else "Ben"}} for i in range(8000)]  # fmt: skip
    full = json.dumps({"guild": {"name": "g"}, "channel": {"id": "9", "name": "c"}, "messages": messages}, indent=2)
    cut = tmp_path / "cut.json"
    cut.write_text(full[: len(full) - 3000])
    for mode in ("0", "1"):
        monkeypatch.setenv("CHATLOOM_PARSE_PROCESS", mode)
        with Store(tmp_path / f"{mode}.db", create=True) as store:
            with pytest.raises(SourceError, match=r"cut.json:\d+: the file ends inside the messages array"):
                import_paths(store, [str(cut)], ImportOptions(me=["Ana"]), batch_size=batch_size)
            assert store.count() == 0


def test_an_error_in_the_worker_is_the_same_error_here(tmp_path, monkeypatch, fixture):
    src = fixture("discordchatexporter_general.json")
    cut = tmp_path / "cut.json"
    cut.write_bytes(src.read_bytes()[:-2000])
    errors = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("CHATLOOM_PARSE_PROCESS", mode)
        with Store(tmp_path / f"{mode}.db", create=True) as store:
            with pytest.raises(SourceError) as err:
                import_paths(store, [str(cut)], ImportOptions(me=["Adam"]), strict=True)
            assert store.count() == 0
        errors[mode] = (str(err.value), err.value.file, err.value.where)
    assert errors["0"] == errors["1"] and "truncated" in errors["1"][0]
    assert not multiprocessing.active_children()


class _Endless(Source):
    """A source that never runs out: only ending the worker stops it."""

    name = "endless"

    def read(self, path, reader):
        for n in itertools.count():
            yield Conversation(id=f"e:{n}", messages=[Message(role="user", content=f"post {n}")])


def test_the_worker_ends_when_the_reader_stops_early(tmp_path):
    path = tmp_path / "any.txt"
    path.write_text("x")
    batches = parse_process.read_batches(_Endless(), path, Reader(str(path)), batch_size=5)
    first = next(batches)
    assert [conv.id for conv, _ in first] == [f"e:{n}" for n in range(5)] and all(len(dg) == 64 for _, dg in first)
    assert multiprocessing.active_children()
    closing = threading.Thread(target=batches.close)  # what an error while writing, or Ctrl+C, does to it
    closing.start()
    closing.join(60)
    assert not closing.is_alive(), "closing the batches did not end the worker"
    assert not multiprocessing.active_children()


def test_only_large_files_go_to_a_worker(tmp_path, monkeypatch):
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"a": 1}))
    monkeypatch.delenv("CHATLOOM_PARSE_PROCESS", raising=False)
    assert not parse_process.usable(small)
    monkeypatch.setenv("CHATLOOM_PARSE_PROCESS", "1")
    assert parse_process.usable(small)
    monkeypatch.setenv("CHATLOOM_PARSE_PROCESS", "0")
    assert not parse_process.usable(small)


@pytest.mark.parametrize("mode", ["0", "1"])
def test_a_file_that_fails_midway_keeps_its_bad_record_counts_in_either_process(tmp_path, monkeypatch, mode):
    """Of several files, a failed one reports the bad records met before its error, whether it
    was read here or in the worker (whose counts used to come only with its end)."""
    from chatloom.sources import chatgpt

    monkeypatch.setattr(chatgpt, "STREAM_ABOVE", 0)  # streamed: the error comes after the bad record
    monkeypatch.setenv("CHATLOOM_PARSE_PROCESS", mode)
    node = {"id": "a", "parent": None, "children": [], "message": {
        "id": "a", "author": {"role": "user"}, "content": {"content_type": "text", "parts": ["hi"]}, "metadata": {}}}
    good = {"title": "t", "mapping": {"a": node}, "current_node": "a", "id": "c0"}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "conversations.json").write_text(json.dumps([good, {"id": "x"}])[:-1] + ', {"x": [}]')
    (tmp_path / "b.jsonl").write_text('{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}\n')
    with Store(tmp_path / "d.db", create=True) as store:
        failed, ok = import_paths(store, [str(tmp_path / "a" / "conversations.json"), str(tmp_path / "b.jsonl")])
    assert failed.error and "not valid JSON" in failed.error and ok.error is None
    assert failed.bad == 1 and "$[1]: object missing required field `mapping`" in failed.examples[0]
