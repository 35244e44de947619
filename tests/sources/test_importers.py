"""Every real export in ../shared/fixtures/real, plus small files of our own for the edge cases."""

import json
import sys
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatloom.errors import SourceError, UsageError
from chatloom.importing import import_paths, plan
from chatloom.sources import Reader, dates, detect, get_source, records
from chatloom.sources.stream import Post, Sessionizer
from chatloom.store import Store


def read(path, fmt=None, **options):
    source = get_source(fmt, **options) if fmt else detect(path, **options)
    reader = Reader(str(path))
    return list(source.read(path, reader)), reader, source.name


# -- detection ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("discordchatexporter_general.json", "discord"),
        ("discordchatexporter_thread.json", "discord"),
        ("discordchatexporter_plaintext_DERIVED.txt", "discord"),
        ("discordchatexporter_csv_DERIVED.csv", "discord"),
        ("discordchatexporter_txt_fixture.txt", "discord"),
        ("whatsapp_ios_langchain.txt", "whatsapp"),
        ("whatsapp_mixed_formats_langchain.txt", "whatsapp"),
        ("whatsapp_android_ddmmyy_24h_chatminer.txt", "whatsapp"),
        ("whatsapp_android_mmddyyyy_12h_es_chatminer.txt", "whatsapp"),
        ("whatsapp_ios_brackets_mmddyy_24h_chatminer.txt", "whatsapp"),
        ("telegram_result_langchain.json", "telegram"),
        ("telegram_batch_export_chatminer.json", "telegram"),
        ("chatgpt_conversations.json", "chatgpt"),
        ("kajiwoto_kajitool_layout_SYNTHETIC.csv", "kajiwoto"),
        ("limagui_v0.6.1_chatgpt_chats.jsonl", "lima"),
        ("limagui_v0.6.1_function_calling.jsonl", "lima"),
        ("llamafactory_alpaca_en_demo_first3.json", "alpaca"),
        ("llamafactory_sharegpt_toolcall_demo_first2.json", "sharegpt"),
        ("llamafactory_sharegpt_dpo_demo_first2.json", "sharegpt"),
        ("llamafactory_v1_sft_demo_first3.jsonl", "llamafactory"),
    ],
)
def test_every_fixture_is_detected(fixture, name, fmt):
    assert detect(fixture(name)).name == fmt


# -- Discord --------------------------------------------------------------------------------------


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
    with pytest.raises(SourceError, match="--date-format"):
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


def test_without_me_the_speakers_are_listed(fixture, tmp_path):
    with Store(tmp_path / "d.db", create=True) as store:
        with pytest.raises(UsageError, match=r"Speakers: Adam \(18\), Thomas \(8\), Patrick \(5\)\. Pass --me"):
            import_paths(store, [str(fixture("discordchatexporter_general.json"))])
        assert store.count() == 0


def test_reimport_and_a_later_export_add_only_what_is_new(fixture, tmp_path):
    src = json.loads(fixture("discordchatexporter_general.json").read_text())
    early = dict(src, messages=src["messages"][:20])
    (tmp_path / "early.json").write_text(json.dumps(early, indent=2))
    (tmp_path / "late.json").write_text(json.dumps(src, indent=2))
    with Store(tmp_path / "d.db", create=True) as store:
        first = import_paths(store, [str(tmp_path / "early.json")], source_options={"me": ["Adam"], "min_turns": 1})
        again = import_paths(store, [str(tmp_path / "early.json")], source_options={"me": ["Adam"], "min_turns": 1})
        later = import_paths(store, [str(tmp_path / "late.json")], source_options={"me": ["Adam"], "min_turns": 1})
    assert first[0].counts.added == 1
    assert again[0].counts.added == 0 and again[0].counts.unchanged == 1
    # the first session grew (updated), the session after the one-hour silence is new (added)
    assert (later[0].counts.updated, later[0].counts.added) == (1, 1)


# -- WhatsApp -------------------------------------------------------------------------------------


def test_whatsapp_ios(fixture):
    convs, reader, _ = read(fixture("whatsapp_ios_langchain.txt"), me=["Dr. Feather"])
    assert reader.dropped["system line"] == 1  # the end-to-end encryption notice
    msgs = convs[0].messages
    assert msgs[0].role == "assistant" and msgs[0].content.startswith("I spotted a rare Hyacinth Macaw")
    assert "[attachment: image]" in msgs[0].content
    assert "\u200e" not in "".join(m.content for m in msgs)
    assert msgs[1].name == "Jungle Jane"


@pytest.mark.parametrize(
    "name, first",
    [
        ("whatsapp_android_ddmmyy_24h_chatminer.txt", "2019-01-01T11:25:00"),
        ("whatsapp_android_mmddyyyy_12h_es_chatminer.txt", "2019-01-01T11:25:00"),
        ("whatsapp_ios_brackets_mmddyy_24h_chatminer.txt", "2019-01-01T11:25:00"),
    ],
)
def test_whatsapp_locales(fixture, name, first):
    convs, reader, _ = read(fixture(name), me=["John Doe"], min_turns=1, session_gap="100d")
    messages = [m for c in convs for m in c.messages]
    assert messages[0].meta["time"] == first
    assert "Lorem ipsum dolor sit amet,\nconsectetur adipiscing elit. Duis libero." in [m.content for m in messages]
    assert reader.dropped["system line"] == 2  # created group, you were added
    assert reader.speakers["John-John Doe"] == 1 and reader.speakers["🤓"] == 1
    times = [m.meta["time"] for m in messages]
    assert times == sorted(times)


def test_whatsapp_spanish_pm(fixture):
    convs, _, _ = read(fixture("whatsapp_android_mmddyyyy_12h_es_chatminer.txt"), me=["Jahn Doe"], min_turns=1, session_gap="1000d")
    jahn = [m for c in convs for m in c.messages if m.name == "Jahn Doe"][0]
    assert jahn.meta["time"] == "2019-01-30T20:49:00"  # 08:49 p. m.


def test_whatsapp_mixed_layouts(fixture):
    convs, reader, _ = read(fixture("whatsapp_mixed_formats_langchain.txt"), me=["User 1"], min_turns=1, session_gap="10000d")
    names = {m.name for c in convs for m in c.messages}
    assert {"User 1", "User 2", "User name 2"} <= names  # "~ User name 2" without the ~
    assert reader.dropped["deleted message"] == 1


