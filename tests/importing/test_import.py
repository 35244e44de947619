"""The import as a whole: detection, planning (folders, zips, UTF-16 copies, a forced format), who is who, errors naming the user's file, re-imports."""

import copy
import json
import tempfile
import zipfile
from datetime import datetime, timedelta

import pytest

from chatloom.errors import ParamError, SourceError, UsageError
from chatloom.importing import ImportOptions, import_paths, plan
from chatloom.sources import Reader, detect, get_source, records
from chatloom.store import Store
from tests.sources.common import as_cli_says, one_error_line, raises_as_cli_says


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


def test_without_me_the_speakers_are_listed(fixture, tmp_path):
    with Store(tmp_path / "d.db", create=True) as store:
        with raises_as_cli_says(UsageError, r"Speakers: Adam \(18\), Thomas \(8\), Patrick \(5\)\. Pass --me"):
            import_paths(store, [str(fixture("discordchatexporter_general.json"))])
        assert store.count() == 0


def test_reimport_and_a_later_export_add_only_what_is_new(fixture, tmp_path):
    src = json.loads(fixture("discordchatexporter_general.json").read_text())
    early = dict(src, messages=src["messages"][:20])
    (tmp_path / "early.json").write_text(json.dumps(early, indent=2))
    (tmp_path / "late.json").write_text(json.dumps(src, indent=2))
    with Store(tmp_path / "d.db", create=True) as store:
        first = import_paths(store, [str(tmp_path / "early.json")], ImportOptions(me=["Adam"], min_turns=1))
        again = import_paths(store, [str(tmp_path / "early.json")], ImportOptions(me=["Adam"], min_turns=1))
        later = import_paths(store, [str(tmp_path / "late.json")], ImportOptions(me=["Adam"], min_turns=1))
    assert first[0].counts.added == 1
    assert again[0].counts.added == 0 and again[0].counts.unchanged == 1
    # the first session grew (updated), the session after the one-hour silence is new (added)
    assert (later[0].counts.updated, later[0].counts.added) == (1, 1)


def test_utf16_exports_are_converted(fixture, tmp_path):
    path = tmp_path / "chat.txt"
    path.write_bytes(fixture("whatsapp_ios_langchain.txt").read_text(encoding="utf-8").encode("utf-16"))
    with Store(tmp_path / "d.db", create=True) as store:
        (result,) = import_paths(store, [str(path)], ImportOptions(me=["Dr. Feather"]))
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
        line = one_error_line(run("import", "-d", str(db), str(tmp_path / name)), str(tmp_path / name))
        assert says in line, line
        assert not db.exists() or Store(db).count() == 0


def test_errors_name_the_users_file_not_chatlooms_utf8_copy(tmp_path, run, fixture):
    utf16 = tmp_path / "chat16.txt"
    utf16.write_text(fixture("discordchatexporter_plaintext_DERIVED.txt").read_text(encoding="utf-8"), encoding="utf-16")
    line = one_error_line(run("import", "-d", str(tmp_path / "t.db"), "--me", "x", str(utf16)), str(utf16))
    assert "chatloom-utf8" not in line and "--date-format" in line


def test_a_me_that_is_nobody_in_the_chat_is_an_error_listing_the_speakers(tmp_path, run, fixture):
    chat, dce = fixture("whatsapp_ios_langchain.txt"), fixture("discordchatexporter_general.json")
    db = tmp_path / "m.db"
    line = one_error_line(run("import", "-d", str(db), "--me", "nobody", str(chat)), str(chat))
    assert "--me 'nobody' is none of its speakers: Dr. Feather (7), Jungle Jane (4)" in line and "nothing was imported" in line
    assert not db.exists()
    # one chat of two without you: imported, with a warning about the other
    result = run("import", "-d", str(db), "--me", "Dr. Feather", str(chat), str(dce))
    assert result.exit_code == 0 and Store(db).count() == 1
    assert f"warning: {dce}: --me 'Dr. Feather' is none of its speakers: Adam (" in result.stderr
    # a Discord name with its tag, as DCE's TXT layout shows it, is the name DCE's JSON writes
    (result,) = import_paths(Store(tmp_path / "t.db", create=True), [str(dce)], ImportOptions(me=["Adam#7077"]))
    assert result.counts.added == 1 and result.me_missing is None


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
        line = one_error_line(run("import", "-d", str(tmp_path / "t.db"), "--me", "x", str(path)), str(path))
        assert line.startswith(f"error: {path}{says}"), line


