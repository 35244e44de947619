"""WhatsApp 'Export chat' text: iOS and Android layouts, locales, system lines, media, and the date order."""

import zipfile

import pytest

from chatloom.errors import SourceError
from chatloom.importing import ImportOptions, import_paths
from chatloom.sources import Reader, detect, get_source
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


def _wa(tmp_path, text, name="chat.txt", me=("Ana",), **options):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    reader = Reader(str(path))
    convs = list(get_source("whatsapp", me=list(me), min_turns=1, **options).read(path, reader))
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


# -- headers in every layout: date, separator, time, separator, name ----------------------------

# Snippets of other WhatsApp parsers' own tests, each pair of lines as the test writes it:
RWHATSAPP = "JBGruber/rwhatsapp @ 6e09da3, tests/testthat/test-rwhatsapp.R"
PUSTUR = "Pustur/whatsapp-chat-parser @ 57484d5, tests/parser.test.ts"
CHATMINER = "joweich/chat-miner @ 4169138, test/whatsapp/test_dateformat3.txt"
JB = ("Johannes Gruber", "Was it good?"), ("R", "Yes, it was")
LAYOUTS = [
    # (origin, lines, date order, the posts read: (name, text, time))
    (RWHATSAPP, ["12.07.2017, 22:35:22: Johannes Gruber: Was it good?", "13.07.2017, 09:12:44: R: Yes, it was"], None,
     [(*JB[0], "2017-07-12T22:35:22"), (*JB[1], "2017-07-13T09:12:44")]),
    (RWHATSAPP, ["12.07.2017, 22:35: Johannes Gruber: Was it good?", "13.07.2017, 09:12: R: Yes, it was"], None,
     [(*JB[0], "2017-07-12T22:35:00"), (*JB[1], "2017-07-13T09:12:00")]),
    (RWHATSAPP, ["12.07.2017 - 22:35:22; Johannes Gruber: Was it good?", "13.07.2017 - 09:12:44; R: Yes, it was"], None,
     [(*JB[0], "2017-07-12T22:35:22"), (*JB[1], "2017-07-13T09:12:44")]),
    (RWHATSAPP, ["12/07/2017 à 22:35 - Les messages envoyés dans cette discussion et les appels sont désormais protégés avec le "
                 "chiffrement de bout en bout. Appuyez pour plus d'informations.", "13/07/2017 à 09:12 - XXX: Salut :)"], None,
     [("XXX", "Salut :)", "2017-07-13T09:12:00")]),
    (RWHATSAPP, ["2017-7-12, 10:35:22 PM: Johannes Gruber: Was it good?", "2017-7-13, 9:12:44 AM: R: Yes, it was"], None,
     [(*JB[0], "2017-07-12T22:35:22"), (*JB[1], "2017-07-13T09:12:44")]),
    (RWHATSAPP, ["12.07.17, 10:35 a.m. - Johannes Gruber: Was it good?", "---> Another line - with a dash",
                 "13.07.17, 10:36 p.m.  - R: Yes, it was"], None,
     [("Johannes Gruber", "Was it good?\n---> Another line - with a dash", "2017-07-12T10:35:00"), (*JB[1], "2017-07-13T22:36:00")]),
    (PUSTUR, ["13.06.18 21.25.15: a: m", "13.06.18 21.25.16: b: n"], None,
     [("a", "m", "2018-06-13T21:25:15"), ("b", "n", "2018-06-13T21:25:16")]),
    (PUSTUR, ["13.6.2018 klo 21.25.15 - a: m", "13.6.2018 klo 21.25.16 - b: n"], None,
     [("a", "m", "2018-06-13T21:25:15"), ("b", "n", "2018-06-13T21:25:16")]),
    (PUSTUR, ["13. 6. 2018. 21:25:15 a: m", "13. 6. 2018. 21:25:16 b: n"], None,
     [("a", "m", "2018-06-13T21:25:15"), ("b", "n", "2018-06-13T21:25:16")]),
    (PUSTUR, ["[3/6/18 1:55:00 p. m.] a: m", "\u200e[3/6/18 1:55:01 p. m.] b: n"], "dmy",
     [("a", "m", "2018-06-03T13:55:00"), ("b", "n", "2018-06-03T13:55:01")]),
    (PUSTUR, ["3/6/2018 1:55 p.\u00a0m. - a: m", "03-06-2018, 01.56 PM - b: n"], "dmy",
     [("a", "m", "2018-06-03T13:55:00"), ("b", "n", "2018-06-03T13:56:00")]),
    (PUSTUR, ["3/6/18, 1:55\u202fPM - a: m", "[2018/06/13, 21:25:15] b: n"], "dmy",
     [("a", "m", "2018-06-03T13:55:00"), ("b", "n", "2018-06-13T21:25:15")]),
    (CHATMINER, ["2022/12/14, 13:34. - John Doe: Lorem ipsum dolor sit amet.", "2022/12/24, 11:33. - John Doe: Lorem ipsum : dolor sit amet."],
     None, [("John Doe", "Lorem ipsum dolor sit amet.", "2022-12-14T13:34:00"), ("John Doe", "Lorem ipsum : dolor sit amet.", "2022-12-24T11:33:00")]),
]