def test_whatsapp_ambiguous_dates(tmp_path):
    path = tmp_path / "chat.txt"
    path.write_text("01/02/23, 10:00 - Ana: hi\n01/02/23, 10:01 - Ben: hello\n")
    with pytest.raises(SourceError, match="dmy or mdy"):
        read(path, "whatsapp", me=["Ana"])
    convs, _, _ = read(path, "whatsapp", me=["Ana"], date_format="dmy")
    assert convs[0].created_at == "2023-02-01T10:00:00"


# -- Telegram, ChatGPT ----------------------------------------------------------------------------


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


def test_chatgpt_branches(fixture, tmp_path):
    path = fixture("chatgpt_conversations.json")
    convs, _, _ = read(path)
    regen = [c for c in convs if "Hello, can you help?" in c.messages[0].content][0]
    assert regen.messages[-1].content == "Sure thing! What do you need?"  # current_node's branch
    assert regen.id.startswith("chatgpt:") and regen.id.count(":") == 1
    every, _, _ = read(path, all_branches=True)
    assert len(every) == len(convs) + 1
    alt = [c for c in every if c.meta.get("branch") == "alternative"][0]
    assert alt.messages[-1].content == "Of course! How can I assist you?"
    # the export comes as a zip
    zipped = tmp_path / "export.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.write(path, "conversations.json")
        z.writestr("user.json", '{"id": "u"}')
        z.writestr("file-abc.png", b"\x89PNG" + bytes(64))
        z.writestr("../evil.txt", "x")
    with pytest.raises(SourceError, match="unsafe path in the zip: ../evil.txt"):
        plan([str(zipped)])
    clean = tmp_path / "clean.zip"
    with zipfile.ZipFile(zipped) as src, zipfile.ZipFile(clean, "w") as dst:
        for member in src.infolist():
            if member.filename != "../evil.txt":
                dst.writestr(member, src.read(member))
    files = plan([str(clean)])
    assert [(f.name, s.name) for f, s, _ in files] == [("conversations.json", "chatgpt")]
    assert not list(files[0][0].parent.glob("*.png"))  # images stay packed
    from chatloom.importing import display_name

    assert display_name(files[0][0]) == f"{clean}!conversations.json"


# -- record formats -------------------------------------------------------------------------------


def test_sharegpt_tool_calls_and_preferences(fixture):
    convs, _, _ = read(fixture("llamafactory_sharegpt_toolcall_demo_first2.json"))
    msgs = convs[0].messages
    call = [m for m in msgs if m.tool_calls][0]
    result = [m for m in msgs if m.role == "tool"][0]
    assert call.tool_calls[0]["function"]["name"] == "search_recipes"
    assert result.tool_call_id == call.tool_calls[0]["id"]
    assert convs[0].tools and convs[0].tools[0]["type"] == "function"
    dpo, _, _ = read(fixture("llamafactory_sharegpt_dpo_demo_first2.json"))
    assert dpo[0].messages[-1].role == "assistant" and "rejected" in dpo[0].meta


def test_alpaca_history(tmp_path, fixture):
    convs, _, _ = read(fixture("llamafactory_alpaca_en_demo_first3.json"))
    assert [m.role for m in convs[0].messages] == ["user", "assistant"]
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"instruction": "And now?", "input": "ctx", "output": "Now.", "system": "S", "history": [["q1", "a1"]]}) + "\n")
    (conv,), _, _ = read(path, "alpaca")
    assert [(m.role, m.content) for m in conv.messages] == [
        ("system", "S"), ("user", "q1"), ("assistant", "a1"), ("user", "And now?\n\nctx"), ("assistant", "Now."),
    ]


def test_llamafactory_loss_weight(fixture):
    convs, _, _ = read(fixture("llamafactory_v1_sft_demo_first3.jsonl"))
    assert [(m.role, m.train) for m in convs[0].messages] == [("user", False), ("assistant", True)]
    assert convs[0].messages[0].content == "hi"


def test_lima(fixture, tmp_path):
    convs, _, _ = read(fixture("limagui_v0.6.1_chatgpt_chats.jsonl"))
    assert convs[0].title == "Nucleus sampling" and convs[0].language == "en"
    assert convs[0].tags == ["conversational", "world qa"]
    calls, _, _ = read(fixture("limagui_v0.6.1_function_calling.jsonl"))
    assert any(m.tool_calls for c in calls for m in c.messages) and calls[0].tools
    old = tmp_path / "old.csv"
    old.write_text('chat,name\n"[{""role"": ""user"", ""content"": ""hi""}, {""role"": ""assistant"", ""content"": ""yo""}]",greet\n')
    (conv,), _, name = read(old)
    assert name == "lima" and conv.title == "greet" and conv.messages[1].content == "yo"


def test_kajiwoto(fixture):
    convs, _, _ = read(fixture("kajiwoto_kajitool_layout_SYNTHETIC.csv"))
    by_id = {c.id: c for c in convs}
    assert [m.content for m in by_id["kajiwoto:a1B2"].messages] == ["Hi!", "Hello {{user}}!"]
    follow_up = by_id["kajiwoto:c3D4"]
    assert [m.content for m in follow_up.messages] == ["Hi!", "Hello {{user}}!", "How are you?", "I'm great!"]
    assert by_id["kajiwoto:e5F6"].meta["kajiwoto"]["duplicate_ids"] == "a1B2"
    assert sum(1 for c in convs if c.id is None) == 1  # the row without an ID: the store derives one


def test_text_documents(tmp_path):
    path = tmp_path / "story.txt"
    path.write_text("Once upon a time.\n\nThe end.\n")
    (whole,), _, _ = read(path, "text")
    assert whole.messages[0].content == "Once upon a time.\n\nThe end."
    blocks, _, _ = read(path, "text", text_blocks=True)
    assert [c.messages[0].content for c in blocks] == ["Once upon a time.", "The end."]
    assert blocks[1].source["locator"] == "line 3"