def test_review_fixes_deep_first_records_tags_numbers_and_names(tmp_path, monkeypatch, run, fixture):
    # a first record nested past any export's depth: detection refuses it cheaply (no ijson)
    deep = tmp_path / "deep.json"
    deep.write_text('[{"conversations": ' + "[" * 2000 + "]" * 2000 + "}]" + " " * 70_000)
    with pytest.raises(SourceError, match="depth limit exceeded|nested too deeply"):
        detect(deep)
    # a LIMA CSV with one plain tag; a ShareGPT number value is a record of another shape (issue 13)
    lima = tmp_path / "lima.csv"
    lima.write_text('chat,name,tags\n"[{""role"":""user"",""content"":""q""},{""role"":""assistant"",""content"":""a""}]",greet,work\n')
    (conv,) = get_source("lima").read(lima, Reader(str(lima)))
    assert conv.tags == ["work"] and conv.title == "greet"
    sharegpt = tmp_path / "sg.jsonl"
    sharegpt.write_text(json.dumps({"conversations": [{"from": "human", "value": "2+2"}, {"from": "gpt", "value": 4}]}) + "\n")
    reader = Reader(str(sharegpt))
    assert list(get_source("sharegpt").read(sharegpt, reader)) == []
    assert reader.examples == [f"{sharegpt}:1: $.conversations[1].value: expected `str | object | array`, got `int`"]
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
            import_paths(store, [str(folder / "_chat.txt")], ImportOptions(me=["Ana"]))
    assert [c.id for c in Store(tmp_path / "u.db").iter_conversations()] == ["whatsapp:Bea:2023-08-15T09:12:40"]
    # --me that is nobody in the only chat, beside a file that is not a chat: a warning, not an error
    records_file = tmp_path / "a.jsonl"
    records_file.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n")
    result = run("import", "-d", str(tmp_path / "y.db"), str(records_file), str(fixture("whatsapp_ios_langchain.txt")), "--me", "Zed")
    assert result.exit_code == 0 and "--me 'Zed' is none of its speakers" in result.stderr and Store(tmp_path / "y.db").count() == 1


# -- a file is imported whole or not at all -------------------------------------------------------


def _dce_days(fixture, path, days, *, edited=False, bad=False):
    """DiscordChatExporter's own example export (the real fixture), its messages repeated a day
    apart ``days`` times, in its layout (indented JSON, streamed); ``edited``: day 1's first
    message says something else; ``bad``: a message of the last day is not UTF-8 (Latin-1 é)."""
    export = json.loads(fixture("discordchatexporter_general.json").read_bytes())
    messages = []
    for day in range(days):
        for m in copy.deepcopy(export["messages"]):
            m["id"] = str(int(m["id"]) + day * 1_000_000)
            m["timestamp"] = (datetime.fromisoformat(m["timestamp"]) + timedelta(days=day)).isoformat(timespec="milliseconds")
            messages.append(m)
    if edited:
        messages[len(export["messages"])]["content"] = "edited since"
    if bad:
        next(m for m in reversed(messages) if m["author"]["name"] == "Adam")["content"] = "NOT-UTF-8"
    export["messages"], export["messageCount"] = messages, len(messages)
    path.write_bytes(json.dumps(export, indent=2, ensure_ascii=False).encode().replace(b"NOT-UTF-8", b"caf\xe9"))
    return path


def _state(db):
    """What a user can see of a dataset: every conversation with its revision and history, the
    listing, a search, the counts, and the journal's finished runs."""
    with Store(db) as s:
        ids = s.ids()
        return {
            "entries": {i: (s.entry(i), s.history(i)) for i in ids},
            "listing": s.summaries(),
            "search": [r.id for r in s.search("example", limit=None)],
            "stats": s.stats(),
            "runs": s.db.execute("SELECT pk, status, records, added FROM imports WHERE status != 'failed' ORDER BY pk").fetchall(),
            "check": s.check().problems,
        }


