"""DiscordChatExporter exports (JSON, TXT, CSV): real ones from ../shared/fixtures/real and small files of our own for the edge cases."""

import json
import sys

import msgspec
import pytest

from chatloom.errors import SourceError
from chatloom.importing import ImportOptions, import_paths
from chatloom.sources import Reader, get_source
from chatloom.store import Store
from tests.sources.common import raises_as_cli_says, read


def test_discord_json(fixture):
    convs, reader, _ = read(fixture("discordchatexporter_general.json"), me=["adam"])
    assert reader.speakers == {"Adam": 18, "Thomas": 8, "Patrick": 5}
    assert reader.dropped["system message"] == 4  # joins and the thread notice
    conv = convs[0]
    assert conv.id == "discord:1012224565567721552:1045178587575242772"
    assert conv.title == "Example guild / Text Channels / general"
    roles = {m.name: m.role for m in conv.messages}
    assert roles == {"Adam": "assistant", "Thomas": "user", "Patrick": "user"}
    texts = [m.content for m in conv.messages]
    assert "[sticker: pepecute]" in texts
    assert any("[attachment: dce-export-more.png]" in t for t in texts)
    replies = [m.meta["reply_to"] for m in conv.messages if "reply_to" in m.meta]
    assert "1060926317920538735" in replies
    # consecutive messages of one speaker within 5 minutes are one turn
    assert "Good 👍\nI think we can start a fake conversation then" in texts[5]


def test_discord_no_attachments_and_gaps(fixture):
    path = fixture("discordchatexporter_general.json")
    with_placeholders, _, _ = read(path, me=["Adam"])
    without, reader, _ = read(path, me=["Adam"], attachments=False)
    joined = "\n".join(m.content for c in without for m in c.messages)
    assert "[attachment:" not in joined and "[sticker:" not in joined
    assert reader.dropped["empty message"] >= 2
    split, _, _ = read(path, me=["Adam"], session_gap="2m", min_turns=1)
    assert len(split) > len(with_placeholders)


def test_discord_txt_needs_a_date_order_when_the_file_cannot_tell(fixture):
    path = fixture("discordchatexporter_plaintext_DERIVED.txt")
    with raises_as_cli_says(SourceError, "--date-format"):
        read(path, me=["Adam"])
    convs, reader, _ = read(path, me=["Adam"], date_format="mdy")
    assert convs[0].messages[0].content.startswith("Welcome to the")
    assert convs[0].created_at == "2023-01-06T14:03:00"
    assert reader.dropped["system message"] == 2


def test_discord_csv_agrees_with_json(fixture):
    csv_convs, reader, _ = read(fixture("discordchatexporter_csv_DERIVED.csv"), me=["Adam"])
    json_convs, _, _ = read(fixture("discordchatexporter_general.json"), me=["Adam"])
    csv_texts = [m.content for m in csv_convs[0].messages]
    # DCE's CSV has no sticker column: the sticker-only message is empty there, and counted
    json_texts = [m.content for m in json_convs[0].messages if not m.content.startswith("[sticker:")]
    assert reader.dropped["empty message"] == 1
    # the CSV names attachments by their exported asset file (dce-export-more-662EF.png), so compare
    # the turns before the first attachment
    assert csv_texts[:8] == json_texts[:8]


def test_discord_txt_attachments(fixture):
    convs, reader, _ = read(fixture("discordchatexporter_txt_fixture.txt"), me=["Alice"])
    texts = [m.content for m in convs[0].messages]
    assert texts == ["Hello Discord!", "Hi Alice!\n[attachment: image.png]", "[sticker: 789.json]"]


def test_discord_streaming_handles_big_messages_and_truncation(tmp_path, fixture, monkeypatch):
    import chatloom.sources.discord as discord

    monkeypatch.setattr(discord, "CHUNK", 512)  # many chunks, messages larger than one
    src = fixture("discordchatexporter_general.json")
    small, _, _ = read(src, me=["Adam"])
    monkeypatch.undo()
    assert small == read(src, me=["Adam"])[0]
    cut = tmp_path / "cut.json"
    cut.write_bytes(src.read_bytes()[:-2000])
    with pytest.raises(SourceError, match=r"cut.json:\d+: .*truncated"):
        read(cut, "discord", me=["Adam"])


