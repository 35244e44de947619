"""``whatsapp``: WhatsApp's "Export chat" ``.txt``.

Layouts (all seen in real exports; the grammar of a header is below, at ``_ANY``):

    [8/15/23, 9:12:43 AM] Dr. Feather: text            iOS, with U+200E marks
    [01/01/19 11:25] John Doe: text                     iOS, 24 h, no comma
    7/19/22, 11:32 PM - User 1: Hello                   Android (U+202F before PM)
    01/01/2019, 11:25 a. m. - John Doe: text            Android, Spanish
    12/07/2017 à 22:35 - Ana: text                      French; "klo" (Finnish), "um" between date and time too
    12.07.2017, 22:35:22: Ana: text                     ": " or "; " after the time, or a space: a file's own layout
    [1/24/21, 12:41:03 PM] ~ User name 2: Of course!    not in the contacts

A line without a date header continues the message before it; one that looks like a header of
another layout than the file's is reported (a warning with its line), not glued on silently. Lines
without ``Name:`` are system lines ("You were added", "… created group …") and are dropped, as are
the end-to-end encryption notice, deleted messages and missed calls, in every language WhatsApp
writes them (``whatsapp_strings``). ``<Media omitted>`` / ``image omitted`` / ``<attached: file>`` /
``FILE (file attached)``, in any language, become ``[attachment: …]`` (dropped with
``--no-attachments``, a caption under them kept). Whether dates are day-first is decided from the
whole file (``dates.detect_order``).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from ..errors import SourceError
from ..model import Conversation
from . import dates
from . import whatsapp_strings as strings
from .base import Reader, Source, read_text
from .stream import Post, Sessionizer

# A header is a date, a separator, a time, a separator and the author's name with a colon (none on
# a system line), in every layout WhatsApp writes, whatever the locale:
#
#     [8/15/23, 9:12:43 AM] Ana: …          7/19/22, 11:32 PM - Ana: …        12/07/2017 à 22:35 - Ana: …
#     13.6.2018 klo 21.25.15 - Ana: …       13/06/2018, 21:25  - Ana: …        2022/12/14, 13:34. - Ana: …
#     12.07.2017, 22:35:22: Ana: …          12.07.2017 - 22:35:22; Ana: …      13. 6. 2018. 21:25:15 Ana: …
#
# The date is three numbers (a space may follow each separator); between date and time a comma or a
# dot, spaces, and perhaps one short word ("à", "klo", "um") or a dash; the time has ":" or ".",
# perhaps seconds and a/p m. After the time: "]" when the line opened with "[", else " - " (any
# spaces before the dash, a dot too), or one of the weak separators ": ", "; " and a lone space.
# A line of a message may well start with a date and a time ("1/3/23, 10:00 works for me"), so a
# weak separator makes a header only in a file whose own headers use it (``_layout``).
_MARKS = "\u200e\u200f"
_LEAD = _MARKS + "\ufeff"  # before a header, and after its "[" (a byte order mark is seen there too)
_DATE = r"(?P<date>\d{1,4}+[./-] ?+\d{1,2}+[./-] ?+\d{1,4}+)"
_SEP = r"[,.]?+[ \t\u00a0]++(?:(?:-|[^\W\d_]{1,5}+\.?+)[ \t\u00a0]++)?+"
_TIME = (r"(?P<time>\d{1,2}+[:.]\d{2}(?:[:.]\d{2})?+"
         r"(?:[ \t\u202f\u00a0_]*+[AaPp]\.?+[ \u202f\u00a0]?+[Mm]\.?+(?![^\W\d_]))?+)")  # fmt: skip
_STRONG = r"\.?+[ \t]++-[ \t]"  # " - ", "  - ", ". - "
_WEAK = {":": r":[ \t]", ";": r";[ \t]", " ": r"[ \t](?![ \t-])"}
# the author: a name holds no ':' (nor '"', which a system line may quote), "~ " before it is
# WhatsApp's mark of a name not in the contacts
_AUTHOR = r"(?:(?:~[ \t\u202f\u00a0])?+(?P<author>[^:\"\u200e\n]{1,80}+):[ \t]?+)?+"
# Any header of any layout, at the start of a line, the separator after the time named: to tell a
# file's layout, to detect the format, and to find lines that look like a header of another
# layout than the file's.
_ANY = re.compile(
    rf"^[{_LEAD}]*+(?P<open>\[)?+[{_LEAD}]*+{_DATE}{_SEP}{_TIME}"
    rf"(?(open)\][ \t]|(?P<sep>{_STRONG}|{_WEAK[':']}|{_WEAK[';']}|{_WEAK[' ']})){_AUTHOR}",
    re.MULTILINE,
)


def _kind(m: re.Match[str]) -> str:
    """The separator after a header's time: "]" (iOS), "-" (Android), or a weak one (":", ";", " ")."""
    if m["open"]:
        return "]"
    sep = m["sep"]
    return "-" if "-" in sep else sep[0] if sep[0] in ":;" else " "