def test_bad_records_in_record_formats(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"conversations": [{"from": "human", "value": "hi"}]}\n{"conversations": [{"from": "alien", "value": "x"}]}\n{oops\n')
    convs, reader, _ = read(path, "sharegpt")
    assert len(convs) == 1 and reader.bad_count == 2
    assert reader.examples[0].endswith(":2: $.conversations[0].from: unknown role 'alien'")


def test_a_single_50_mb_message(tmp_path):
    big = "x" * (50 << 20)
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"guild": {"name": "g"}, "channel": {"id": "1", "name": "c"}, "messages": [
        {"id": "1", "type": "Default", "timestamp": "2024-01-01T00:00:00+00:00", "content": "hi", "author": {"name": "me"}},
        {"id": "2", "type": "Default", "timestamp": "2024-01-01T00:00:01+00:00", "content": big, "author": {"name": "you"}},
    ]}, indent=2))
    convs, _, _ = read(path, me=["me"])
    assert len(convs[0].messages[1].content) == len(big)


# -- sessions, and a property test: render into each stream format and read back ----------------


def test_sessionizer_rules():
    t0 = datetime(2024, 1, 1, 12, 0)
    posts = [Post("ana", "a", t0), Post("ana", "b", t0 + timedelta(minutes=4)), Post("ben", "c", t0 + timedelta(minutes=5)),
             Post("ana", "d", t0 + timedelta(hours=3)), Post("ben", "e", t0 + timedelta(hours=3, minutes=1)),
             Post("ben", "f", t0 + timedelta(hours=6))]  # fmt: skip
    reader = Reader("x")
    convs = list(Sessionizer({"me": ["ANA"]}, reader).conversations(posts, fmt="t", chat_id="c", file="x"))
    assert [[(m.role, m.content) for m in c.messages] for c in convs] == [
        [("assistant", "a\nb"), ("user", "c")],
        [("assistant", "d"), ("user", "e")],
    ]
    assert reader.dropped == {"fewer than 2 turns": 1}


words = st.text(st.characters(whitelist_categories=("L", "N"), max_codepoint=0x2FF), min_size=1, max_size=12)


def _reference_sessions(posts, me, merge_gap, session_gap, min_turns):
    """DESIGN §3's rules, written the plain way: cut sessions, then merge turns within each."""
    sessions, last = [], None
    for post in posts:
        if sessions and post.time is not None and last is not None and post.time - last > session_gap:
            sessions.append([])
        elif not sessions:
            sessions.append([])
        sessions[-1].append(post)
        last = post.time or last
    out = []
    for session in sessions:
        turns = []
        for prev, post in zip([None, *session], session):
            if prev is not None and post.author == prev.author and (
                    post.time is None or prev.time is None or post.time - prev.time <= merge_gap):  # fmt: skip
                turns[-1][1] += "\n" + post.text
            else:
                turns.append([post.author, post.text, post.time, post.id])
        if len(turns) >= min_turns and any(a in me for a, *_ in turns):
            out.append([("assistant" if a in me else "user", a, text, t.isoformat() if t else None, i) for a, text, t, i in turns])
    return out


times = st.one_of(st.none(), st.integers(0, 200).map(lambda m: timedelta(minutes=m)))


@given(spec=st.lists(st.tuples(st.sampled_from(["ana", "ben"]), words, times, st.one_of(st.none(), words)), max_size=30),
       merge=st.sampled_from([0, 5, 60]), gap=st.sampled_from([30, 60, 180]), min_turns=st.integers(1, 3))  # fmt: skip
@settings(max_examples=300, deadline=None)
def test_sessionizer_follows_the_rules_with_and_without_times(spec, merge, gap, min_turns):
    t, posts = datetime(2024, 1, 1), []
    for author, text, step, pid in spec:
        t += step or timedelta()
        posts.append(Post(author, text, t if step is not None else None, pid))
    reader = Reader("x")
    options = {"me": ["ANA"], "merge_gap": f"{merge}m", "session_gap": f"{gap}m", "min_turns": min_turns}
    got = list(Sessionizer(options, reader).conversations(posts, fmt="t", chat_id="c", file="x"))
    assert [[(m.role, m.name, m.content, m.meta.get("time"), m.meta.get("id")) for m in c.messages] for c in got] == (
        _reference_sessions(posts, {"ana"}, timedelta(minutes=merge), timedelta(minutes=gap), min_turns))
    assert reader.speakers == Counter(p.author for p in posts)


offsets = st.one_of(st.none(), st.just(UTC), st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m))),
                    st.integers(-50000, 50000).map(lambda s: timezone(timedelta(seconds=s))))  # fmt: skip


@given(when=st.datetimes(), zone=offsets)
def test_iso_times_are_isoformat(when, zone):
    when = when.replace(tzinfo=zone)
    assert dates.iso(when) == when.isoformat()


@pytest.mark.parametrize(("written", "seconds"), [
    ("9:12:43 AM", 9 * 3600 + 12 * 60 + 43), ("11:32\u202fPM", 23 * 3600 + 32 * 60), ("11:25 a.\u00a0m.", 11 * 3600 + 25 * 60),
    ("12:05 a. m.", 5 * 60), ("12:05 PM", 12 * 3600 + 5 * 60), ("3:07_pm", 15 * 3600 + 7 * 60), (" 14:22 ", 14 * 3600 + 22 * 60),
    ("15:48:11.250", 15 * 3600 + 48 * 60 + 11), ("0:00", 0), ("14.22", 14 * 3600 + 22 * 60), ("12.00.05", 12 * 3600 + 5),
])  # fmt: skip
def test_times_in_the_exporters_layouts(written, seconds):
    assert dates.seconds_of_day(written) == seconds


@pytest.mark.parametrize("written", ["25:20", "9:60", "9:12:61", "9:12 XM", "9", "9:1", "\u202f25:05\u202f", "25:13:00 AM", "13:05 PM"])
def test_unreadable_times_name_the_cleaned_time(written):
    with pytest.raises(ValueError, match=f"^unreadable time '{dates.clean_time(written)}'$"):
        dates.seconds_of_day(written)


def _render(kind, posts, path):
    if kind == "whatsapp":
        # the first line, a day above 12 on its own, tells the date order (and is dropped: no --me in it)
        path.write_text("[13/12/2023, 00:00:00] x: pin\n" +
                        "".join(f"[{p.time:%d/%m/%Y}, {p.time:%H:%M:%S}] {p.author}: {p.text}\n" for p in posts), encoding="utf-8")
    elif kind == "discord":
        path.write_text(json.dumps({"guild": {"name": "g"}, "channel": {"id": "9", "name": "c"}, "messages": [
            {"id": str(i), "type": "Default", "timestamp": p.time.isoformat() + "+00:00", "content": p.text, "author": {"name": p.author}}
            for i, p in enumerate(posts)]}, indent=2))  # fmt: skip
    else:
        path.write_text(json.dumps({"name": "c", "id": 9, "messages": [
            {"id": i, "type": "message", "date": p.time.isoformat(), "from": p.author, "from_id": p.author, "text": p.text}
            for i, p in enumerate(posts)]}))  # fmt: skip