def test_discord_minified_json_falls_back_to_ijson(tmp_path, fixture):
    src = fixture("discordchatexporter_general.json")
    mini = tmp_path / "mini.json"
    mini.write_text(json.dumps(json.loads(src.read_text())))
    def key(convs):
        return [(c.id, c.title, c.meta, c.messages) for c in convs]

    assert key(read(mini, "discord", me=["Adam"])[0]) == key(read(src, me=["Adam"])[0])


def test_a_single_50_mb_message(tmp_path):
    big = "x" * (50 << 20)
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"guild": {"name": "g"}, "channel": {"id": "1", "name": "c"}, "messages": [
        {"id": "1", "type": "Default", "timestamp": "2024-01-01T00:00:00+00:00", "content": "hi", "author": {"name": "me"}},
        {"id": "2", "type": "Default", "timestamp": "2024-01-01T00:00:01+00:00", "content": big, "author": {"name": "you"}},
    ]}, indent=2))
    convs, _, _ = read(path, me=["me"])
    assert len(convs[0].messages[1].content) == len(big)


def _dce_txt(guild, posts):
    head = f"{'=' * 62}\nGuild: {guild}\nChannel: Text Channels / general\n{'=' * 62}\n\n"
    return head + "".join(f"[1/13/2023 2:{m:02d} PM] {who}\n{text}\n\n\n" for m, (who, text) in enumerate(posts, 20))


def test_discord_txt_ids_hold_the_guild_and_texts_keep_their_shape(tmp_path):
    """Every server has a 'Text Channels / general': two servers' exports are two chats. A
    paragraph in brackets after a blank line is text, a first line's indent stays, and DCE's
    'Added a recipient.' is a system message."""
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(_dce_txt("Server A", [("Ana#0001", "hello from A"), ("Bob", "hi")]))
    b.write_text(_dce_txt("Server B", [("Ana#0001", "First paragraph\n\n[Spoiler warning] the end is sad\nand more"),
                                       ("Bob", "Added a recipient."), ("Bob", "    indented code\n        more")]))  # fmt: skip
    with Store(tmp_path / "d.db", create=True) as store:
        results = import_paths(store, [str(a), str(b)], ImportOptions(me=["Ana"], min_turns=1))
        assert [r.counts.added for r in results] == [1, 1] and results[1].dropped == {"system message": 1}
        convs = {c.title: c for c in store.iter_conversations()}
    assert sorted(c.id for c in convs.values()) == ["discord:ServerA/TextChannels/general:2023-01-13T14:20:00",
                                                   "discord:ServerB/TextChannels/general:2023-01-13T14:20:00"]  # fmt: skip
    assert [m.content for m in convs["Server B / Text Channels / general"].messages] == [
        "First paragraph\n\n[Spoiler warning] the end is sad\nand more", "    indented code\n        more"]


def test_csv_errors_name_the_line_a_row_starts_on_and_fields_may_be_long(tmp_path):
    rows = ['"1","Ana","2023-01-13T10:00:00+00:00","a message\nof four\nlines\nhere","",""',
            '"2","Bob","NOT A DATE","x","",""', '"1","Ana","2023-01-13T10:02:00+00:00","' + "y" * 200_000 + '","",""']  # fmt: skip
    path = tmp_path / "c.csv"
    path.write_text("AuthorID,Author,Date,Content,Attachments,Reactions\n" + "\n".join(rows) + "\n")
    reader = Reader(str(path))
    convs = list(get_source("discord", me=["Ana"], min_turns=1).read(path, reader))
    assert reader.examples == [f"{path}:6: unreadable date and time 'NOT A DATE'"]
    assert [len(m.content) for c in convs for m in c.messages] == [len("a message\nof four\nlines\nhere\n") + 200_000]


