"""``telegram``: Telegram Desktop's ``result.json``, one chat or a full export (``chats.list``).

``text`` is a string or a list of strings and ``{type, text}`` entities: they are flattened to
plain text. Service messages (joins, pins, calls) are dropped; replies keep their link
(``reply_to_message_id``); photos, files and stickers become ``[attachment: …]`` placeholders (or
are dropped with ``--no-attachments``). Each chat of a full export is sessionized on its own.

Files up to 256 MB are parsed at once with orjson (fast); larger ones stream through ijson, one
chat (or one message of a single-chat export) at a time, so memory stays flat.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec

from ..errors import SourceError
from ..jsonl import fault_path
from ..model import Conversation
from .base import BOM, Reader, Source, check_json_end, check_text, json_error, skip_bom, under
from .stream import Post, Sessionizer

STREAM_ABOVE = 256 << 20


class _Entity(msgspec.Struct):
    text: str = ""


class TgMessage(msgspec.Struct):
    """The fields of a Telegram message chatloom reads; msgspec skips the others unbuilt."""

    id: int | str | None = None
    type: str = "message"
    date: str | None = None
    date_unixtime: str | int | None = None
    from_: str | None = msgspec.field(default=None, name="from")
    actor: str | None = None
    text: str | list[str | _Entity] = ""
    reply_to_message_id: int | str | None = None
    photo: str | None = None
    file: str | None = None
    file_name: str | None = None
    media_type: str | None = None
    sticker_emoji: str | None = None


M = TypeVar("M")  # a message: TgMessage, or Any (a dict) where one message has another shape


class TgChat(msgspec.Struct, Generic[M]):
    messages: list[M]
    name: str | None = None
    type: str | None = None
    id: int | str | None = None


class _ChatList(msgspec.Struct, Generic[M]):
    items: list[TgChat[M]] = msgspec.field(default_factory=list, name="list")


class _Doc(msgspec.Struct, Generic[M]):
    """A full export (``chats.list``) or one chat (``messages``): the file says which."""

    chats: _ChatList[M] | None = None
    messages: list[M] | None = None
    name: str | None = None
    type: str | None = None
    id: int | str | None = None


class _LooseChats(msgspec.Struct):
    items: list[Any] = msgspec.field(default_factory=list, name="list")


class _LooseDoc(msgspec.Struct):
    """``_Doc`` with its chats and messages left as JSON, each checked on its own: a chat or a
    message of another shape is a bad record, not the end of the file."""

    chats: _LooseChats | None = None
    messages: list[Any] | None = None
    name: str | None = None
    type: str | None = None
    id: int | str | None = None


_decode_doc = msgspec.json.Decoder(_Doc[TgMessage]).decode
_decode_lenient = msgspec.json.Decoder(_LooseDoc).decode
#: the types of chat Telegram Desktop writes: a one-chat export whose messages are not a list
#: of messages (so the detector cannot see them) is still known by them
_CHAT_TYPE = re.compile(rb'"type":"(?:personal_chat|bot_chat|saved_messages|private_group|private_supergroup|public_supergroup|'
                        rb'private_channel|public_channel)"')  # fmt: skip


def flatten(text: Any) -> str:
    """Telegram's ``text``: a string, or a list of strings and ``{type, text}`` entities."""
    if isinstance(text, str):
        return text
    if isinstance(text, list):
        return "".join(part if isinstance(part, str) else getattr(part, "text", "") for part in text)
    return ""


_NOT_INCLUDED = "(File not included"  # Telegram's note where the export left a file out


def _zone(m: TgMessage) -> tzinfo | None:
    """The zone of a chat's times, from its first dated message: with ``date_unixtime``, the
    exporting computer's offset (``date`` is its local time; UTC when only the Unix time is
    there); without, None: the times stay local, as written, with no offset (never called UTC)."""
    if not m.date_unixtime:
        return None
    if not m.date:
        return UTC
    local = datetime.fromisoformat(m.date).replace(tzinfo=None)
    offset = local - datetime.fromtimestamp(int(m.date_unixtime), UTC).replace(tzinfo=None)
    return timezone(timedelta(minutes=round(offset.total_seconds() / 60)))


