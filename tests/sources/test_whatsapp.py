"""WhatsApp 'Export chat' text: iOS and Android layouts, locales, system lines, media, and the date order."""

import zipfile

import pytest

from chatloom.errors import SourceError
from chatloom.importing import ImportOptions, import_paths
from chatloom.sources import Reader, get_source
from chatloom.store import Store
from tests.sources.common import raises_as_cli_says, read


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
        import_paths(store, [str(tmp_path / "WhatsApp Chat - Bea.zip"), str(folder / "_chat.txt")], ImportOptions(me=["Ana"]))
        assert sorted((c.id, c.title) for c in store.iter_conversations()) == [
            ("whatsapp:Bea:2023-08-15T09:12:40", "Bea"), ("whatsapp:Cleo:2023-08-15T09:12:40", "Cleo")]


def test_a_date_format_the_file_contradicts_is_one_error(tmp_path):
    path = tmp_path / "chat.txt"
    path.write_text("13/01/2019, 11:25 - Ana: uno\n13/01/2019, 11:26 - Bea: dos\n")
    with raises_as_cli_says(SourceError, "--date-format mdy, but the dates are day-first"):
        list(get_source("whatsapp", me=["Ana"], date_format="mdy").read(path, Reader(str(path))))


def test_whatsapp_a_header_without_an_author_but_with_lines_under_it_is_message_text(tmp_path):
    """A system line is one line; '[1/3/23, 10:30] maybe later' with more lines under it was
    pasted into the message before it, and stays there."""
    text = ("1/2/23, 10:00 - Ana: Plan for tomorrow:\n[1/3/23, 10:30] maybe later\n2/14/23 is valentine's\n- item one\n"
            "1/2/23, 10:01 - Ana changed the group description\n1/20/23, 10:02 - Bob: ok\n")  # fmt: skip
    got, reader = _wa(tmp_path, text, session_gap="30d")
    assert got == [("Ana", "Plan for tomorrow:\n[1/3/23, 10:30] maybe later\n2/14/23 is valentine's\n- item one"), ("Bob", "ok")]
    assert reader.dropped == {"system line": 1}