@pytest.mark.parametrize("origin, lines, order, posts", LAYOUTS, ids=[f"{o.split('/')[0]}-{i}" for i, (o, *_) in enumerate(LAYOUTS)])
def test_whatsapp_reads_every_layout_other_parsers_read(tmp_path, origin, lines, order, posts):
    """The header is a date, a separator (", ", " à ", " klo ", " - "), a time, a separator
    (" - ", "  - ", ": ", "; ", "] ", a space) and the name: every layout chatminer, rwhatsapp and
    whatsapp-chat-parser test is detected and read, with its times."""
    path = tmp_path / "chat.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert detect(path).name == "whatsapp", origin
    names = sorted({name for name, _, _ in posts})
    convs, reader, _ = read(path, me=names, min_turns=1, merge_gap="0", session_gap="1000d", date_format=order)
    assert [(m.name, m.content, m.meta["time"]) for c in convs for m in c.messages] == posts, origin
    assert not reader.bad_count


def test_whatsapp_a_weak_separator_is_a_header_only_in_a_file_whose_headers_use_it(tmp_path):
    """In a file of " - " headers, a line of a message that starts "1/3/23 10:00 Agenda: …" is
    text; where a file's own headers are "date time name:", it is a header."""
    got, reader = _wa(tmp_path, "1/2/23, 10:00 - Ana: Plan\n1/3/23 10:00 Agenda: a, b\n1/20/23, 10:01 - Bob: ok\n", session_gap="30d")
    assert got == [("Ana", "Plan\n1/3/23 10:00 Agenda: a, b"), ("Bob", "ok")]
    got, reader = _wa(tmp_path, "1/2/23 10:00 Ana: Plan\n1/3/23 10:00 Agenda: a, b\n1/20/23 10:01 Bob: ok\n", session_gap="30d",
                      merge_gap="0", me=["Ana", "Agenda"])  # fmt: skip
    assert got == [("Ana", "Plan"), ("Agenda", "a, b"), ("Bob", "ok")]


