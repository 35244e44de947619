"""``discord``: DiscordChatExporter exports, JSON, TXT (PlainText) and CSV.

JSON keeps message ids and reply links (``reference.messageId``) and is read streaming: DCE
writes the ``messages`` array indented, one object per message at a fixed depth, and a JSON string
cannot hold a raw newline, so the line ``    },`` can only end a message. Whole runs of messages
are cut at those lines and parsed with one orjson call each, so memory stays flat on a 1 GB file.
A file in another layout (minified) is read with ijson, streaming too.

TXT and CSV have no message types: system messages are recognized by the texts DCE writes for them
("Joined the server.", "Started a thread.", …). Their dates follow the exporter's locale, and the
day/month order is decided from the whole file (see ``dates``).

Authors are their user names without the old ``#1234`` discriminator, as in the JSON's ``name``,
so ``--me`` is the same for every layout.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import orjson

from ..errors import SourceError
from ..jsonl import fault_path
from ..model import Conversation
from . import dates
from .base import (
    BOM,
    ItemLines,
    Reader,
    Source,
    check_json_end,
    check_text,
    csv_rows,
    json_error,
    json_too_deep,
    read_text,
    skip_bom,
    under,
)
from .stream import DISCRIMINATOR, Post, Sessionizer


class _Author(msgspec.Struct):
    name: str = ""
    nickname: str | None = None


class _File(msgspec.Struct):
    fileName: str = "file"  # noqa: N815 (DCE's field name)


class _Sticker(msgspec.Struct):
    name: str = "sticker"


class _Embed(msgspec.Struct):
    title: str | None = None
    url: str | None = None


class _Reference(msgspec.Struct):
    messageId: str | None = None  # noqa: N815


class DceMessage(msgspec.Struct):
    """The fields of a DCE message chatloom reads; msgspec skips the rest without building them."""

    id: str | None = None
    type: str = "Default"
    timestamp: datetime | None = None
    content: str | None = ""
    author: _Author = msgspec.field(default_factory=_Author)
    attachments: list[_File] = []
    stickers: list[_Sticker] = []
    embeds: list[_Embed] = []
    reference: _Reference | None = None


class _Guild(msgspec.Struct):
    name: str | None = None


class _Channel(msgspec.Struct):
    id: str | int | None = None
    name: str | None = None
    category: str | None = None


class _Header(msgspec.Struct):
    """The fields of an export's header chatloom reads, with their types."""

    guild: _Guild = msgspec.field(default_factory=_Guild)
    channel: _Channel = msgspec.field(default_factory=_Channel)


_decode_messages = msgspec.json.Decoder(list[DceMessage]).decode

CHUNK = 1 << 23
_END = b"\n    },"  # the end of one message object inside DCE's indented "messages" array
_KEPT_TYPES = {"Default", "Reply"}
_SYSTEM_TEXT = re.compile(
    r"^(Joined the server\.|Started a thread\.|Pinned a message\.|Left the group\.|Changed the channel (name|icon).*|"
    r"Started a call( that lasted .*)?\.?|Added .+ to the group\.|Removed .+ from the group\.|Added a recipient\.|Removed a recipient\.)$"
)
_DCE_END = re.compile(rb'\]\s*(?:,\s*"messageCount"\s*:\s*\d+\s*)?\}\s*\Z')  # "messages": […], "messageCount": N }


def _each_message(part: bytes, line: int, reader: Reader, path: Path) -> list[DceMessage]:
    """The messages of a run (DCE's indented layout, from ``line``), each checked on its own: one
    of another shape (``"content": 5``, ``"author": null``, a number) is a bad record at its own
    line."""
    stripped = part.lstrip()
    first = line + part.count(b"\n", 0, len(part) - len(stripped))
    data = b"[" + stripped.lstrip(b",") + b"]"
    try:
        items = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError) as err:
        raise SourceError(f"not valid JSON: {err}", file=str(path), where=line) from None
    lines = ItemLines(data)
    good = []
    for i, m in enumerate(items):
        message = _message(m, lambda fault: reader.bad(first + (lines(i) or 1) - 1 if reader.showing else None,  # noqa: B023 (called at once)
                                                        f"not a DiscordChatExporter message: {fault}"))
        if message is not None:
            good.append(message)
    return good


def _message(m: Any, bad: Callable[[str], None]) -> DceMessage | None:
    """A message parsed as JSON, in its shape (as strict as a typed decode: a number is no
    time); else ``bad(what is wrong)``."""
    try:
        return msgspec.convert(m, DceMessage)
    except msgspec.ValidationError as err:
        bad(fault_path(err))
        return None


_MESSAGE_START = re.compile(rb"(?m)^    \{")
WHOLE_BELOW = 64 << 20  # a minified export up to this size is parsed at once