post_lists = st.lists(st.tuples(st.sampled_from(["ana", "ben", "cy"]), st.lists(words, min_size=1, max_size=4).map(" ".join),
                                st.integers(1, 200)), min_size=1, max_size=25)  # fmt: skip


@pytest.mark.parametrize("kind", ["whatsapp", "discord", "telegram"])
@given(spec=post_lists)
@settings(max_examples=40, deadline=None)
def test_stream_formats_read_back_what_was_written(tmp_path_factory, kind, spec):
    t = datetime(2024, 1, 1)
    posts = []
    for author, text, gap in spec:
        t += timedelta(minutes=gap)
        posts.append(Post(author, text, t))
    path = tmp_path_factory.mktemp(kind) / ("chat.txt" if kind == "whatsapp" else "chat.json")
    _render(kind, posts, path)
    options = {"me": ["ana"], "min_turns": 1}
    expected = list(Sessionizer(options, Reader("x")).conversations(posts, fmt=kind, chat_id="c", file="x"))
    got, _, name = read(path, kind, **options)
    assert name == kind
    assert [[(m.role, m.name, m.content) for m in c.messages] for c in got] == [
        [(m.role, m.name, m.content) for m in c.messages] for c in expected
    ]


def test_utf16_exports_are_converted(fixture, tmp_path):
    path = tmp_path / "chat.txt"
    path.write_bytes(fixture("whatsapp_ios_langchain.txt").read_text(encoding="utf-8").encode("utf-16"))
    with Store(tmp_path / "d.db", create=True) as store:
        (result,) = import_paths(store, [str(path)], source_options={"me": ["Dr. Feather"]})
        assert result.format == "whatsapp" and result.counts.added == 1 and result.file == str(path)
        assert store.count() == 1


def test_a_forced_format_that_does_not_fit_is_an_error(fixture):
    with pytest.raises(SourceError, match="this file is not in the discord format; it looks like whatsapp"):
        plan([str(fixture("whatsapp_ios_langchain.txt"))], "discord")
    with pytest.raises(SourceError, match="this file is not in the alpaca format; it looks like chatgpt"):
        plan([str(fixture("chatgpt_conversations.json"))], "alpaca")


def test_a_first_record_longer_than_the_head_is_still_recognized(tmp_path, fixture):
    """Detection reads 64 KB; a first record (or a first message) longer than that must not make
    a file unreadable, detected or forced with -f."""
    long = "w " * 50_000
    chatgpt = json.loads(fixture("chatgpt_conversations.json").read_text(encoding="utf-8"))
    for node in chatgpt[0]["mapping"].values():
        if node.get("message") and node["message"]["author"]["role"] == "assistant":
            node["message"]["content"]["parts"] = [long]
    files = {
        "chatgpt": ("cg.json", json.dumps(chatgpt)),
        "alpaca": ("al.json", json.dumps([{"instruction": "a", "output": long}])),
        "llamafactory": ("lf.jsonl", json.dumps({"messages": [
            {"role": "user", "content": [{"type": "text", "value": "q"}], "loss_weight": 0.0},
            {"role": "assistant", "content": [{"type": "text", "value": long}], "loss_weight": 1.0}]}) + "\n"),
        "kajiwoto": ("k.csv", 'a1,"Hi\nthere",Hello,emotion_any,attachment_any,daytime_any,seen_any,false,EMPTY,EMPTY\n'),
        "whatsapp": ("w.txt", "[1/13/23, 9:00:00 AM] Ana: a paste\n" + "pasted line\n" * 30 + "[1/13/23, 9:01:00 AM] Bea: ok\n"),
        # Telegram Desktop's full export: "about", then the contacts (long), then the chats
        "telegram": ("result.json", json.dumps({
            "about": "Here is the data you requested. Find out more at https://telegram.org/faq",
            "contacts": {"list": [{"first_name": f"Contact {i}", "phone_number": "+1 555 0100" + str(i)} for i in range(1000)]},
            **json.loads(fixture("telegram_batch_export_chatminer.json").read_text(encoding="utf-8"))}, indent=1)),
    }  # fmt: skip
    for fmt, (name, text) in files.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        for forced in ("auto", fmt):
            ((_, source, _),) = plan([str(path)], forced, me=["Ana", "Author 1"])
            assert source.name == fmt, (name, forced)
        got = list(source.read(path, Reader(str(path))))
        assert got, name
    lf = list(get_source("llamafactory").read(tmp_path / "lf.jsonl", Reader("x")))
    assert lf[0].messages[1].content == long.strip() or lf[0].messages[1].content == long