def test_whatsapp_lines_that_look_like_headers_of_another_layout_are_reported_not_glued_silently(tmp_path):
    """A file whose headers are " - " with a stretch in another layout (two exports pasted
    together): those lines stay the text of the message above them, as nothing else can be
    sure, and each is a warning with its line; --strict fails the file."""
    text = ("13.07.2017, 09:10 - Ana: hi\n13.07.2017, 09:11 - Bea: hello\n"
            "13.07.2017, 09:12:44: Bea: pasted from another export\n13.07.2017, 09:13:01: Ana: and this\n"
            "13.07.2017, 09:14 - Ana: back\n")  # fmt: skip
    got, reader = _wa(tmp_path, text, merge_gap="0", me=["Ana"])
    assert got[1] == ("Bea", "hello\n13.07.2017, 09:12:44: Bea: pasted from another export\n13.07.2017, 09:13:01: Ana: and this")
    assert reader.bad_count == 2
    assert reader.examples[0] == (f"{tmp_path / 'chat.txt'}:3: a line that looks like a message header in another layout than the "
                                  "file's ('13.07.2017, 09:12:44: Bea:'); read as text of the message above it")  # fmt: skip
    with pytest.raises(SourceError, match=r"chat.txt:3: .*\(strict: nothing of this file was imported\)"):
        list(get_source("whatsapp", me=["Ana"]).read(tmp_path / "chat.txt", Reader(str(tmp_path / "chat.txt"), strict=True)))


# -- what WhatsApp writes itself, in every language ----------------------------------------------

WHATS_JSON = "starkdmi/whats_json @ 760b3a0, test/data/languages/"
# Lines of real exports (WHATS_JSON), the days of the second file moved on so that both read as one chat
IOS_RU_DE = [  # russian_ios.txt lines 1, 3, 5, 11, 15; deutch_ios.txt lines 1, 3, 9, 12, 13, 15
    "[3/18/22, 14:56:00] Elon Musk: \u200eСообщения и звонки защищены сквозным шифрованием. Третьи лица, включая WhatsApp, не\xa0могут "
    "прочитать ваши сообщения или прослушать звонки.",
    "\u200e[3/27/22, 21:41:55] Dmitry S: \u200eизображение отсутствует",
    "\u200e[3/27/22, 21:44:16] Dmitry S: \u200eвидео отсутствует",
    "\u200e[3/27/22, 21:49:19] Dmitry S: \u200eстикер не добавлен",
    "[3/27/22, 21:50:54] Dmitry S: \u200eВы удалили данное сообщение.",
    "[3/28/22, 14:56:00] Elon Musk: \u200eNachrichten und Anrufe sind Ende-zu-Ende-verschlüsselt. Niemand außerhalb dieses Chats kann sie "
    "lesen oder anhören, nicht einmal WhatsApp.",
    "\u200e[3/28/22, 21:41:55] Dmitry S: \u200eBild weggelassen",
    "\u200e[3/28/22, 21:47:54] Dmitry S: \u200eKontaktkarte ausgelassen",
    "\u200e[3/28/22, 21:50:09] Dmitry S: Some file.txt \u200eDokument weggelassen",
    "\u200e[3/28/22, 21:50:25] Dmitry S: Resume-Dmitry-Starkov.pdf • \u200e2 Seiten \u200eDokument weggelassen",
    "[3/28/22, 21:50:54] Dmitry S: \u200eDu hast diese Nachricht gelöscht.",
]
ANDROID_RU_NL = [  # russian_android.txt lines 1-3, 13; deutch_android_media.txt (Dutch) lines 1-7, 11, 15
    "23.03.2022, 13:31 - Сообщения и звонки защищены сквозным шифрованием. Третьи лица, включая WhatsApp, не\xa0могут прочитать ваши "
    "сообщения или прослушать звонки. Нажмите, чтобы узнать подробнее.",
    "23.03.2022, 13:32 - Dmitry S: Hello",
    "23.03.2022, 13:33 - Dmitry S: <Без медиафайлов>",
    "23.03.2022, 13:34 - Elon: \u200eAlex.vcf (файл добавлен)",
    "24.03.2022, 13:31 - Berichten en oproepen worden end-to-end versleuteld. Niemand buiten deze chat kan ze lezen of beluisteren, zelfs "
    "WhatsApp niet. Tik voor meer informatie.",
    "24.03.2022, 14:56 - Dmitry S: Hello",
    "24.03.2022, 15:10 - Dmitry S: <Media weggelaten>",
    "24.03.2022, 15:10 - Dmitry S: <Media weggelaten>",
    "Caption",
    "24.03.2022, 15:12 - Dmitry S: \u200ePTT-20220323-WA0000.opus (bestand bijgevoegd)",
    "24.03.2022, 15:13 - Elon: \u200eSTK-20220323-WA0003.webp (bestand bijgevoegd)",
    "24.03.2022, 15:14 - Dmitry S: Dit bericht is verwijderd",
]
ATTACHMENTS = [  # PUSTUR's parseAttachments formats 1-4 (the German one with its caption); SpiritFour/whatsanalyze @ 7f9f47e,
    # static/chat_example.txt line 8 (lower case); an iOS export's "<attached: …>" with the file's name before it (whats_json)
    "3/6/18, 1:55 p.m. - a: < attached: 00000042-PHOTO-2020-06-07-15-13-20.jpg >",
    "3/6/18, 1:56 p.m. - a: IMG-20210428-WA0001.jpg (file attached)",
    "3/6/18, 1:57 p.m. - a: 2015-08-04-PHOTO-00004762.jpg <\u200eattached>",
    "3/6/18, 1:58 p.m. - a: \u200e4f2680f1db95a8454775cc2eefc95bfc.jpg (Datei angehängt)\nDir auch frohe Ostern.",
    "9/15/19, 12:26 - John Doe : <media omitted>",
    "9/15/19, 12:27 - a: Some file.txt \u200e<attached: 00000046-Some file.txt>",
    "9/15/19, 12:28 - a: report.pdf (see above)",
]