def _check_depth(path: Path) -> None:
    """Refuse a file nested deeper than ``MAX_DEPTH`` before ijson reads it."""
    with open(path, "rb") as f:
        if json_too_deep(f):
            raise SourceError("nested too deeply to read", file=str(path))


def _basename(url_or_path: str) -> str:
    """``https://cdn…/image.png`` or ``Export_Files\\123-ABC.png`` → the file's own name."""
    return re.split(r"[/\\]", url_or_path.strip())[-1]


def _chat(header: dict[str, Any], path: Path) -> tuple[str, str | None, dict[str, Any]]:
    """Chat id, title and meta from a JSON export's ``guild`` and ``channel`` (of another shape:
    an error, as the export's header is not a record)."""
    try:
        h = msgspec.convert({k: header[k] for k in ("guild", "channel") if k in header}, _Header)
    except msgspec.ValidationError as err:
        raise SourceError(f"not a DiscordChatExporter export: {fault_path(err)}", file=str(path)) from None
    title = " / ".join(x for x in (h.guild.name, h.channel.category, h.channel.name) if x) or None
    meta = {k: v for k, v in (("guild", h.guild.name), ("channel", h.channel.name)) if v}
    return str(h.channel.id or path.stem), title, meta


def _once(posts: Iterator[Post], reader: Reader) -> Iterator[Post]:
    """Each message once: an export that holds a message id twice (two exports of one channel
    pasted together, an overlapping partition) keeps its first copy, and the others are counted.
    Discord's ids (snowflakes) grow with time and DCE writes messages in order, so an id above
    the last one is new, found by comparing the strings; the ids seen are kept as 8-byte integers
    in a sorted array (a set of strings would cost ten times the memory on a large export),
    converted in blocks, and searched only for an id that is not above the last one. An id out of
    order, or not a number, goes into a set."""
    seen, pending, others = array("Q"), [], set()
    last = ""
    for post in posts:
        pid = post.id
        if pid is not None:
            if len(pid) > len(last) or (len(pid) == len(last) and pid > last):
                last = pid
                pending.append(pid)
                if len(pending) >= 4096:
                    _keep(seen, pending, others)
            else:
                _keep(seen, pending, others)
                if pid in others or (pid.isdigit() and _holds(seen, int(pid))):
                    reader.dropped["message id seen before"] += 1
                    continue
                others.add(pid)
        yield post


def _keep(seen: array[int], pending: list[str], others: set[str]) -> None:
    """Move the ids read in order into ``seen`` (those that are not 64-bit numbers into ``others``)."""
    try:
        block = array("Q", map(int, pending))  # whole or nothing: seen stays sorted
    except (ValueError, OverflowError):
        numbers = [pid for pid in pending if pid.isdigit() and int(pid) < 1 << 64]
        others.update(set(pending) - set(numbers))
        block = array("Q", map(int, numbers))
    seen.extend(block)
    pending.clear()


def _holds(seen: array[int], n: int) -> bool:
    i = bisect_left(seen, n)
    return i < len(seen) and seen[i] == n


def _author(name: str) -> str:
    return DISCRIMINATOR.sub("", name.strip())