def _one_error_line(result, name):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {name}"), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_a_reader_fault_on_an_unexpected_shape_is_one_line_naming_the_file(tmp_path, run):
    """Shapes no reader expected (a number for a list, nesting past the recursion limit, a
    damaged zip member) are one error line about the file, not a traceback; nothing written."""
    nested = '{"messages":[{"role":"user","content":"q"}],"meta":{"x":' + "[" * 100_000 + "]" * 100_000 + "}}\n"
    (tmp_path / "deep.jsonl").write_text(nested)
    with zipfile.ZipFile(tmp_path / "export.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("conversations.json", json.dumps([{"title": "t" * 5000, "mapping": {}, "current_node": None}]))
    damaged = bytearray((tmp_path / "export.zip").read_bytes())
    damaged[200] ^= 0xFF
    (tmp_path / "damaged.zip").write_bytes(bytes(damaged))
    (tmp_path / "cut.zip").write_bytes(damaged[:150])
    for name, says in [("deep.jsonl", "nested too deeply"),
                       ("damaged.zip", "not a readable zip file"), ("cut.zip", "cut short or damaged")]:  # fmt: skip
        db = tmp_path / f"{name}.db"
        line = _one_error_line(run("import", "-d", str(db), str(tmp_path / name)), str(tmp_path / name))
        assert says in line, line
        assert not db.exists() or Store(db).count() == 0


def test_a_record_field_of_the_wrong_shape_is_a_bad_record_skipped_and_counted(tmp_path):
    records = {
        "alpaca": [{"instruction": "a", "output": "b", "history": 5}, {"instruction": "c", "output": "d"}],
        "sharegpt": [{"conversations": [{"from": "human", "value": None}, {"from": "gpt", "value": "x"}]},
                     {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}],
        "lima": [{"name": "n", "lang": ["en"], "messages": [{"role": "user", "content": "q"}]},
                 {"name": "n", "tags": "abc", "messages": [{"role": "user", "content": "q"}]},
                 {"name": "n", "lang": "en", "tags": ["t"], "messages": [{"role": "user", "content": "q"}]}],
    }  # fmt: skip
    for fmt, items in records.items():
        path = tmp_path / f"{fmt}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in items))
        reader = Reader(str(path))
        got = list(get_source(fmt).read(path, reader))
        assert len(got) == 1 and reader.bad_count == len(items) - 1, (fmt, reader.examples)
        assert all("expected" in e or f"not a valid {fmt} record" in e for e in reader.examples), reader.examples


def test_errors_name_the_users_file_not_chatlooms_utf8_copy(tmp_path, run, fixture):
    utf16 = tmp_path / "chat16.txt"
    utf16.write_text(fixture("discordchatexporter_plaintext_DERIVED.txt").read_text(encoding="utf-8"), encoding="utf-16")
    line = _one_error_line(run("import", "-d", str(tmp_path / "t.db"), "--me", "x", str(utf16)), str(utf16))
    assert "chatloom-utf8" not in line and "--date-format" in line


@pytest.mark.parametrize("name", ["chatgpt_conversations.json", "telegram_result_langchain.json", "telegram_batch_export_chatminer.json",
                                  "discordchatexporter_general.json", "discordchatexporter_thread.json"])  # fmt: skip
def test_json_exports_with_a_utf8_bom_read_the_same(tmp_path, fixture, name):
    src = fixture(name)
    bom = tmp_path / name
    bom.write_bytes(b"\xef\xbb\xbf" + src.read_bytes())

    def read(path):
        source, reader = detect(path, me=["Bob", "Adam", "Jiman", "Jimmeny Marvelton", "Author 1"]), Reader(str(path))
        return [msgspec.json.encode(c) for c in source.read(path, reader)], reader.bad_count

    assert read(bom) == read(src) and read(src)[0]


def _wa(tmp_path, text, name="chat.txt", **options):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    reader = Reader(str(path))
    convs = list(get_source("whatsapp", me=["Ana"], min_turns=1, **options).read(path, reader))
    return [(m.name, m.content) for c in convs for m in c.messages], reader


def test_whatsapp_a_line_that_starts_with_a_date_and_time_continues_the_message(tmp_path):
    got, reader = _wa(tmp_path, "1/2/23, 10:00 - Ana: Plan:\n1/3/23, 10:00 works for me\nNote: bring snacks\n1/20/23, 10:01 - Bob: ok\n", session_gap="30d")
    assert got == [("Ana", "Plan:\n1/3/23, 10:00 works for me\nNote: bring snacks"), ("Bob", "ok")]
    assert not reader.dropped


def test_whatsapp_odd_spaces_in_a_m_p_m_and_dotted_times(tmp_path):
    got, _ = _wa(tmp_path, "13/01/2019, 11:25 a.\u00a0m. - Ana: uno\n13/01/2019, 11:26 p.\u202fm. - Bea: dos\n")
    assert got == [("Ana", "uno")]  # Bea at 23:26 is another session, without Ana
    got, _ = _wa(tmp_path, "[1.1.2019, 12.00.00] Ana: Hello\n[1.1.2019, 12.00.05] Bea: Hey!\n[13.1.2019, 12.00.10] Ana: x\n")
    assert got == [("Ana", "Hello"), ("Bea", "Hey!"), ("Ana", "x")]


def test_whatsapp_ios_notices_marks_edits_and_documents(tmp_path):
    lrm = "\u200e"
    text = "".join(f"[15/08/2023, 9:{m:02d}:00\u202fAM] {line}\n" for m, line in enumerate([
        f"Bea: {lrm}Messages to this chat and calls are now secured with end-to-end encryption.",
        "Ana: hi", f"Bea: {lrm}Your security code with Bea changed. Tap to learn more.", f"Bea: {lrm}Missed voice call",
        f"Bea: hello {lrm}there", f"Ana: {lrm}This message was deleted.", f"Bea: edited text {lrm}<This message was edited>",
        f"Bea: report • {lrm}3 pages {lrm}document omitted", f"Friends: {lrm}Ana added Bea", f"Ana: {lrm}I left early",
    ]))  # fmt: skip
    got, reader = _wa(tmp_path, text, merge_gap="0")
    assert got == [("Ana", "hi"), ("Bea", "hello there"), ("Bea", "edited text"), ("Bea", "[attachment: report]"), ("Ana", "I left early")]
    assert reader.dropped == {"system line": 4, "deleted message": 1}


def test_whatsapp_android_attached_files_keep_their_caption(tmp_path):
    text = ("15/08/2023, 09:13 - Ana: hi\n15/08/2023, 09:14 - Bea: IMG-20230815-WA0001.jpg (file attached)\nnice view\n"
            "15/08/2023, 09:15 - Ana: PTT-20230815-WA0002.opus (file attached)\n15/08/2023, 09:16 - Bea: ok <This message was edited>\n")  # fmt: skip
    got, _ = _wa(tmp_path, text, merge_gap="0")
    assert got == [("Ana", "hi"), ("Bea", "[attachment: IMG-20230815-WA0001.jpg]\nnice view"),
                   ("Ana", "[attachment: PTT-20230815-WA0002.opus]"), ("Bea", "ok")]  # fmt: skip
    got, reader = _wa(tmp_path, text, merge_gap="0", attachments=False)
    assert got == [("Ana", "hi"), ("Bea", "nice view"), ("Bea", "ok")] and reader.dropped["attachment"] == 1


def test_whatsapp_crlf_lines_and_text_before_the_first_message(tmp_path):
    got, reader = _wa(tmp_path, "stray\r\n13/01/2023, 10:00 - Ana: line one\r\nline two\r\n13/01/2023, 10:01 - Bea: ok\r\n")
    assert got == [("Ana", "line one\nline two"), ("Bea", "ok")]
    assert reader.dropped == {"text before the first message": 1}


def test_whatsapp_ios_chat_txt_is_named_by_its_zip_or_folder(tmp_path):
    text = "[15/08/2023, 9:12:40 AM] Ana: hi\n[15/08/2023, 9:13:00 AM] Bea: hey\n"
    with zipfile.ZipFile(tmp_path / "WhatsApp Chat - Bea.zip", "w") as z:
        z.writestr("_chat.txt", text)
    folder = tmp_path / "WhatsApp Chat - Cleo"
    folder.mkdir()
    (folder / "_chat.txt").write_text(text.replace("Bea", "Cleo"))
    with Store(tmp_path / "w.db", create=True) as store:
        import_paths(store, [str(tmp_path / "WhatsApp Chat - Bea.zip"), str(folder / "_chat.txt")], source_options={"me": ["Ana"]})
        assert sorted((c.id, c.title) for c in store.iter_conversations()) == [
            ("whatsapp:Bea:2023-08-15T09:12:40", "Bea"), ("whatsapp:Cleo:2023-08-15T09:12:40", "Cleo")]


def test_a_me_that_is_nobody_in_the_chat_is_an_error_listing_the_speakers(tmp_path, run, fixture):
    chat, dce = fixture("whatsapp_ios_langchain.txt"), fixture("discordchatexporter_general.json")
    db = tmp_path / "m.db"
    line = _one_error_line(run("import", "-d", str(db), "--me", "nobody", str(chat)), str(chat))
    assert "--me 'nobody' is none of its speakers: Dr. Feather (7), Jungle Jane (4)" in line and "nothing was imported" in line
    assert not db.exists()
    # one chat of two without you: imported, with a warning about the other
    result = run("import", "-d", str(db), "--me", "Dr. Feather", str(chat), str(dce))
    assert result.exit_code == 0 and Store(db).count() == 1
    assert f"warning: {dce}: --me 'Dr. Feather' is none of its speakers: Adam (" in result.stderr
    # a Discord name with its tag, as DCE's TXT layout shows it, is the name DCE's JSON writes
    (result,) = import_paths(Store(tmp_path / "t.db", create=True), [str(dce)], source_options={"me": ["Adam#7077"]})
    assert result.counts.added == 1 and result.me_missing is None


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
        results = import_paths(store, [str(a), str(b)], source_options={"me": ["Ana"], "min_turns": 1})
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


def test_a_date_format_the_file_contradicts_is_one_error(tmp_path):
    path = tmp_path / "chat.txt"
    path.write_text("13/01/2019, 11:25 - Ana: uno\n13/01/2019, 11:26 - Bea: dos\n")
    with pytest.raises(SourceError, match="--date-format mdy, but the dates are day-first"):
        list(get_source("whatsapp", me=["Ana"], date_format="mdy").read(path, Reader(str(path))))


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
    assert reader.bad_count == 1 and "result.json:1: not a Telegram message" in reader.examples[0] and convs  # json.dumps: one line


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
    assert where == "$.messages[1]"
    # an id written last (no comma after it) is not found: the path, not a line of the next chat
    last = {"type": "message", "date_unixtime": "1672567200", "from": 5, "text": "x", "id": 9}
    (where,), _ = bad_where({"chats": {"list": [chat(1, [msg(7), last]), chat(2, [msg(7), msg(9)])]}})
    assert where == "$.chats.list[0].messages[1]"


def test_telegram_a_file_the_export_left_out_is_named_by_its_kind(tmp_path):
    msgs = [{"id": 1, "type": "message", "date": "2023-08-23T13:11:23", "from": "Ana", "text": "hi"},
            {"id": 2, "type": "message", "date": "2023-08-23T13:12:23", "from": "Bea", "text": "",
             "file": "(File not included. Change data exporting settings to download.)", "media_type": "voice_message"}]  # fmt: skip
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"name": "c", "type": "personal_chat", "id": 1, "messages": msgs}))
    (conv,) = get_source("telegram", me=["Ana"]).read(path, Reader(str(path)))
    assert conv.messages[1].content == "[attachment: voice_message]"


