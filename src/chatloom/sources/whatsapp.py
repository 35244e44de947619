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
from pathlib import Path

from ..errors import SourceError
from ..model import Conversation
from . import dates
from .base import Reader, Source, check_text
from .stream import Post, Sessionizer

_HEADER = re.compile(
    r"^[\u200e\u200f]?\[?(?P<date>\d{1,4}[./-]\d{1,2}[./-]\d{1,4}),?\s"
    r"(?P<time>\d{1,2}:\d{2}(?::\d{2})?(?:[\s\u202f\u00a0_]*[AaPp]\.?\s?[Mm]\.?)?)\]?(?:\s-\s|\s)(?P<rest>.*)$"
)
_AUTHOR = re.compile(r"^(?:~[\s\u202f\u00a0])?(?P<author>[^:\"\u200e]{1,80}?):(?:\s|$)?(?P<text>.*)$")
_MEDIA = re.compile(
    r"^(?:<Media omitted>|(?P<kind>image|video|audio|sticker|GIF|document|Contact card) omitted|<attached: (?P<file>[^>]+)>)$"
)
_DELETED = ("This message was deleted", "You deleted this message")
_SYSTEM_PREFIXES = ("Messages and calls are end-to-end encrypted", "Messages to this group are now secured")
_MARKS = "\u200e\u200f"


class WhatsAppSource(Source):
    name = "whatsapp"
    summary = "WhatsApp 'Export chat' .txt (iOS and Android, any locale); needs --me"
    extensions = (".txt",)
    stream = True

    def detect(self, path: Path, head: bytes) -> bool:
        try:
            lines = head.decode("utf-8", errors="ignore").splitlines()[:20]
        except UnicodeDecodeError:
            return False
        matched = sum(1 for line in lines if _HEADER.match(line.lstrip("\ufeff")))
        return matched >= max(1, sum(1 for text in lines if text.strip()) // 3)

    def _lines(self, path: Path) -> Iterator[tuple[int, str]]:
        with open(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise SourceError("not UTF-8 text", file=str(path), where=n) from None
                yield n, line.rstrip("\r\n").lstrip("\ufeff") if n == 1 else line.rstrip("\r\n")

    def read(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        with open(path, "rb") as f:
            check_text(path, f.read(4096))
        order = dates.detect_order(
            (m["date"] for _, line in self._lines(path) if (m := _HEADER.match(line))), self.options.get("date_format"), file=str(path)
        )
        chat = re.sub(r"^WhatsApp Chat (with|mit|con|avec) ", "", path.stem).strip() or path.stem
        yield from Sessionizer(self.options, reader).conversations(
            self._posts(path, order, reader), fmt=self.name, chat_id=chat.replace(" ", "_"), file=path.name,
            title=chat, meta={"chat": chat},
        )  # fmt: skip
        reader.advance(path.stat().st_size)

    def _posts(self, path: Path, order: str, reader: Reader) -> Iterator[Post]:
        current: Post | None = None
        for n, line in self._lines(path):
            m = _HEADER.match(line)
            if not m:
                if current is not None:
                    current.text += "\n" + line
                continue
            if current is not None:
                post = self._finish(current, reader)
                if post is not None:
                    yield post
                current = None
            a = _AUTHOR.match(m["rest"])
            if not a:
                reader.dropped["system line"] += 1
                continue
            try:
                when = dates.parse(m["date"], m["time"], order)
            except ValueError as err:
                reader.bad(n, str(err))
                continue
            current = Post(author=a["author"].strip(_MARKS + " "), text=a["text"].lstrip(_MARKS), time=when)
        if current is not None:
            post = self._finish(current, reader)
            if post is not None:
                yield post

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