class DiscordSource(Source):
    name = "discord"
    summary = "DiscordChatExporter export: JSON (streaming, replies kept), TXT or CSV; needs --me"
    extensions = (".json", ".txt", ".csv")
    stream = True

    def detect(self, path: Path, head: bytes) -> bool:
        text = head.lstrip(b"\xef\xbb\xbf").lstrip()
        if text.startswith(b"{"):
            return b'"guild"' in head and b'"channel"' in head
        if text.startswith(b"=" * 20):
            return b"\nGuild: " in head and b"\nChannel: " in head
        return text.startswith(b"AuthorID,Author,Date,Content") or text.startswith(b'"AuthorID","Author","Date","Content"')

    def read(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        with open(path, "rb") as f:
            head = f.read(4096)
        check_text(path, head)
        text = head.lstrip(b"\xef\xbb\xbf").lstrip()
        if text.startswith(b"{"):
            yield from self._json(path, reader)
        elif text.startswith(b"="):
            yield from self._txt(path, reader)
        else:
            yield from self._csv(path, reader)

    # -- helpers shared by the layouts ---------------------------------------------------------

    def _text(self, content: str, attachments: list[str], stickers: list[str], embeds: list[str], reader: Reader) -> str | None:
        """The turn's text with placeholders, or None when nothing is left (counted)."""
        parts = [content] if content.strip() else []
        if self.options.attachments:
            parts += [f"[attachment: {a}]" for a in attachments]
            parts += [f"[sticker: {s}]" for s in stickers]
            if not parts:
                parts += [f"[embed: {e}]" for e in embeds]
        if not parts:
            reader.dropped["empty message"] += 1
            return None
        return "\n".join(parts)

    def _sessions(self, posts: Iterator[Post], reader: Reader, path: Path, chat_id: str, title: str | None,
                  meta: dict[str, Any]) -> Iterator[Conversation]:  # fmt: skip
        return Sessionizer(self.options, reader).conversations(
            _once(posts, reader), fmt=self.name, chat_id=chat_id, file=path.name, title=title, meta=meta
        )

    # -- JSON ----------------------------------------------------------------------------------

    def _json(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        check_json_end(path, _DCE_END, "the file ends inside the messages array (truncated?)")
        with open(path, "rb") as f:
            head = f.read(1 << 20)
            at = head.find(b'"messages": [')
            after = head[at + 13 : at + 80] if at >= 0 else b""
            if at < 0 or not (re.match(rb"\r?\n    \{", after) or after.lstrip().startswith(b"]")):  # not DCE's indented layout
                yield from self._json_fallback(path, reader)
                return
            try:
                header = orjson.loads(head[:at].removeprefix(BOM).rstrip().rstrip(b",") + b"}")
            except orjson.JSONDecodeError:
                header = {}
            start = at + len(b'"messages": [')
            line = head.count(b"\n", 0, start) + 1
            posts = self._json_posts(f, start, line, path, reader)
            yield from self._sessions(posts, reader, path, *_chat(header, path))

    def _json_posts(self, f: Any, start: int, line: int, path: Path, reader: Reader) -> Iterator[Post]:
        f.seek(start)
        buf = b""
        while True:
            chunk = f.read(CHUNK)
            buf += chunk
            if chunk:
                cut = buf.rfind(_END)
                if cut < 0:
                    continue  # one message bigger than a chunk: read on
                part, buf = buf[: cut + len(_END) - 1], buf[cut + len(_END) :]
            else:
                end = buf.rfind(b"\n    }")
                tail = buf[end + 6 :] if end >= 0 else buf
                if not tail.lstrip().startswith(b"]"):
                    raise SourceError("the file ends inside the messages array (truncated?)", file=str(path), where=line + buf.count(b"\n"))
                if end < 0:
                    return
                part, buf = buf[: end + 6], b""
            body = part.strip().lstrip(b",")
            try:
                messages = _decode_messages(b"[" + body + b"]")
            except msgspec.ValidationError:  # a message of another shape: each one checked on its own
                messages = _each_message(part, line, reader, path)
            except msgspec.DecodeError as err:
                raise SourceError(f"not valid JSON: {err}", file=str(path), where=line) from None
            for m in messages:
                post = self._json_post(m, reader)
                if post is not None:
                    yield post
            line += part.count(b"\n")
            reader.advance(f.tell())
            if not chunk:
                return

    def _json_post(self, m: DceMessage, reader: Reader) -> Post | None:
        if m.type not in _KEPT_TYPES:
            reader.dropped["system message"] += 1
            return None
        content = m.content or ""
        if content and not (m.attachments or m.stickers):  # the common case, kept short
            text = content
        else:
            text = self._text(
                content,
                [a.fileName for a in m.attachments],
                [s.name for s in m.stickers],
                [e.title or e.url or "link" for e in m.embeds],
                reader,
            )
            if text is None:
                return None
        name = m.author.name or m.author.nickname or "unknown"
        return Post(
            author=DISCRIMINATOR.sub("", name) if "#" in name else name,
            text=text,
            time=m.timestamp,
            id=m.id,
            reply_to=m.reference.messageId if m.reference is not None else None,
        )

    def _json_fallback(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        """Any other JSON layout of the same schema (a minified export): parsed at once up to
        64 MB (orjson stops at 1,024 levels of nesting), streamed with ijson above, after a scan
        for deep nesting (ijson's memory grows with the square of the depth)."""
        if path.stat().st_size <= WHOLE_BELOW:
            yield from self._json_whole(path, reader)
            return
        import ijson

        _check_depth(path)
        with open(path, "rb") as f:
            start = skip_bom(f)
            header: dict[str, Any] = {}
            for key in ("guild", "channel"):
                f.seek(start)
                try:
                    header[key] = next(ijson.items(f, key), {})
                except (ijson.JSONError, StopIteration):
                    header[key] = {}
            f.seek(start)

            def posts() -> Iterator[Post]:
                i = -1
                try:
                    for i, m in enumerate(ijson.items(f, "messages.item", use_float=True)):
                        message = _message(m, lambda fault: reader.bad(None, under(f"$.messages[{i}]", fault)))  # noqa: B023 (called at once)
                        post = self._json_post(message, reader) if message is not None else None
                        if post is not None:
                            yield post
                    if i < 0:  # no message: is there a list of them at all?
                        f.seek(start)
                        if not any(p == "messages" and e == "start_array" for p, e, _ in ijson.parse(f)):
                            raise SourceError("not a DiscordChatExporter export: no 'messages' list", file=str(path))
                except ijson.JSONError as err:
                    raise SourceError(f"not valid JSON: {err}", file=str(path)) from None

            yield from self._sessions(posts(), reader, path, *_chat(header, path))

    def _json_whole(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        data = path.read_bytes().removeprefix(BOM)
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as err:
            raise json_error(data, err, path) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("messages"), list):
            raise SourceError("not a DiscordChatExporter export: no 'messages' list", file=str(path))

        def posts() -> Iterator[Post]:
            for i, m in enumerate(doc["messages"]):
                message = _message(m, lambda fault: reader.bad(None, under(f"$.messages[{i}]", fault)))  # noqa: B023 (called at once)
                post = self._json_post(message, reader) if message is not None else None
                if post is not None:
                    yield post

        yield from self._sessions(posts(), reader, path, *_chat(doc, path))

    # -- TXT -----------------------------------------------------------------------------------

    # the bracket holds a date and a time ("[Spoiler warning] …" after a blank line is text)
    _TXT_HEADER = re.compile(r"^\[(?P<when>(?=[^\]]*\d[:.]\d\d)[^\]]{6,40})\] (?P<author>.+?)(?: \(pinned\))?$")

    def _txt(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        text, size = read_text(path)
        lines = text.splitlines()
        meta: dict[str, Any] = {}
        for line in lines[:8]:
            for key in ("Guild", "Channel"):
                if line.startswith(f"{key}: "):
                    meta[key.lower()] = line[len(key) + 2 :].strip()
        headers = [(i, m) for i, line in enumerate(lines) if (m := self._TXT_HEADER.match(line)) and (i == 0 or not lines[i - 1].strip())]
        order = dates.detect_order((dates.split_datetime(m["when"])[0] for _, m in headers), self.options.date_format, file=str(path))

        def posts() -> Iterator[Post]:
            for n, (i, m) in enumerate(headers):
                end = headers[n + 1][0] if n + 1 < len(headers) else len(lines)
                body = lines[i + 1 : end]
                while body and (not body[-1].strip() or body[-1].startswith("=====") or body[-1].startswith("Exported ")):
                    body.pop()
                content, attachments, stickers = [], [], []
                section = content
                for line in body:
                    if line in ("{Attachments}", "{Stickers}", "{Embed}", "{Reactions}"):
                        section = {"{Attachments}": attachments, "{Stickers}": stickers}.get(line, [])
                    elif line.strip():
                        section.append(line)
                    elif section is content:
                        content.append(line)
                text = "\n".join(content).strip("\n").rstrip()  # a first line's indent is the author's
                if _SYSTEM_TEXT.match(text) and not attachments:
                    reader.dropped["system message"] += 1
                    continue
                try:
                    when = dates.parse_any(m["when"], order)
                except ValueError as err:
                    reader.bad(i + 1, str(err))
                    continue
                out = self._text(text, [_basename(a) for a in attachments], [_basename(s) for s in stickers], [], reader)
                if out is not None:
                    yield Post(author=_author(m["author"]), text=out, time=when)

        # the guild too: every server has a "Text Channels / general"
        chat_id = "/".join(x for x in (meta.get("guild"), meta.get("channel", path.stem)) if x).replace(" ", "")
        yield from self._sessions(posts(), reader, path, chat_id, " / ".join(meta.values()) or None, meta)
        reader.advance(size)

    # -- CSV -----------------------------------------------------------------------------------

    def _csv(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        text, size = read_text(path)
        rows = csv_rows(text, path, reader)
        if not rows or rows[0][1][:4] != ["AuthorID", "Author", "Date", "Content"]:
            raise SourceError("expected DiscordChatExporter's CSV header AuthorID,Author,Date,Content,…", file=str(path), where=1)
        order = dates.detect_order((dates.split_datetime(r[2])[0] for _, r in rows[1:] if len(r) > 2), self.options.date_format, file=str(path))

        def posts() -> Iterator[Post]:
            for n, row in rows[1:]:
                if len(row) < 4:
                    reader.bad(n, f"expected at least 4 columns, got {len(row)}")
                    continue
                author_id, author, when_text, content = row[:4]
                attachments = [_basename(a) for a in (row[4].split(",") if len(row) > 4 and row[4] else [])]
                if _SYSTEM_TEXT.match(content.strip()) and not attachments:
                    reader.dropped["system message"] += 1
                    continue
                try:
                    when = dates.parse_any(when_text, order)
                except ValueError as err:
                    reader.bad(n, str(err))
                    continue
                out = self._text(content, attachments, [], [], reader)
                if out is not None:
                    yield Post(author=_author(author), text=out, time=when)

        yield from self._sessions(posts(), reader, path, path.stem.replace(" ", ""), None, {})
        reader.advance(size)