def _chatgpt_chain(tmp_path, chain):
    """A ChatGPT export of one conversation whose nodes are ``chain``, (role, content[, message
    fields]) in order (a tool's author is named python), read back."""

    def node(i, role, content, extra=None):
        nid = f"n{i}"
        msg = {"id": nid, "author": {"role": role, **({"name": "python"} if role == "tool" else {})},
               "create_time": 1700000000, "content": content, "metadata": {}, **(extra or {})}  # fmt: skip
        children = [f"n{i + 1}"] if i + 1 < len(chain) else []
        return nid, {"id": nid, "parent": f"n{i - 1}" if i else None, "children": children, "message": msg}

    mapping = dict(node(i, *step) for i, step in enumerate(chain))
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps([{"title": "t", "create_time": 1700000000, "mapping": mapping, "current_node": f"n{len(chain) - 1}", "id": "c"}]))
    (conv,) = get_source("chatgpt").read(path, Reader(str(path)))
    return conv


def test_chatgpt_voice_thoughts_and_empty_nodes(tmp_path):
    """A voice message is its transcription; the model's thoughts, their recap, the custom
    instructions and an empty answer node are not turns."""

    chain = [("user", {"content_type": "user_editable_context", "user_profile": "I am X"}),
             ("user", {"content_type": "multimodal_text", "parts": [
                 {"content_type": "audio_transcription", "text": "spoken question"}, {"content_type": "audio_asset_pointer"}]}),
             ("assistant", {"content_type": "text", "parts": [""]}),
             ("assistant", {"content_type": "thoughts", "thoughts": [{"summary": "s", "content": "thinking"}]}),
             ("assistant", {"content_type": "reasoning_recap", "content": "Thought for 3 seconds"}),
             ("assistant", {"content_type": "text", "parts": ["the answer"]})]  # fmt: skip
    conv = _chatgpt_chain(tmp_path, chain)
    assert [(m.role, m.content) for m in conv.messages] == [("user", "spoken question"), ("assistant", "the answer")]


