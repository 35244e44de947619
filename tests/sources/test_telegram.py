"""Telegram Desktop result.json: one chat or a full export, in memory or streamed, and bad messages named by their line."""

import json
from datetime import UTC, datetime

import msgspec
import pytest

from chatloom.sources import Reader, get_source
from tests.sources.common import read


def test_telegram_single_and_full(fixture):
    convs, reader, _ = read(fixture("telegram_result_langchain.json"), me=["Batman & Robin"], min_turns=1)
    assert convs and reader.speakers == {"Jimmeny Marvelton": 3, "Batman & Robin": 1}
    full, _, _ = read(fixture("telegram_batch_export_chatminer.json"), me=["Author 1"])
    assert [m.content for m in full[0].messages] == ["Minimal Message", "Link:https://telegram.org/"]
    assert full[0].title == "Chatname"


def test_telegram_service_messages_and_replies(tmp_path):
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"name": "c", "type": "personal_chat", "id": 7, "messages": [
        {"id": 1, "type": "service", "date_unixtime": "1700000000", "actor": "Ana", "action": "phone_call"},
        {"id": 2, "type": "message", "date_unixtime": "1700000010", "from": "Ana", "from_id": "u1", "text": "hi"},
        {"id": 3, "type": "message", "date_unixtime": "1700000020", "from": "Ben", "from_id": "u2", "text": [{"type": "bold", "text": "yo"}, " there"], "reply_to_message_id": 2},
        {"id": 4, "type": "message", "date_unixtime": "1700000030", "from": "Ana", "from_id": "u1", "text": "", "photo": "photos/p.jpg"},
    ]}))
    convs, reader, _ = read(path, me=["Ana"])
    assert reader.dropped["service message"] == 1
    assert [m.content for m in convs[0].messages] == ["hi", "yo there", "[attachment: photo]"]
    assert convs[0].messages[1].meta["reply_to"] == "2"
    assert convs[0].id == "telegram:7:2"


def test_telegram_times_without_unix_time_stay_local_and_a_bad_message_is_one_bad_record(tmp_path, fixture):
    doc = json.loads(fixture("telegram_result_langchain.json").read_text(encoding="utf-8"))

    def read(changed, me="Jimmeny Marvelton"):
        path = tmp_path / "result.json"
        path.write_text(json.dumps(changed))
        reader = Reader(str(path))
        return list(get_source("telegram", me=[me], min_turns=1).read(path, reader)), reader

    with_unix, _ = read(doc)
    local = {**doc, "messages": [{k: v for k, v in m.items() if k != "date_unixtime"} for m in doc["messages"]]}
    without, _ = read(local)
    # the same instants: 'date' is the exporter's local time, written here with no offset (not as UTC)
    first = doc["messages"][0]
    assert without[0].messages[0].meta["time"] == first["date"]
    stamp = datetime.fromisoformat(with_unix[0].messages[0].meta["time"])
    assert stamp == datetime.fromtimestamp(int(first["date_unixtime"]), UTC)
    bad = {**doc, "messages": [{**doc["messages"][0], "from": 12345}, *doc["messages"][1:]]}
    convs, reader = read(bad)
    assert reader.bad_count == 1 and "result.json:1: $.messages[" in reader.examples[0] and convs  # json.dumps: one line


def test_a_bad_telegram_message_is_named_by_its_line(tmp_path):
    """The line of the bad message's "id" in its own chat (ids repeat across the chats of a full
    export); its JSON path when it has no id."""

    def chat(cid, messages):
        return {"name": f"chat {cid}", "type": "personal_chat", "id": cid, "messages": messages}

    def msg(mid, author="Ann", **extra):
        return {"id": mid, "type": "message", "date": "2023-01-01T10:00:00", "date_unixtime": "1672567200", "from": author, "text": "hi", **extra}

    def bad_where(doc):
        path = tmp_path / "result.json"
        path.write_text(json.dumps(doc, indent=1))
        reader = Reader(str(path))
        list(get_source("telegram", me=["Ann"], min_turns=1).read(path, reader))
        lines = path.read_text().splitlines()
        return [e.split(":")[1] for e in reader.examples], lines

    full = {"about": "telegram.org", "chats": {"list": [chat(1, [msg(7), msg(8), msg(9)]), chat(2, [msg(7), msg(8, author=5), msg(9, author=6)])]}}
    (eight, nine), lines = bad_where(full)
    assert [lines[int(n) - 1].strip() for n in (eight, nine)] == ['"id": 8,', '"id": 9,']
    assert next(i for i, line in enumerate(lines) if '"id": 2,' in line) < int(eight) < int(nine)
    (where,), _ = bad_where(chat(3, [msg(1), {"type": "message", "from": 5, "text": "no id"}]))
    assert where.strip().startswith("$.messages[1].from")
    # an id written last (no comma after it) is not found: the path, not a line of the next chat
    last = {"type": "message", "date_unixtime": "1672567200", "from": 5, "text": "x", "id": 9}
    (where,), _ = bad_where({"chats": {"list": [chat(1, [msg(7), last]), chat(2, [msg(7), msg(9)])]}})
    assert where.strip().startswith("$.chats.list[0].messages[1].from")


def test_telegram_a_file_the_export_left_out_is_named_by_its_kind(tmp_path):
    msgs = [{"id": 1, "type": "message", "date": "2023-08-23T13:11:23", "from": "Ana", "text": "hi"},
            {"id": 2, "type": "message", "date": "2023-08-23T13:12:23", "from": "Bea", "text": "",
             "file": "(File not included. Change data exporting settings to download.)", "media_type": "voice_message"}]  # fmt: skip
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"name": "c", "type": "personal_chat", "id": 1, "messages": msgs}))
    (conv,) = get_source("telegram", me=["Ana"]).read(path, Reader(str(path)))
    assert conv.messages[1].content == "[attachment: voice_message]"


@pytest.mark.parametrize("name", ["telegram_result_langchain.json", "telegram_batch_export_chatminer.json"])
def test_telegram_streamed_reads_as_in_memory(fixture, monkeypatch, tmp_path, name):
    """Files over 256 MB stream through ijson: the same conversations, and a bad message named by
    its JSON path there (the text is not held)."""
    from chatloom.sources import telegram

    doc = json.loads(fixture(name).read_text(encoding="utf-8"))
    chats = doc["chats"]["list"] if "chats" in doc else [doc]
    chats[-1]["messages"].append({"id": 999, "type": "message", "date_unixtime": "x", "from": "A", "text": "bad"})
    path = tmp_path / "result.json"
    path.write_text(json.dumps(doc, indent=1))
    me = chats[0]["messages"][0]["from"]

    def read_all():
        reader = Reader(str(path))
        convs = list(get_source("telegram", me=[me], min_turns=1).read(path, reader))
        return [msgspec.json.encode(c) for c in convs], reader.examples

    whole, bad_whole = read_all()
    monkeypatch.setattr(telegram, "STREAM_ABOVE", 0)
    streamed, bad_streamed = read_all()
    assert streamed == whole and whole
    prefix = f"$.chats.list[{len(chats) - 1}]" if "chats" in doc else "$"
    assert bad_whole[0].split(": ", 1)[1].startswith(f"{prefix}.messages[{len(chats[-1]['messages']) - 1}]: ")
    assert bad_streamed == [f"{path}: " + bad_whole[0].split(": ", 1)[1]]