def _time(m: TgMessage, zone: tzinfo | None) -> datetime | None:
    """A message's time in its chat's zone (see ``_zone``)."""
    if zone is not None:
        if m.date_unixtime:
            return datetime.fromtimestamp(int(m.date_unixtime), UTC)
        return datetime.fromisoformat(m.date).replace(tzinfo=zone) if m.date else None
    if m.date:
        return datetime.fromisoformat(m.date).replace(tzinfo=None)
    return datetime.fromtimestamp(int(m.date_unixtime), UTC).replace(tzinfo=None) if m.date_unixtime else None


class _Where:
    """Where a chat's i-th message is, for an error: the line of its ``"id"`` when the file is in
    memory, else its JSON path. Ids repeat across the chats of a full export, so the search starts
    at the chat's ``"messages"``, and goes on from the message found before (they come in order).
    A JSON string cannot hold ``"id":`` unescaped, so what is found is a key."""

    def __init__(self, prefix: str, data: bytes | None = None, chat: int = 0):
        self.prefix, self.data, self.chat = prefix, data, chat
        self.at = self.line = -1  # the last place found in ``data``, and its line (0-based); -1: none yet
        self.end = -1  # where the next chat's messages begin (the search stops there)

    def path(self, i: int) -> str:
        return f"{self.prefix}.messages[{i}]"

    def __call__(self, i: int, m: Any) -> int | None:
        mid = m.get("id") if isinstance(m, dict) else getattr(m, "id", None)
        if self.data is None or not isinstance(mid, int) or isinstance(mid, bool):
            return None
        if self.at < 0:
            arrays = itertools.islice(_MESSAGES.finditer(self.data), self.chat, None)
            found = next(arrays, None)
            if found is None:
                return None
            self.at, self.line = found.end(), self.data.count(b"\n", 0, found.end())
            self.end = next((later.start() for later in arrays), len(self.data))
        for key in (b'"id": %d,' % mid, b'"id":%d,' % mid):  # as Telegram writes it, and minified
            at = self.data.find(key, self.at, self.end)
            if at >= 0:
                self.line += self.data.count(b"\n", self.at, at)
                self.at = at
                return self.line + 1
        return None


def _chat(chat: Any, prefix: str, reader: Reader) -> TgChat | None:
    """A chat of a full export (or a streamed one) in its shape; one of another shape is a bad
    record (its messages are checked one by one later)."""
    messages = chat.get("messages") if isinstance(chat, dict) else None
    if not isinstance(messages, Iterator):  # streamed messages: an ijson generator, checked as they come
        messages = None
    try:
        tg = msgspec.convert(chat if messages is None else {**chat, "messages": []}, TgChat[Any])
    except msgspec.ValidationError as err:
        reader.bad(None, under(prefix, fault_path(err)))
        return None
    if messages is not None:
        tg.messages = messages  # type: ignore[assignment]
    return tg


def _stream_messages(f: Any, path: Path) -> Iterator[Any]:
    import ijson

    try:
        yield from ijson.items(f, "messages.item", use_float=True)
    except ijson.JSONError as err:
        raise SourceError(f"not valid JSON: {err}", file=str(path)) from None


# a key "messages" opening an array (in a JSON string its quotes would be escaped)
_MESSAGES = re.compile(rb'"messages":\s*\[')