def test_a_csv_cut_inside_a_quoted_field_is_an_error_not_a_short_message(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('AuthorID,Author,Date,Content,Attachments,Reactions\n"1","Ana","2023-01-13T10:00:00+00:00","hi","",""\n'
                    '"2","Bob","2023-01-13T10:01:00+00:00","cut in the mid')  # fmt: skip
    with pytest.raises(SourceError, match=r"c.csv:3: the file ends inside a quoted field \(truncated\?\)"):
        list(get_source("discord", me=["Ana"]).read(path, Reader(str(path))))


def test_a_folder_names_the_text_files_it_skips_and_why(tmp_path, run, fixture):
    folder = tmp_path / "mix"
    folder.mkdir()
    (folder / "chat.txt").write_text(fixture("whatsapp_ios_langchain.txt").read_text(encoding="utf-8"))
    (folder / "latin1.txt").write_bytes("[1/1/23, 9:00:00 AM] Jos\xe9: hola\n".encode("latin-1"))
    (folder / "empty.json").write_text("")
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    result = run("import", "-d", str(tmp_path / "f.db"), "--me", "Dr. Feather", str(folder))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "skipped:" in line]
    assert warnings == [f"warning: {folder / 'empty.json'}: skipped: the file is empty",
                        f"warning: {folder / 'latin1.txt'}: skipped: not UTF-8 text (export it as UTF-8, or convert it: iconv -f WINDOWS-1252 -t UTF-8)"]  # fmt: skip
    assert Store(tmp_path / "f.db").count() == 1


def test_discord_json_a_message_of_another_shape_is_a_bad_record_at_its_line(tmp_path, fixture):
    doc = json.loads(fixture("discordchatexporter_general.json").read_text(encoding="utf-8"))
    doc["messages"][3]["content"] = 5
    doc["messages"][5]["author"] = None
    doc["guild"] = "a string"  # not an object: no guild name, still the channel's id
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


def test_json_that_is_cut_or_not_utf8_and_utf16_without_a_bom_say_so(tmp_path, run, fixture):
    cases = []
    alpaca = fixture("llamafactory_alpaca_en_demo_first3.json").read_bytes()
    cases.append(("cut.json", alpaca[:700], ":5: the file ends inside its JSON (truncated?)"))  # no format can tell: the cut said
    chatgpt = json.dumps(json.loads(fixture("chatgpt_conversations.json").read_text(encoding="utf-8")), indent=2).encode()
    at = chatgpt.index(b'"title"')
    line_of_title = chatgpt.count(b"\n", 0, at) + 1
    cases.append(("latin1.json", chatgpt[:at] + b"\xe9" + chatgpt[at:], f":{line_of_title}: not UTF-8 text"))
    cases.append(("w16.txt", fixture("whatsapp_ios_langchain.txt").read_text(encoding="utf-8").encode("utf-16-le"),
                  ": this looks like UTF-16 text without a byte order mark; convert it: iconv -f UTF-16LE -t UTF-8"))  # fmt: skip
    for name, data, says in cases:
        path = tmp_path / name
        path.write_bytes(data)
        line = _one_error_line(run("import", "-d", str(tmp_path / "t.db"), "--me", "x", str(path)), str(path))
        assert line.startswith(f"error: {path}{says}"), line


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


def test_whatsapp_a_header_without_an_author_but_with_lines_under_it_is_message_text(tmp_path):
    """A system line is one line; '[1/3/23, 10:30] maybe later' with more lines under it was
    pasted into the message before it, and stays there."""
    text = ("1/2/23, 10:00 - Ana: Plan for tomorrow:\n[1/3/23, 10:30] maybe later\n2/14/23 is valentine's\n- item one\n"
            "1/2/23, 10:01 - Ana changed the group description\n1/20/23, 10:02 - Bob: ok\n")  # fmt: skip
    got, reader = _wa(tmp_path, text, session_gap="30d")
    assert got == [("Ana", "Plan for tomorrow:\n[1/3/23, 10:30] maybe later\n2/14/23 is valentine's\n- item one"), ("Bob", "ok")]
    assert reader.dropped == {"system line": 1}


def test_chatgpt_code_sent_to_a_tool_is_a_tool_call_answered_by_the_tool(tmp_path):
    chain = [("user", {"content_type": "text", "parts": ["add 1 and 1"]}, {}),
             ("assistant", {"content_type": "code", "language": "python", "text": "print(1 + 1)"}, {"recipient": "python"}),
             ("tool", {"content_type": "execution_output", "text": "2"}, {}),
             ("assistant", {"content_type": "text", "parts": ["It is 2."]}, {})]  # fmt: skip
    conv = _chatgpt_chain(tmp_path, chain)
    call = {"id": "call_n1", "type": "function", "function": {"name": "python", "arguments": '{"code":"print(1 + 1)"}'}}
    assert [(m.role, m.content, m.tool_calls, m.tool_call_id) for m in conv.messages] == [
        ("user", "add 1 and 1", None, None), ("assistant", "", [call], None), ("tool", "2", None, "call_n1"),
        ("assistant", "It is 2.", None, None)]  # fmt: skip