@pytest.mark.parametrize("parse_process", ["0", "1"])
def test_a_file_that_fails_part_way_leaves_the_dataset_as_it_was(tmp_path, run, fixture, monkeypatch, parse_process):
    """The issue's case: a DiscordChatExporter file that is not UTF-8 far into it. Its batches
    before the fault (new conversations, one updated, others tagged) are taken back, read here
    or in a worker process; the error is the file's own, one line."""
    from chatloom.sources import discord

    monkeypatch.setattr(discord, "CHUNK", 4096)  # read in small pieces: batches are committed before the fault
    monkeypatch.setenv("CHATLOOM_PARSE_PROCESS", parse_process)
    assert run("import", str(_dce_days(fixture, tmp_path / "old.json", 3)), "--me", "Adam").exit_code == 0
    before = _state(tmp_path / "chatloom.db")
    bad = _dce_days(fixture, tmp_path / "general.json", 12, edited=True, bad=True)
    result = run("import", str(bad), "--me", "Adam", "--batch-size", "2", "--tag", "new")
    line = one_error_line(result, str(bad))
    assert "not valid JSON: Invalid UTF-8" in line
    assert _state(tmp_path / "chatloom.db") == before
    with Store(tmp_path / "chatloom.db") as s:
        (failed,) = s.db.execute("SELECT records, added FROM imports WHERE status = 'failed'").fetchall()
        assert failed == (0, 0)  # the run is journaled (its batches had been committed), with nothing kept
    # the same file, fixed: imported whole
    good = _dce_days(fixture, tmp_path / "general.json", 12, edited=True)
    report = json.loads(run("import", str(good), "--me", "Adam", "--batch-size", "2", "--tag", "new", "--json").stdout)
    (f,) = report["files"]
    assert (f["added"], f["updated"], f["unchanged"], report["conversations"]) == (9, 1, 2, 12)


def test_a_file_that_fails_in_its_first_batch_leaves_the_file_byte_for_byte(tmp_path, run, fixture):
    run("import", str(_dce_days(fixture, tmp_path / "old.json", 3)), "--me", "Adam")
    db = tmp_path / "chatloom.db"
    before = db.read_bytes()
    result = run("import", str(_dce_days(fixture, tmp_path / "bad.json", 4, bad=True)), "--me", "Adam", "--tag", "new")
    assert "not valid JSON" in one_error_line(result, str(tmp_path / "bad.json"))
    assert db.read_bytes() == before  # not even a journal row: the run had committed nothing


def test_undo_import_takes_back_a_run_but_not_a_change_made_since(tmp_path):
    from chatloom.model import Conversation, Message
    from chatloom.store import fingerprint

    def conv(i, text="hi"):
        return Conversation(id=f"c{i}", messages=[Message(role="user", content=f"{text} {i}"), Message(role="assistant", content="ok")])

    with Store(tmp_path / "d.db", create=True) as s:
        s.import_conversations([conv(i) for i in range(4)])
        (tmp_path / "f").write_text("x")
        run = s.journal_begin("f", "openai", fingerprint(tmp_path / "f"))
        s.import_conversations([conv(0, "changed"), conv(1), conv(5), conv(6)], tags=["t"], journal=run, batch_size=1)
        assert s.count() == 6 and s.get("c1").tags == ["t"]
        edited = conv(6, "mine")
        s.put(edited)  # someone edits what the run added, before it is taken back
        assert s.undo_import(run) == (3, 1)  # c0 changed, c1 tagged, c5 added; c6 edited since
        assert sorted(s.ids()) == ["c0", "c1", "c2", "c3", "c6"]
        assert s.get("c0") == conv(0) and s.get("c1").tags == [] and s.get("c6") == edited
        assert [r.op for r in s.history("c0")] == ["import"] and s.entry("c0").revision == 1
        assert [r.id for r in s.search("changed")] == [] and sorted(r.id for r in s.search("hi")) == ["c0", "c1", "c2", "c3"]
        assert s.check().ok
        # a run that resumed an interrupted one, taken back: the interrupted one is unfinished again
        killed = s.journal_begin("g", "openai", "fp")
        s.import_conversations([conv(7)], journal=killed)  # never ended: as after a kill
        again = s.journal_begin("g", "openai", "fp")
        assert again.interrupted == {"records": 1, "added": 1, "updated": 0}
        s.import_conversations([conv(7), conv(8)], journal=again)
        s.undo_import(again)
        statuses = dict(s.db.execute("SELECT pk, status FROM imports WHERE file = 'g'").fetchall())
        assert statuses == {killed.pk: "running", again.pk: "failed"} and "c7" in s.ids() and "c8" not in s.ids()
        assert s.journal_begin("g", "openai", "fp").interrupted is not None  # the next run resumes it


