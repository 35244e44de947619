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
    r"(?P<time>\d{1,2}:\d{2}(?::\d{2})?(?:[\s\u202f\u00a0_]*[AaPp]\.?\s?[Mm]\.?)?)\]?(?:\s-\s|\s)(?P<rest>.*)$"
)
# the same header, matched over the whole text, with the author when there is one (else a system line)
_HEADER_M = re.compile(
    r"^[\u200e\u200f]?\[?(?P<date>\d{1,4}[./-]\d{1,2}[./-]\d{1,4}),?[ \t]"
    r"(?P<time>\d{1,2}:\d{2}(?::\d{2})?(?:[ \t\u202f\u00a0_]*[AaPp]\.?[ ]?[Mm]\.?)?)\]?(?:[ \t]-[ \t]|[ \t])"
    r"(?:(?:~[ \t\u202f\u00a0])?(?P<author>[^:\"\u200e\n]{1,80}?):(?:[ \t])?)?",
    re.MULTILINE,
)
_DATE_ONLY = re.compile(r"^[\u200e\u200f]?\[?(\d{1,4}[./-]\d{1,2}[./-]\d{1,4}),?[ \t]\d{1,2}:\d{2}", re.MULTILINE)
_MEDIA = re.compile(
    r"^(?:<Media omitted>|(?P<kind>image|video|audio|sticker|GIF|document|Contact card) omitted|<attached: (?P<file>[^>]+)>)$"
)
_DELETED = ("This message was deleted", "You deleted this message")
_SYSTEM_PREFIXES = ("Messages and calls are end-to-end encrypted", "Messages to this group are now secured")
_MARKS = "\u200e\u200f"


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
            t = dates.parse("2000-01-01", time, "ymd")
            offset = self.times[time] = timedelta(hours=t.hour, minutes=t.minute, seconds=t.second)
        return day + offset


class WhatsAppSource(Source):
    name = "whatsapp"
    summary = "WhatsApp 'Export chat' .txt (iOS and Android, any locale); needs --me"
    extensions = (".txt",)
    stream = True

    def detect(self, path: Path, head: bytes) -> bool:
        lines = head.decode("utf-8", errors="ignore").splitlines()[:20]
        matched = sum(1 for line in lines if _HEADER.match(line.lstrip("\ufeff")))
        return matched >= max(1, sum(1 for text in lines if text.strip()) // 3)

    def read(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        text, size = read_text(path)  # exports are text of tens of MB: read once, split with one regex
        order = dates.detect_order(set(_DATE_ONLY.findall(text)), self.options.get("date_format"), file=str(path))
        chat = re.sub(r"^WhatsApp Chat (with|mit|con|avec) ", "", path.stem).strip() or path.stem
        yield from Sessionizer(self.options, reader).conversations(
            self._posts(text, order, reader), fmt=self.name, chat_id=chat.replace(" ", "_"), file=path.name,
            title=chat, meta={"chat": chat},
        )  # fmt: skip
        reader.advance(size)

    def _posts(self, text: str, order: str, reader: Reader) -> Iterator[Post]:
        when_of = _Clock(order)
        matches = _HEADER_M.finditer(text)
        m = next(matches, None)
        while m is not None:
            nxt = next(matches, None)
            body = text[m.end() : nxt.start() if nxt is not None else len(text)].rstrip("\r\n")
            author = m["author"]
            if author is None:
                reader.dropped["system line"] += 1
            else:
                try:
                    when = when_of(m["date"], m["time"])
                except ValueError as err:
                    reader.bad(text.count("\n", 0, m.start()) + 1, str(err))
                else:
                    post = self._finish(Post(author=author.strip(_MARKS + " "), text=body.lstrip(_MARKS), time=when), reader)
                    if post is not None:
                        yield post
            m = nxt

    def _finish(self, post: Post, reader: Reader) -> Post | None:
        text = post.text.strip()
        if text.startswith(_SYSTEM_PREFIXES):
            reader.dropped["system line"] += 1
            return None
        if text in _DELETED:
            reader.dropped["deleted message"] += 1
            return None
        media = _MEDIA.match(text.strip(_MARKS))
        if media:
            if not self.options.get("attachments", True):
                reader.dropped["attachment"] += 1
                return None
            text = f"[attachment: {media['file'] or (media['kind'] or 'media').lower()}]"
        if not text:
            reader.dropped["empty message"] += 1
            return None
        post.text = text
        return post