def _layout(text: str) -> str | None:
    """The weak separator a file's headers use, if they do: the one most lines that have an
    author use, among the first 64 KB, when no strong layout is more common there."""
    kinds = Counter(_kind(m) for m in _ANY.finditer(text, 0, 65536) if m["author"] is not None)
    strong = kinds.pop("]", 0) + kinds.pop("-", 0)
    weak = kinds.most_common(1)
    return weak[0][0] if weak and weak[0][1] > strong else None


@functools.cache
def _splitter(weak: str | None) -> re.Pattern[str]:
    """The headers of a file whose layout uses ``weak`` (or none), found in the whole text with the
    author when there is one (else a system line). The pattern starts with the newline before the
    header (the text is read with one put in front): a literal first character lets the regex
    engine skip to each line, where "^" in MULTILINE mode tries every place. Every quantifier is
    possessive ("?+", "*+", "{1,2}+"): what follows each one can never match what it gave back,
    and the author part may be empty, so a match never needs to backtrack; not saving the places to
    backtrack to makes the split a quarter faster."""
    after = _STRONG if weak is None else f"{_STRONG}|{_WEAK[weak]}"
    return re.compile(
        rf"\n[{_LEAD}]*+(?P<open>\[)?+[{_LEAD}]*+{_DATE}{_SEP}{_TIME}(?(open)\][ \t]|(?:{after})){_AUTHOR}"
    )  # fmt: skip


_A_YEAR = timedelta(days=366)
_FIELDS = 5  # what the split gives for each header: open, date, time, author, and the text after it

# Media and notices: English shapes are matched by pattern, every language by WhatsApp's own
# words (``whatsapp_strings``).
_MEDIA = re.compile(
    r"^(?:(?:(?P<doc>[^\n]+?) • [^\n]*?)?(?P<kind>image|video|audio|sticker|GIF|document|Contact card) omitted"
    # iOS with media: "<attached: 00000042-PHOTO-2020-06-07-15-13-20.jpg>" (a name before it too), in any language
    r"|(?:[^<>\n]*?[ \t])?<[ \t]*+(?P<label>[^<>:\n]{1,30}?)[ \t]*+:[ \t]*+(?P<file>[^<>\n]+?)[ \t]*+>"
    # iOS before 2017: "2015-08-04-PHOTO-00004762.jpg <attached>"
    r"|(?P<named>[^\s<>]{1,200}?\.\w{1,6}) <(?P<label2>[^<>\n]{1,40})>)$"
)
# Android with media: "IMG-20230815-WA0001.jpg (file attached)" on the first line, a caption below
_ATTACHED_LINE = re.compile(r"(?P<file>[^\n]{1,200}?\.\w{1,6}) \((?P<label>[^()\n]{1,40})\)")
_ATTACHED_ANYWHERE = re.compile(r"\.\w{1,6} [(<][^()<>\n]{1,40}[)>](?:\n|\Z)")  # whether a file has any
_ATTACHED_LABELS = {label.casefold() for label in strings.ATTACHED}
# A file named as WhatsApp names what it sends is an attachment whatever the words beside it:
# IMG-20230815-WA0001.jpg, PTT-…-WA0002.opus, 00000042-PHOTO-2020-06-07-15-13-20.jpg, a hex name
_WA_FILE = re.compile(r"^(?:(?:IMG|VID|AUD|PTT|STK|DOC)-\d{8}-WA\d+\.|\d{8}-|\d{4}-\d\d-\d\d-(?:PHOTO|VIDEO|AUDIO|GIF|STICKER)-|[0-9a-f]{32}\.)")
# "<Media omitted>" (Android, exported without media) and iOS's "image omitted", by their words
# without the brackets, casefolded: what each stands for
_OMITTED = {phrase.casefold(): kind for kind, phrases in strings.OMITTED.items() for phrase in phrases}
_DOCUMENT_OMITTED = tuple(f" {phrase.casefold()}" for phrase in strings.OMITTED["document"])  # after the file's name
_MEDIA_ENDINGS = ("omitted", ">", *_MARKS)  # an unmarked text that may be a placeholder (iOS marks its own)
_EDITED = "<This message was edited>"
# whole texts WhatsApp writes for what nobody typed, and what chatloom counts them as
_SYSTEM_TEXTS = {
    **{text: "system line" for text in (*strings.MISSED_CALLS, "Missed group voice call", "Missed group video call")},
    **{deleted: "deleted message" for text in strings.DELETED for deleted in (text, f"{text}.")},
}
_SYSTEM_LONGEST = max(map(len, _SYSTEM_TEXTS))
# The end-to-end encryption notice, the first line of every chat: under no name on Android (a
# system line), under the chat's name on iOS and in older group exports; older notices too
# ("Messages to this group are now secured", the French one as JBGruber/rwhatsapp @ 6e09da3
# tests/testthat/test-rwhatsapp.R quotes it)
_E2E_NOTICES = (*strings.E2E_NOTICES, "Messages to this group are now secured", "Messages you send to this group are now secured",
                "Messages to this chat and calls are now secured", "Les messages envoyés dans cette discussion et les appels")  # fmt: skip