class TelegramSource(Source):
    name = "telegram"
    summary = "Telegram Desktop result.json: one chat or a full export; needs --me"
    extensions = (".json",)
    stream = True

    def detect(self, path: Path, head: bytes) -> bool:
        text = head.lstrip(b"\xef\xbb\xbf").lstrip()
        if not text.startswith(b"{"):
            return False
        compact = text.replace(b" ", b"").replace(b"\n", b"")
        full = compact.startswith(b'{"chats":{') or (compact.startswith(b'{"about":"') and b"telegram.org" in compact)
        return full or (
            b'"messages":[' in compact and (b'"from_id":' in compact or b'"date_unixtime":' in compact) and b'"guild"' not in compact
        ) or (b'"messages":' in compact and _CHAT_TYPE.search(compact, 0, 4096) is not None)

    def read(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        with open(path, "rb") as f:
            check_text(path, f.read(4096))
        for chat, where in self._chats(path, reader):
            chat_id = str(chat.id or chat.name or path.stem)
            yield from Sessionizer(self.options, reader).conversations(
                self._posts(chat.messages, reader, where), fmt=self.name, chat_id=chat_id, file=path.name,
                title=chat.name, meta={k: v for k, v in (("name", chat.name), ("type", chat.type)) if v},
            )  # fmt: skip
        reader.advance(path.stat().st_size)

    def _chats(self, path: Path, reader: Reader) -> Iterator[tuple[TgChat, _Where]]:
        if path.stat().st_size <= STREAM_ABOVE:
            data = path.read_bytes().removeprefix(BOM)
            try:
                doc: _Doc[Any] | _LooseDoc = _decode_doc(data)
            except msgspec.ValidationError:  # a chat or a message of another shape: each one is checked on its own
                try:
                    doc = _decode_lenient(data)
                except msgspec.ValidationError as err:
                    raise SourceError(f"not a Telegram export: {fault_path(err)}", file=str(path)) from None
            except (msgspec.DecodeError, RecursionError) as err:
                raise json_error(data, err, path) from None
            if doc.chats is not None:
                for k, chat in enumerate(doc.chats.items):
                    chat = _chat(chat, f"$.chats.list[{k}]", reader)
                    if chat is not None:
                        yield chat, _Where(f"$.chats.list[{k}]", data, k)
            elif doc.messages is not None:
                yield TgChat(messages=doc.messages, name=doc.name, type=doc.type, id=doc.id), _Where("$", data, 0)
            else:
                raise SourceError("expected a Telegram result.json: no 'messages' and no 'chats'", file=str(path))
            return
        for chat, prefix in self._stream_chats(path):
            tg = _chat(chat, prefix, reader)
            if tg is not None:
                yield tg, _Where(prefix)

    def _stream_chats(self, path: Path) -> Iterator[tuple[Any, str]]:
        """Each chat, with its JSON path (one chat's messages as a stream)."""
        import ijson

        check_json_end(path, b"}")
        with open(path, "rb") as f:
            start = skip_bom(f)
            full = f.read(4096).replace(b" ", b"").replace(b"\n", b"").startswith((b'{"chats":', b'{"about":'))  # a full export
            f.seek(start)
            try:
                if full:
                    for k, chat in enumerate(ijson.items(f, "chats.list.item", use_float=True)):
                        yield chat, f"$.chats.list[{k}]"
                    return
                header: dict[str, Any] = {}
                for prefix, event, value in ijson.parse(f):
                    if prefix in ("name", "type", "id"):
                        header[prefix] = value if event in ("string", "number", "null") else [event]  # of another type: refused by _chat
                    if prefix == "messages" and event == "start_array":
                        break
                else:
                    raise SourceError("expected a Telegram result.json: no 'messages' list", file=str(path))
            except ijson.JSONError as err:
                raise SourceError(f"not valid JSON: {err}", file=str(path)) from None
            f.seek(start)
            yield {**header, "messages": _stream_messages(f, path)}, "$"

    def _posts(self, messages: Iterable[TgMessage | dict[str, Any]], reader: Reader, where: _Where) -> Iterator[Post]:
        attachments = self.options.attachments
        zone: tzinfo | None | bool = False  # False: not known yet (see _zone)
        for i, m in enumerate(messages):
            try:
                if not isinstance(m, TgMessage):  # streamed through ijson, or read untyped after a bad message
                    m = msgspec.convert(m, TgMessage, strict=False)
                if zone is False and (m.date or m.date_unixtime):
                    zone = _zone(m)
                when = _time(m, zone or None)
            except msgspec.ValidationError as err:
                reader.bad(where(i, m) if reader.showing else None, under(where.path(i), fault_path(err)))
                continue
            except (ValueError, OverflowError, OSError) as err:  # a date that is none
                reader.bad(where(i, m) if reader.showing else None, f"{where.path(i)}: not a date and time: {err}")
                continue
            if m.type != "message":
                reader.dropped["service message"] += 1
                continue
            text = m.text if isinstance(m.text, str) else flatten(m.text)
            media = None
            if m.photo:
                media = "photo"
            elif m.media_type == "sticker":
                media = f"sticker {m.sticker_emoji or ''}".strip()
            elif m.file:
                media = m.file_name or (None if m.file.startswith(_NOT_INCLUDED) else Path(m.file).name) or m.media_type or "file"
            if media and attachments:
                text = f"{text}\n[attachment: {media}]" if text.strip() else f"[attachment: {media}]"
            if not text.strip():
                reader.dropped["empty message"] += 1
                continue
            yield Post(
                author=m.from_ or m.actor or "unknown",
                text=text,
                time=when,
                id=str(m.id) if m.id is not None else None,
                reply_to=str(m.reply_to_message_id) if m.reply_to_message_id is not None else None,
            )