def test_a_csv_cut_inside_a_quoted_field_is_an_error_not_a_short_message(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('AuthorID,Author,Date,Content,Attachments,Reactions\n"1","Ana","2023-01-13T10:00:00+00:00","hi","",""\n'
                    '"2","Bob","2023-01-13T10:01:00+00:00","cut in the mid')  # fmt: skip
    with pytest.raises(SourceError, match=r"c.csv:3: the file ends inside a quoted field \(truncated\?\)"):
        list(get_source("discord", me=["Ana"]).read(path, Reader(str(path))))


def test_discord_json_a_message_of_another_shape_is_a_bad_record_at_its_line(tmp_path, fixture):
    doc = json.loads(fixture("discordchatexporter_general.json").read_text(encoding="utf-8"))
    doc["messages"][3]["content"] = 5
    doc["messages"][5]["author"] = None
    path = tmp_path / "general.json"
    path.write_text(json.dumps(doc, indent=2))
    reader = Reader(str(path))
    (conv,) = get_source("discord", me=["Adam"]).read(path, reader)
    lines = path.read_text().splitlines()
    assert reader.bad_count == 2
    for example, message in zip(reader.examples, (doc["messages"][3], doc["messages"][5]), strict=True):
        n = int(example.split(":")[1])
        assert lines[n - 1] == "    {" and lines[n] == f'      "id": "{message["id"]}",', example
    assert conv.id.startswith("discord:1012224565567721552:")
    # the header is no record: of another shape, it is the file's error (issue 13)
    doc["guild"] = "a string"
    path.write_text(json.dumps(doc, indent=2))
    with pytest.raises(SourceError, match=r"general.json: not a DiscordChatExporter export: \$.guild: expected `object`, got `str`"):
        list(get_source("discord", me=["Adam"]).read(path, Reader(str(path))))


def test_discord_minified_json_reads_the_same_and_deep_nesting_is_refused(tmp_path, fixture):
    src = fixture("discordchatexporter_general.json")
    doc = json.loads(src.read_text(encoding="utf-8"))
    minified = tmp_path / src.name  # the same name: source.file is part of the output
    minified.write_text(json.dumps(doc))

    def read(path):
        return [msgspec.json.encode(c) for c in get_source("discord", me=["Adam"]).read(path, Reader(str(path)))]

    assert read(minified) == read(src) and read(src)
    deep = tmp_path / "deep.json"
    deep.write_text(json.dumps(doc).replace('"reactions": []', '"reactions": ' + "[" * 20_000 + "]" * 20_000, 1))
    with pytest.raises(SourceError, match="deep.json: nested too deeply to read"):
        read(deep)
    discord = sys.modules[type(get_source("discord")).__module__]
    with pytest.raises(SourceError, match="nested too deeply to read"):
        discord._check_depth(deep)  # the scan that guards the streamed path (files over 64 MB)


def test_deep_nesting_between_keys_is_refused_before_ijson_reads_the_file(tmp_path):
    """A minified export over 64 MB streams through ijson, whose memory grows with the square of
    the depth: nesting that never opens 256 brackets in a row (``[{"a":[{"a":…``) is refused too."""
    deep = tmp_path / "deep.json"
    deep.write_text('{"guild": {}, "channel": {"id": "1"}, "messages": [{"id": "1", "content": "x", "author": {"name": "A"}, "embeds": '
                    + '[{"a":' * 400 + "1" + "}]" * 400 + "}]}")  # fmt: skip
    discord = sys.modules[type(get_source("discord")).__module__]
    with pytest.raises(SourceError, match="deep.json: nested too deeply to read"):
        discord._check_depth(deep)


def test_a_message_id_twice_in_an_export_is_one_message(tmp_path, fixture):
    """Two exports of one channel pasted together hold messages twice: a message id is one
    message, in the streamed (indented) layout and in a minified one, next to its copy or far
    from it, and each copy left out is counted."""
    src = fixture("discordchatexporter_general.json")
    doc = json.loads(src.read_text(encoding="utf-8"))
    once = [m.content for c in read(src, me=["Adam"])[0] for m in c.messages]
    messages = doc["messages"]
    near, far = (next(i for i, m in enumerate(messages) if i >= k and m["type"] == "Default") for k in (5, 2))
    doc["messages"] = messages[: near + 1] + [messages[near]] + messages[near + 1 :] + [messages[far]]  # next to itself, and at the end
    for layout, dump in (("indented", lambda d: json.dumps(d, indent=2, ensure_ascii=False)), ("minified", json.dumps)):
        path = tmp_path / f"{layout}.json"
        path.write_text(dump(doc), encoding="utf-8")
        convs, reader, _ = read(path, "discord", me=["Adam"])
        assert [m.content for c in convs for m in c.messages] == once, layout
        assert reader.dropped["message id seen before"] == 2, layout