_E2E_HEADS = {notice[:4] for notice in _E2E_NOTICES}  # a quick first test, on every message
# What iOS writes under a person's (or the group's) name after a U+200E mark, that nobody typed:
# the whole text must be one of these
_NOTICE = re.compile(
    r"(?:Messages (?:and calls are end-to-end encrypted|to this (?:group|chat)(?: and calls)? are now secured)[^\n]*"
    r"|Your security code with [^\n]+ changed[^\n]*|Missed (?:group )?(?:voice|video) call[^\n]*"
    r"|Waiting for this message[^\n]*"
    r"|[^\n]{1,80}? (?:changed (?:the group|this group's|their phone number)[^\n]*|created (?:the )?group[^\n]*"
    r"|joined using this group's invite link|left|was added|were added|added [^\n]{1,200}|removed [^\n]{1,200}))\s*"
)
_AUTHOR_STRIP = _MARKS + " "
class _Clock:
    """Dates and times parsed once per distinct string: a chat repeats both endlessly."""

    def __init__(self, order: str):
        self.order = order
        self.days: dict[str, datetime] = {}
        self.times: dict[str, timedelta] = {}

    def __call__(self, date: str, time: str) -> datetime:
        day = self.days.get(date)
        if day is None:
            day = self.days[date] = dates.parse(date, "0:00", self.order)
        offset = self.times.get(time)
        if offset is None:
            offset = self.times[time] = timedelta(0, dates.seconds_of_day(time))
        return day + offset