def test_review_fixes_deep_first_records_tags_numbers_and_names(tmp_path, monkeypatch, run, fixture):
    # a first record nested past any export's depth: detection refuses it cheaply (no ijson)
    deep = tmp_path / "deep.json"
    deep.write_text('[{"conversations": ' + "[" * 2000 + "]" * 2000 + "}]" + " " * 70_000)
    with pytest.raises(SourceError, match="depth limit exceeded|nested too deeply"):
        detect(deep)
    # a LIMA CSV with one plain tag; a ShareGPT number value
    lima = tmp_path / "lima.csv"
    lima.write_text('chat,name,tags\n"[{""role"":""user"",""content"":""q""},{""role"":""assistant"",""content"":""a""}]",greet,work\n')
    (conv,) = get_source("lima").read(lima, Reader(str(lima)))
    assert conv.tags == ["work"] and conv.title == "greet"
    sharegpt = tmp_path / "sg.jsonl"
    sharegpt.write_text(json.dumps({"conversations": [{"from": "human", "value": "2+2"}, {"from": "gpt", "value": 4}]}) + "\n")
    (conv,) = get_source("sharegpt").read(sharegpt, Reader(str(sharegpt)))
    assert conv.messages[1].content == "4"
    # a streamed record array with a BOM
    monkeypatch.setattr(records, "STREAM_ABOVE", 0)
    array = tmp_path / "sg.json"
    array.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}]).encode())
    assert len(list(get_source("sharegpt").read(array, Reader(str(array))))) == 1
    # an iOS _chat.txt saved as UTF-16 is named by its own folder, not chatloom's UTF-8 copy
    folder = tmp_path / "Bea"
    folder.mkdir()
    (folder / "_chat.txt").write_text("[15/08/2023, 9:12:40 AM] Ana: hi\n[15/08/2023, 9:13:00 AM] Bea: hey\n", encoding="utf-16")
    for _ in range(2):
        with Store(tmp_path / "u.db", create=True) as store:
            import_paths(store, [str(folder / "_chat.txt")], source_options={"me": ["Ana"]})
    assert [c.id for c in Store(tmp_path / "u.db").iter_conversations()] == ["whatsapp:Bea:2023-08-15T09:12:40"]
    # --me that is nobody in the only chat, beside a file that is not a chat: a warning, not an error
    records_file = tmp_path / "a.jsonl"
    records_file.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n")
    result = run("import", "-d", str(tmp_path / "y.db"), str(records_file), str(fixture("whatsapp_ios_langchain.txt")), "--me", "Zed")
    assert result.exit_code == 0 and "--me 'Zed' is none of its speakers" in result.stderr and Store(tmp_path / "y.db").count() == 1


def test_review_fixes_a_tools_empty_answer_and_brackets_in_a_message(tmp_path):
    chain = [("user", {"content_type": "text", "parts": ["set x"]}, {}),
             ("assistant", {"content_type": "code", "text": "x = 5"}, {"recipient": "python"}),
             ("tool", {"content_type": "execution_output", "text": ""}, {}),
             ("assistant", {"content_type": "text", "parts": ["done"]}, {})]  # fmt: skip
    conv = _chatgpt_chain(tmp_path, chain)
    assert [(m.role, m.content, m.tool_call_id) for m in conv.messages] == [
        ("user", "set x", None), ("assistant", "", None), ("tool", "", "call_n1"), ("assistant", "done", None)]
    # 300 "{" typed in a message are text: the depth guard of the streamed Discord path lets them be
    dce = tmp_path / "dce.json"
    dce.write_text(json.dumps({"guild": {}, "channel": {"id": "1"}, "messages": [{"id": "1", "content": "{" * 300, "author": {"name": "A"}}]}))
    discord = sys.modules[type(get_source("discord")).__module__]
    discord._check_depth(dce)


def test_chatgpt_an_id_twice_in_one_file_is_a_bad_record_not_a_silent_update(tmp_path):
    def conv(cid, text):
        mapping = {"a": {"id": "a", "parent": None, "children": [], "message": {
            "id": "a", "author": {"role": "user"}, "content": {"content_type": "text", "parts": [text]}, "metadata": {}}}}
        return {"title": text, "create_time": 1700000000, "mapping": mapping, "current_node": "a", "id": cid}

    path = tmp_path / "conversations.json"
    path.write_text(json.dumps([{"id": "c1", "title": "broken"}, conv("c1", "first"), conv("c2", "other"), conv("c1", "second")]))
    reader = Reader(str(path))
    convs = list(get_source("chatgpt").read(path, reader))
    assert [(c.id, c.title) for c in convs] == [("chatgpt:c1", "first"), ("chatgpt:c2", "other")]
    assert reader.bad_count == 2 and reader.examples[1] == f"{path}:$[3]: conversation id 'c1' again (read at $[1]); skipped"
    # a copy that gave nothing (no messages) does not claim the id either
    path.write_text(json.dumps([{"id": "c1", "mapping": {}}, conv("c1", "first")]))
    assert [c.title for c in get_source("chatgpt").read(path, Reader(str(path)))] == ["first"]
    # one that gave a branch before failing does: a later copy does not replace what was read
    broken = conv("c1", "first")
    broken["mapping"]["b"] = {"id": "b", "parent": None, "children": [], "message": {"author": {"role": "user"}, "content": 5}}
    path.write_text(json.dumps([broken, conv("c1", "second")]))
    reader = Reader(str(path))
    got = list(get_source("chatgpt", all_branches=True).read(path, reader))
    assert [c.title for c in got] == ["first"] and reader.bad_count == 2 and "again (read at $[0])" in reader.examples[1]


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
    assert bad_streamed == [f"{path}:{prefix}.messages[{len(chats[-1]['messages']) - 1}]: " + bad_whole[0].split(": ", 1)[1]]


_JSON_VALUES = st.recursive(
    st.none() | st.integers() | st.text(alphabet='ab[]{}"\\\n\u00e9 ', max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet='k[{"\\', max_size=3), inner, max_size=3),
    max_leaves=40,
)


def _depth(value):
    if isinstance(value, list | dict):
        return 1 + max((_depth(v) for v in (value.values() if isinstance(value, dict) else value)), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(_JSON_VALUES, st.integers(min_value=1, max_value=9), st.booleans())
def test_the_depth_scan_counts_what_a_parser_nests(value, block_size, indent):
    """Strings full of brackets, quotes and backslashes, cut anywhere between blocks: the scan
    finds exactly the depth ``json`` built."""
    import io

    from chatloom.sources.base import json_too_deep

    data = json.dumps(value, indent=1 if indent else None).encode()
    depth = _depth(value)
    assert not json_too_deep(io.BytesIO(data), limit=depth, block_size=block_size)
    if depth:
        assert json_too_deep(io.BytesIO(data), limit=depth - 1, block_size=block_size)


def test_deep_nesting_between_keys_is_refused_before_ijson_reads_the_file(tmp_path):
    """A minified export over 64 MB streams through ijson, whose memory grows with the square of
    the depth: nesting that never opens 256 brackets in a row (``[{"a":[{"a":…``) is refused too."""
    deep = tmp_path / "deep.json"
    deep.write_text('{"guild": {}, "channel": {"id": "1"}, "messages": [{"id": "1", "content": "x", "author": {"name": "A"}, "embeds": '
                    + '[{"a":' * 400 + "1" + "}]" * 400 + "}]}")  # fmt: skip
    discord = sys.modules[type(get_source("discord")).__module__]
    with pytest.raises(SourceError, match="deep.json: nested too deeply to read"):
        discord._check_depth(deep)
