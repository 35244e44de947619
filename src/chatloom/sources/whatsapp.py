"""``whatsapp``: WhatsApp's "Export chat" ``.txt``.

Layouts (all seen in real exports):

    [8/15/23, 9:12:43 AM] Dr. Feather: text            iOS, with U+200E marks
    [01/01/19 11:25] John Doe: text                     iOS, 24 h, no comma
    7/19/22, 11:32 PM - User 1: Hello                   Android (U+202F before PM)
    01/01/2019, 11:25 a. m. - John Doe: text            Android, Spanish
    [1/24/21, 12:41:03 PM] ~ User name 2: Of course!    not in the contacts

A line without a date header continues the message before it. Lines without ``Name:`` are
system lines ("You were added", "… created group …") and are dropped, as is the end-to-end
encryption notice. ``<Media omitted>`` / ``image omitted`` / ``<attached: file>`` become
``[attachment: …]`` (dropped with ``--no-attachments``); deleted messages are dropped. Whether
dates are day-first is decided from the whole file (``dates.detect_order``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from ..model import Conversation
from . import dates
from .base import Reader, Source, read_text
from .stream import Post, Sessionizer

_HEADER = re.compile(
    r"^[\u200e\u200f]?\[?(?P<date>\d{1,4}[./-]\d{1,2}[./-]\d{1,4}),?\s"
    r"(?P<time>\d{1,2}[:.]\d{2}(?:[:.]\d{2})?(?:[\s\u202f\u00a0_]*[AaPp]\.?\s?[Mm]\.?)?)\]?(?:\s-\s|\s)(?P<rest>.*)$"
)
# The same header, found in the whole text with the author when there is one (else a system line).
# It starts with the newline before it (the text is read with one put in front): a literal first
# character lets the regex engine skip to each line, where "^" in MULTILINE mode tries every place.
# Every quantifier is possessive ("?+", "*+", "{1,2}+"): what follows each one can never match what
# it gave back, and the author part may be empty, so a match never needs to backtrack; not saving
# the places to backtrack to makes the split a quarter faster.
# A header is "[date, time] " (iOS) or "date, time - " (Android): a line of a message that only
# starts with a date and a time ("1/3/23, 10:00 works for me") is not one.
_HEADER_M = re.compile(
    r"\n[\u200e\u200f]?+(?P<open>\[)?+(?P<date>\d{1,4}+[./-]\d{1,2}+[./-]\d{1,4}+),?+[ \t]"
    r"(?P<time>\d{1,2}+[:.]\d{2}(?:[:.]\d{2})?+(?:[ \t\u202f\u00a0_]*+[AaPp]\.?+[ \u202f\u00a0]?+[Mm]\.?+)?+)"
    r"(?(open)\][ \t]|[ \t]-[ \t])"
    r"(?:(?:~[ \t\u202f\u00a0])?+(?P<author>[^:\"\u200e\n]{1,80}+):[ \t]?+)?+"  # a name holds no ':'
)
_FIELDS = 5  # what the split gives for each header: open, date, time, author, and the text after it
_MEDIA = re.compile(
    r"^(?:<Media omitted>|(?:(?P<doc>[^\n]+?) • [^\n]*?)?(?P<kind>image|video|audio|sticker|GIF|document|Contact card) omitted"
    r"|<attached: (?P<file>[^>]+)>)$"
)
_ATTACHED = " (file attached)"  # Android, with media: "IMG-20230815-WA0001.jpg (file attached)", a caption below
_EDITED = "<This message was edited>"
_DELETED = ("This message was deleted", "You deleted this message", "This message was deleted.", "You deleted this message.")
_SYSTEM_PREFIXES = ("Messages and calls are end-to-end encrypted", "Messages to this group are now secured")
# What iOS writes under a person's (or the group's) name after a U+200E mark, that nobody typed:
# the whole text must be one of these
_NOTICE = re.compile(
    r"(?:Messages (?:and calls are end-to-end encrypted|to this (?:group|chat)(?: and calls)? are now secured)[^\n]*"
    r"|Your security code with [^\n]+ changed[^\n]*|Missed (?:group )?(?:voice|video) call[^\n]*"
    r"|Waiting for this message[^\n]*"
    r"|[^\n]{1,80}? (?:changed (?:the group|this group's|their phone number)[^\n]*|created (?:the )?group[^\n]*"
    r"|joined using this group's invite link|left|was added|were added|added [^\n]{1,200}|removed [^\n]{1,200}))\s*"
)
_MARKS = "\u200e\u200f"
_AUTHOR_STRIP = _MARKS + " "
_MEDIA_ENDINGS = ("omitted", ">", *_MARKS)  # a text that may be a media placeholder (checked by _MEDIA)


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
        if not lines or not _HEADER.match(lines[0]):
            return False
        headers = sum(1 for line in lines if _HEADER.match(line))
        return headers >= 2 or len(lines) == 1 or headers >= len(lines) // 10

    def read(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        text, size = read_text(path)  # exports are text of tens of MB: read once, split with one regex
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        text = "\n" + text  # the headers' patterns start with the newline before them
        # One C call cuts the whole text at the headers: [before, open, date, time, author, body, open, …]
        parts = _HEADER_M.split(text)
        if parts[0].strip():
            reader.dropped["text before the first message"] += 1
        order = dates.detect_order(set(parts[2::_FIELDS]), self.options.date_format, file=str(path))
        chat = _chat_name(path, reader.file)
        yield from Sessionizer(self.options, reader).conversations(
            self._posts(text, parts, order, reader), fmt=self.name, chat_id=chat.replace(" ", "_"), file=path.name,
            title=chat, meta={"chat": chat},
        )  # fmt: skip
        reader.advance(size)

    def _posts(self, text: str, parts: list[str | None], order: str, reader: Reader) -> Iterator[Post]:
        clock = _Clock(order)
        days, times = clock.days, clock.times
        attachments = self.options.attachments
        dropped = reader.dropped
        line_of = _HeaderLines(text)
        marked = "\u200e" in text  # iOS: U+200E marks, inside texts too (removed)
        attached = _ATTACHED in text
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
            if marked:
                if body[:1] in _MARKS and _NOTICE.fullmatch(body, 1):
                    dropped["system line"] += 1
                    continue
                body = body.replace("\u200e", "")
            body = body.lstrip(_MARKS).strip()
            if body.endswith(_MEDIA_ENDINGS):
                if body.endswith(_EDITED):
                    body = body[: -len(_EDITED)].rstrip()
                media = _MEDIA.match(body.strip(_MARKS))
                if media:
                    if not attachments:
                        dropped["attachment"] += 1
                        continue
                    body = f"[attachment: {media['file'] or media['doc'] or (media['kind'] or 'media').lower()}]"
            if attached and _ATTACHED in body:
                body = _attachment_line(body, attachments)
                if body is None:
                    dropped["attachment"] += 1
                    continue
            if not body:
                dropped["empty message"] += 1
            elif body.startswith(_SYSTEM_PREFIXES):
                dropped["system line"] += 1
            elif body in _DELETED:
                dropped["deleted message"] += 1
            else:
                if held is not None:
                    yield held
                held, held_at = Post(author.strip(_AUTHOR_STRIP), body, when), n
        if held is not None:
            yield held


def _attachment_line(body: str, keep: bool) -> str | None:
    """Android's "FILE (file attached)" first line as a placeholder (or gone), its caption kept."""
    first, newline, caption = body.partition("\n")
    if not first.endswith(_ATTACHED):
        return body
    if not keep:
        return caption.strip() or None
    return f"[attachment: {first[: -len(_ATTACHED)].strip()}]" + (newline + caption if caption else "")


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

    def __init__(self, text: str):
        self.text = text
        self.spans: list[tuple[int, int]] | None = None
        self.at = self.line = 0  # a place in the text and its line, 0-based

    def _span(self, n: int) -> tuple[int, int]:
        if self.spans is None:
            self.spans = [m.span() for m in _HEADER_M.finditer(self.text)]
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