# -- the temporary files of an import: scoped to it, not to the process ------------------------

_CHAT = "[15/08/2023, 9:12:40 AM] Ana: hi\n[15/08/2023, 9:13:00 AM] Bea: hey\n"


@pytest.fixture
def temp_dir(tmp_path, monkeypatch):
    """The folder ``tempfile`` makes its folders in, this test's own (other processes use /tmp)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _staged(folder):
    return sorted(p.name.rsplit("-", 1)[0] for p in folder.iterdir() if p.name.startswith(("chatloom-zip-", "chatloom-utf8-")))


def _zip_and_utf16(tmp_path):
    with zipfile.ZipFile(tmp_path / "WhatsApp Chat - Bea.zip", "w") as z:
        z.writestr("_chat.txt", _CHAT)
    (tmp_path / "Cleo").mkdir()
    (tmp_path / "Cleo" / "_chat.txt").write_text(_CHAT.replace("Bea", "Cleo"), encoding="utf-16")
    return [str(tmp_path / "WhatsApp Chat - Bea.zip"), str(tmp_path / "Cleo" / "_chat.txt")]


def test_an_imports_unzipped_members_and_utf8_copies_go_when_it_ends(tmp_path, temp_dir, run):
    paths = _zip_and_utf16(tmp_path)
    with plan(paths, options=ImportOptions(me=["Ana"])) as files:
        assert _staged(temp_dir) == ["chatloom-utf8", "chatloom-zip"]  # while it runs, they are there
        assert [files.display_name(f) for f, _, _ in files] == [f"{paths[0]}!_chat.txt", paths[1]]
    assert _staged(temp_dir) == []
    results = import_paths(tmp_path / "a.db", paths, ImportOptions(me=["Ana"]))
    assert [r.file for r in results] == [f"{paths[0]}!_chat.txt", paths[1]] and results.conversations == 2
    assert _staged(temp_dir) == []
    assert run("import", "-d", str(tmp_path / "b.db"), "--me", "Ana", *paths).exit_code == 0
    assert _staged(temp_dir) == []


def test_an_import_that_fails_leaves_no_temporary_files_either(tmp_path, temp_dir, run):
    paths = _zip_and_utf16(tmp_path)
    # a chat export without me: the question, raised after both files were planned
    with pytest.raises(UsageError, match="who are you in this chat?"):
        import_paths(tmp_path / "a.db", paths)
    assert _staged(temp_dir) == [] and not (tmp_path / "a.db").exists()
    # planning that fails after the zip was unpacked and the copy made
    with pytest.raises(SourceError, match="missing.txt: no such file or folder"):
        plan([*paths, str(tmp_path / "missing.txt")])
    assert _staged(temp_dir) == []
    # a file that fails while it is read, beside the zip, and from the command line
    (tmp_path / "bad.jsonl").write_text('{"messages": [{"role": "user", "content": 1}]}\n')
    results = import_paths(tmp_path / "b.db", [paths[0], str(tmp_path / "bad.jsonl")], ImportOptions(me=["Ana"]), strict=True)
    assert [r.error is not None and "nothing of this file was imported" in r.error for r in results] == [False, True]
    assert _staged(temp_dir) == []
    with pytest.raises(SourceError, match="nothing of this file was imported"):
        import_paths(tmp_path / "b.db", [str(tmp_path / "bad.jsonl")], strict=True)
    assert _staged(temp_dir) == []
    assert run("import", "-d", str(tmp_path / "c.db"), *paths).exit_code == 2
    assert _staged(temp_dir) == []


def test_a_recipe_input_keeps_its_temporary_files_only_while_it_is_read(tmp_path, temp_dir, run):
    paths = _zip_and_utf16(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({"inputs": [{"name": "chats", "file": paths, "options": {"me": ["Ana"], "min_turns": 1}}]}))
    result = run("build", str(recipe), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "out" / "data.jsonl").read_text().splitlines()) == 2
    assert _staged(temp_dir) == []


# -- the options: one typed object, checked once, named in the caller's words ---------------------


def test_the_options_defaults_are_the_command_lines(run):
    from chatloom.cli import all_commands

    defaults = ImportOptions()
    flags = {p.name: p.default for p in all_commands()["import"].params}
    assert (flags["merge_gap"], flags["session_gap"], flags["min_turns"], flags["date_format"]) == (
        defaults.merge_gap, defaults.session_gap, defaults.min_turns, defaults.date_format)
    assert (not flags["no_attachments"], flags["all_branches"], flags["text_blocks"]) == (
        defaults.attachments, defaults.all_branches, defaults.text_blocks)
    assert defaults.merge.total_seconds() == 300 and defaults.session.total_seconds() == 3600


def test_options_are_checked_when_made_and_a_key_that_is_none_of_them_is_named(tmp_path, run):
    assert ImportOptions(me="Ana").me == ("Ana",) and ImportOptions(me=["Ana", "A"]).me == ("Ana", "A")
    with pytest.raises(ParamError, match="^date_format must be dmy, mdy or ymd, not 'ddmm'$"):
        ImportOptions(date_format="ddmm")
    with pytest.raises(UsageError, match="'soon' is not a duration"):
        ImportOptions(session_gap="soon")
    with pytest.raises(ParamError, match="^min_turns must be"):
        ImportOptions(min_turns=0)
    with pytest.raises(UsageError, match="unknown importer option 'sesion_gap'; the options are: me, merge_gap, session_gap"):
        ImportOptions.from_mapping({"me": ["Ana"], "sesion_gap": "2h"})
    with pytest.raises(UsageError, match="unknown importer option 'sesion_gap'"):
        get_source("whatsapp", sesion_gap="2h")
    # a recipe's options: the typo fails when the recipe loads, naming the input and the key
    (tmp_path / "chat.txt").write_text(_CHAT)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({"inputs": [{"name": "wa", "file": str(tmp_path / "chat.txt"), "options": {"me": ["Ana"], "sesion_gap": "2h"}}]}))
    line = one_error_line(run("build", str(recipe), "-o", str(tmp_path / "out")), str(recipe))
    assert line.endswith(": inputs[0].options: unknown importer option 'sesion_gap'; the options are: me, merge_gap, "
                         "session_gap, min_turns, date_format, attachments, all_branches, text_blocks")
    assert not (tmp_path / "out").exists()  # found before any work


def test_library_messages_name_the_parameter_and_the_command_line_its_flag(tmp_path):
    """``ParamError``: the library (and a recipe) says ``me``, ``date_format``, ``strict``,
    ``format``; ``chatloom import`` says ``--me``, ``--date-format``, ``--strict``, ``-f``."""
    chat = tmp_path / "chat.txt"
    chat.write_text("01/02/23, 10:00 - Ana: hi\n01/02/23, 10:01 - Ben: hello\n")
    with Store(tmp_path / "d.db", create=True) as store:
        with pytest.raises(ParamError) as raised:
            import_paths(store, [str(chat)], ImportOptions(me=["Ana"]))
        assert str(raised.value).endswith("; pass date_format dmy or mdy") and str(raised.value).startswith(f"{chat}: cannot tell")
        assert as_cli_says(raised.value).endswith("; pass --date-format dmy or mdy")
        with pytest.raises(ParamError) as raised:
            import_paths(store, [str(chat)], ImportOptions(date_format="dmy"))
        assert "Pass me 'Ana' (repeatable)" in str(raised.value) and "Pass --me 'Ana'" in as_cli_says(raised.value)
        with pytest.raises(ParamError) as raised:
            import_paths(store, [str(chat)], ImportOptions(me=["Zed"], date_format="dmy"))
        assert "me 'Zed' is none of its speakers" in str(raised.value) and "--me 'Zed'" in as_cli_says(raised.value)
        (tmp_path / "bad.jsonl").write_text('{"messages": [{"role": "user", "content": 1}]}\n')
        with pytest.raises(SourceError) as raised:
            import_paths(store, [str(tmp_path / "bad.jsonl")], strict=True)
        assert "(strict: nothing of this file" in str(raised.value) and "(--strict: nothing" in as_cli_says(raised.value)
    weird = tmp_path / "weird.json"
    weird.write_text('{"weird": 1}')
    with pytest.raises(SourceError, match="pass format FORMAT") as raised:
        plan([str(weird)])
    assert "pass -f FORMAT" in as_cli_says(raised.value)


def test_a_whatsapp_export_that_starts_with_a_bracket_is_not_called_json(tmp_path, run):
    """An iOS export in a layout chatloom does not read ("[06/2018/13, 21:25:15]": month, year,
    day, from Pustur/whatsapp-chat-parser @ 57484d5, tests/parser.test.ts) is said to look like a
    WhatsApp export, not invalid JSON; read as whatsapp, that it has no header chatloom reads."""
    path = tmp_path / "chat.txt"
    path.write_text("[06/2018/13, 21:25:15] a: m\n[06/2018/13, 21:26:15] b: n\n")
    db = tmp_path / "t.db"
    line = one_error_line(run("import", "-d", str(db), "--me", "a", str(path)), str(path))
    assert line == (f"error: {path}: cannot tell the format of this file: it starts like a WhatsApp export ('[06/2018/13, 21:25:15] a: m'), "
                    "but too few of its lines are message headers in a layout chatloom reads; pass -f whatsapp to read it as one")
    line = one_error_line(run("import", "-d", str(db), "-f", "whatsapp", "--me", "a", str(path)), str(path))
    assert line.startswith(f"error: {path}:1: no line of this file is a WhatsApp message header") and not db.exists()


def test_a_me_that_names_nobody_is_an_error_whenever_nothing_was_imported(tmp_path, run, fixture):
    """With -f whatsapp, in a dry run, and when the other file imported nothing either: --me
    naming nobody is the error, not "0 conversations"."""
    french = tmp_path / "fr.txt"  # JBGruber/rwhatsapp @ 6e09da3, tests/testthat/test-rwhatsapp.R ("French format")
    french.write_text("12/07/2017 à 22:35 - Les messages envoyés dans cette discussion et les appels sont désormais protégés avec le "
                      "chiffrement de bout en bout. Appuyez pour plus d'informations.\n13/07/2017 à 09:12 - XXX: Salut :)\n")  # fmt: skip
    db = tmp_path / "m.db"
    line = one_error_line(run("import", "-d", str(db), "-f", "whatsapp", "--me", "Zed", str(french)), str(french))
    assert "--me 'Zed' is none of its speakers: XXX (1); pass --me 'XXX' or another of them; nothing was imported" in line
    chat = fixture("whatsapp_ios_langchain.txt")
    line = one_error_line(run("import", "-d", str(db), "--dry-run", "--me", "Zed", str(chat)), str(chat))
    assert line.endswith("nothing would be imported")
    # one chat where --me is nobody, one where the conversations are all too short: nothing came of it
    line = one_error_line(run("import", "-d", str(db), "--me", "XXX", "--min-turns", "5", str(french), str(chat)), str(chat))
    assert "--me 'XXX' is none of its speakers: Dr. Feather (7), Jungle Jane (4)" in line and not db.exists()
    # a dry run with one chat where --me is somebody warns about the other
    result = run("import", "-d", str(db), "--dry-run", "--me", "XXX", "--min-turns", "1", str(french), str(chat))
    assert result.exit_code == 0 and f"warning: {chat}: --me 'XXX' is none of its speakers" in result.stderr