@pytest.mark.parametrize("lines, me, want, dropped", [
    (IOS_RU_DE, "Dmitry S", ["[attachment: image]", "[attachment: video]", "[attachment: sticker]", "[attachment: image]",
                             "[attachment: contact]", "[attachment: Some file.txt]", "[attachment: Resume-Dmitry-Starkov.pdf]"],
     {"system line": 2, "deleted message": 2}),
    (ANDROID_RU_NL, "Dmitry S", ["Hello", "[attachment: media]", "[attachment: Alex.vcf]", "Hello",
                                "[attachment: media]\n[attachment: media]\nCaption",  # one minute: one turn
                                "[attachment: PTT-20220323-WA0000.opus]", "[attachment: STK-20220323-WA0003.webp]"],
     {"system line": 2, "deleted message": 1}),
    (ATTACHMENTS, "a", ["[attachment: 00000042-PHOTO-2020-06-07-15-13-20.jpg]", "[attachment: IMG-20210428-WA0001.jpg]",
                        "[attachment: 2015-08-04-PHOTO-00004762.jpg]", "[attachment: 4f2680f1db95a8454775cc2eefc95bfc.jpg]\nDir auch frohe Ostern.",
                        "[attachment: media]", "[attachment: 00000046-Some file.txt]", "report.pdf (see above)"], {}),
], ids=["ios-ru-de", "android-ru-nl", "attachments"])  # fmt: skip
def test_whatsapp_notices_and_media_in_every_language_leave_the_text(tmp_path, lines, me, want, dropped):
    """The encryption notice, deleted messages and what stands for media, as WhatsApp writes them
    in the phone's language (real exports: WHATS_JSON), never stay in the training text: notices
    are dropped, media become placeholders (or go, with their caption kept, with --no-attachments)."""
    path = tmp_path / "chat.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    convs, reader, _ = read(path, "whatsapp", me=[me], min_turns=1, merge_gap="0", session_gap="100d")
    assert [m.content for c in convs for m in c.messages] == want
    assert dict(reader.dropped) == dropped and not reader.bad_count
    convs, reader, _ = read(path, "whatsapp", me=[me], min_turns=1, merge_gap="0", session_gap="100d", attachments=False)
    assert not [m.content for c in convs for m in c.messages if "attach" in m.content or "<" in m.content]