class WhatsAppSource(Source):
    name = "whatsapp"
    summary = "WhatsApp 'Export chat' .txt (iOS and Android, any locale); needs --me"
    extensions = (".txt",)
    stream = True

    def detect(self, path: Path, head: bytes) -> bool:
        """An export starts with a header line, and has another one soon, or headers are a good
        share of its lines (a long first message, pasted text, may hold many lines)."""
        lines = [line for line in head.decode("utf-8", errors="ignore").lstrip("\ufeff").splitlines() if line.strip()]
        if not lines or not _ANY.match(lines[0]):
            return False
        headers = sum(1 for line in lines if is_header(line))
        return headers >= 2 or len(lines) == 1 or headers >= len(lines) // 10

    def read(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        text, size = read_text(path)  # exports are text of tens of MB: read once, split with one regex
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        text = "\n" + text  # the headers' patterns start with the newline before them
        headers = _splitter(_layout(text))
        # One C call cuts the whole text at the headers: [before, open, date, time, author, body, open, …]
        parts = headers.split(text)
        if len(parts) == 1 and text.strip():
            first = text.strip().split("\n", 1)[0][:80]
            raise SourceError(
                f"no line of this file is a WhatsApp message header ('DATE, TIME - NAME: text' or '[DATE, TIME] NAME: text'); "
                f"its first line: '{first}'",
                file=str(path), where=1,
            )  # fmt: skip
        if parts[0].strip():
            reader.dropped["text before the first message"] += 1
        order = dates.detect_order(set(parts[2::_FIELDS]), self.options.date_format, file=str(path))
        chat = _chat_name(path, reader.file)
        yield from Sessionizer(self.options, reader).conversations(
            self._posts(text, parts, order, reader, _HeaderLines(text, headers)), fmt=self.name, chat_id=chat.replace(" ", "_"),
            file=path.name, title=chat, meta={"chat": chat},
        )  # fmt: skip
        reader.advance(size)

    def _posts(self, text: str, parts: list[str | None], order: str, reader: Reader, line_of: _HeaderLines) -> Iterator[Post]:
        clock = _Clock(order)
        days, times = clock.days, clock.times
        attachments = self.options.attachments
        dropped = reader.dropped
        marked = "\u200e" in text  # iOS: U+200E marks, inside texts too (removed)
        attached = _ATTACHED_ANYWHERE.search(text) is not None  # Android's "FILE (file attached)" lines
        fields = iter(parts)
        next(fields)  # what comes before the first header
        # Each post is held back one header: a "header" with no author and lines under it was
        # text of that post (a system line is one line), and goes back into it.
        held: Post | None = None
        held_at = -2  # the header the held post came from
        for n, (_, date, time, author, body) in enumerate(zip(fields, fields, fields, fields, fields)):  # type: ignore[misc]
            if author is None:
                if held_at == n - 1 and "\n" in body.strip():
                    held.text += "\n" + line_of.header(n) + body.rstrip()  # type: ignore[union-attr]
                    held_at = n
                else:
                    dropped["system line"] += 1
                continue
            day, offset = days.get(date), times.get(time)
            if day is None or offset is None:  # a date or a time not seen before
                try:
                    when = clock(date, time)
                except ValueError as err:
                    reader.bad(line_of(n), str(err))
                    continue
            else:
                when = day + offset
            marks = False  # iOS marks what it wrote itself (a notice, a placeholder) with U+200E
            if marked and "\u200e" in body:
                if body[:1] in _MARKS and _NOTICE.fullmatch(body, 1):
                    dropped["system line"] += 1
                    continue
                body = body.replace("\u200e", "")
                marks = True
            body = body.lstrip(_MARKS).strip()
            multi = "\n" in body
            if multi:
                _stray_headers(body, n, when, clock, line_of, reader)
            # a placeholder is the whole text, or its first line with a caption under it
            if marks or multi or body.endswith(_MEDIA_ENDINGS) or (attached and ")" in body):
                if body.endswith(_EDITED):
                    body = body[: -len(_EDITED)].rstrip()
                first, newline, caption = body.partition("\n")
                media = _media(first.strip(_MARKS), attached)
                if media is not None:
                    if not attachments:
                        if not caption.strip():
                            dropped["attachment"] += 1
                            continue
                        body = caption.strip()
                    else:
                        body = f"[attachment: {media}]{newline}{caption}"
            if not body:
                dropped["empty message"] += 1
            elif len(body) <= _SYSTEM_LONGEST and (reason := _SYSTEM_TEXTS.get(body)) is not None:
                dropped[reason] += 1
            # the notice comes first (Android writes it under no name: a system line), or marked (iOS)
            elif (marks or held is None) and body[:4] in _E2E_HEADS and body.startswith(_E2E_NOTICES):
                dropped["system line"] += 1
            else:
                if held is not None:
                    yield held
                held, held_at = Post(author.strip(_AUTHOR_STRIP), body, when), n
        if held is not None:
            yield held


def is_header(line: str) -> bool:
    """Whether a line is a WhatsApp message header in some layout: with a strong separator after
    its time ("]", " - "), or a weak one (": ", "; ", " ") and an author."""
    m = _ANY.match(line)
    return m is not None and (m["author"] is not None or _kind(m) in "]-")


_BRACKETED_TIME = re.compile(rf"[{_MARKS}]*+\[[^\]\n]{{0,40}}?\d[:.]\d\d[^\]\n]{{0,24}}\] ")


def resembles(line: str) -> bool:
    """Whether a line starts as a chat export's message does: a header in a layout chatloom
    reads, or "[…]" around a time (an iOS export in a layout it does not)."""
    return is_header(line) or _BRACKETED_TIME.match(line) is not None


def _stray_headers(body: str, n: int, when: datetime, clock: _Clock, line_of: _HeaderLines, reader: Reader) -> None:
    """Lines of a message that look like a header of another layout than the file's (an export cut
    and pasted together, a layout chatloom reads only as a file's own): kept as the message's
    text, and each reported with its line, so nothing is glued on silently. A line counts when
    it has a name followed by ": " and a date and time that can follow the message's own (a
    pasted log line, "04/05/2020 at 3:00 PM to 4:00 PM", is not one)."""
    for m in _ANY.finditer(body, body.index("\n") + 1):
        if m["author"] is None or body[m.end() - 1 : m.end()] != " " and body[m.end() : m.end() + 1] not in ("", "\n"):
            continue
        try:
            then = clock(m["date"], m["time"])
        except ValueError:
            continue
        if when <= then <= when + _A_YEAR:
            line = line_of(n) + body.count("\n", 0, m.start())
            reader.bad(line, f"a line that looks like a message header in another layout than the file's "
                             f"('{m[0].strip()}'); read as text of the message above it")  # fmt: skip


def _media(text: str, attached: bool = True) -> str | None:
    """What a media placeholder stands for (a file's name, or a kind: "media", "image", …), or
    None when ``text`` (one line) is not one. ``attached``: whether the file has Android's
    "FILE (file attached)" lines at all."""
    kind = _OMITTED.get(text.strip("<> ").casefold())
    if kind is not None:
        return kind
    if attached and text.endswith(")"):
        m = _ATTACHED_LINE.fullmatch(text)
        return m["file"] if m is not None and _is_attachment(m["file"], m["label"]) else None
    m = _MEDIA.match(text)
    if m is None:
        # iOS: "Template.docx • 2 pages document omitted", the words in any language
        folded = text.casefold()
        if not folded.endswith(_DOCUMENT_OMITTED):
            return None
        words = next(w for w in _DOCUMENT_OMITTED if folded.endswith(w))
        return text[: -len(words)].split(" • ", 1)[0].strip() or "document"
    if m["kind"]:
        return m["doc"] or m["kind"].lower()
    file = m["file"] or m["named"]
    return file if _is_attachment(file, m["label"] or m["label2"]) else None


def _is_attachment(file: str, label: str) -> bool:
    """"FILE (label)", "<label: FILE>" name an attachment: the label is WhatsApp's "file attached"
    or "attached" in some language, or the file is named as WhatsApp names what it sends."""
    return label.strip(_AUTHOR_STRIP).casefold() in _ATTACHED_LABELS or _WA_FILE.match(file.strip(_AUTHOR_STRIP)) is not None


def _chat_name(path: Path, shown: str) -> str:
    """The chat's name, from the export's name: "WhatsApp Chat with Bea.txt" (Android), or for
    iOS's "_chat.txt" the zip it came in ("WhatsApp Chat - Bea.zip") or the folder it is in.
    ``shown`` is the file as the user named it (``path`` may be chatloom's UTF-8 copy)."""
    stem = path.stem
    if stem == "_chat":
        stem = Path(shown.split("!", 1)[0]).stem if "!" in shown else Path(shown).parent.name or stem
    return re.sub(r"^WhatsApp Chat (?:with|mit|con|avec|-) ", "", stem).strip() or stem


class _HeaderLines:
    """The line of the n-th header, for error messages, and its text as written: the headers'
    places are found on the first call, and lines are counted on from the previous call (errors
    come in order). Both are rare: nothing is searched for a file without them."""

    def __init__(self, text: str, headers: re.Pattern[str]):
        self.text = text
        self.headers = headers
        self.spans: list[tuple[int, int]] | None = None
        self.at = self.line = 0  # a place in the text and its line, 0-based

    def _span(self, n: int) -> tuple[int, int]:
        if self.spans is None:
            self.spans = [m.span() for m in self.headers.finditer(self.text)]
        return self.spans[n]

    def header(self, n: int) -> str:
        """The n-th header's text, without the newline before it."""
        start, end = self._span(n)
        return self.text[start + 1 : end]

    def __call__(self, n: int) -> int:
        start = self._span(n)[0]
        if start < self.at:
            self.at = self.line = 0
        self.line += self.text.count("\n", self.at, start)
        self.at = start
        return self.line + 1
