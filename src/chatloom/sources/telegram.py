"""``telegram``: Telegram Desktop's ``result.json``, one chat or a full export (``chats.list``).

``text`` is a string or a list of strings and ``{type, text}`` entities: they are flattened to
plain text. Service messages (joins, pins, calls) are dropped; replies keep their link
(``reply_to_message_id``); photos, files and stickers become ``[attachment: …]`` placeholders (or
are dropped with ``--no-attachments``). Each chat of a full export is sessionized on its own.

Files up to 256 MB are parsed at once with orjson (fast); larger ones stream through ijson, one
chat (or one message of a single-chat export) at a time, so memory stays flat.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ..errors import SourceError
from ..model import Conversation
from .base import Reader, Source, check_text
from .stream import Post, Sessionizer

STREAM_ABOVE = 256 << 20


def flatten(text: Any) -> str:
    """Telegram's ``text``: a string, or a list of strings and ``{type, text}`` entities."""
    if isinstance(text, str):
        return text
    if isinstance(text, list):
        return "".join(part if isinstance(part, str) else str(part.get("text", "")) for part in text)
    return ""


def _time(m: dict[str, Any]) -> datetime | None:
    if m.get("date_unixtime"):
        return datetime.fromtimestamp(int(m["date_unixtime"]), UTC)
    if m.get("date"):
        when = datetime.fromisoformat(m["date"])
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    return None


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
        return compact.startswith(b'{"chats":{') or (
            b'"messages":[' in compact and (b'"from_id":' in compact or b'"date_unixtime":' in compact) and b'"guild"' not in compact
        )

    def read(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        with open(path, "rb") as f:
            check_text(path, f.read(4096))
        for chat in self._chats(path):
            if not isinstance(chat, dict) or not isinstance(chat.get("messages"), list | Iterator):
                reader.bad(None, "a chat without a 'messages' list")
                continue
            chat_id = str(chat.get("id") or chat.get("name") or path.stem)
            yield from Sessionizer(self.options, reader).conversations(
                self._posts(chat["messages"], reader), fmt=self.name, chat_id=chat_id, file=path.name,
                title=chat.get("name"), meta={k: chat[k] for k in ("name", "type") if chat.get(k)},
            )  # fmt: skip
        reader.advance(path.stat().st_size)

    def _chats(self, path: Path) -> Iterator[dict[str, Any]]:
        if path.stat().st_size <= STREAM_ABOVE:
            data = path.read_bytes()
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError as err:
                raise SourceError(f"not valid JSON: {err.msg}", file=str(path), where=data.count(b"\n", 0, err.pos) + 1) from None
            if isinstance(doc, dict) and isinstance(doc.get("chats"), dict):
                yield from doc["chats"].get("list") or []
            elif isinstance(doc, dict):
                yield doc
            else:
                raise SourceError("expected a Telegram result.json object", file=str(path))
            return
        yield from self._stream_chats(path)

    def _stream_chats(self, path: Path) -> Iterator[dict[str, Any]]:
        import ijson

        with open(path, "rb") as f:
            full = f.read(4096).replace(b" ", b"").replace(b"\n", b"").startswith(b'{"chats":')
            f.seek(0)
            try:
                if full:
                    yield from ijson.items(f, "chats.list.item", use_float=True)
                else:
                    header = {}
                    for prefix, event, value in ijson.parse(f):
                        if prefix in ("name", "type", "id") and event in ("string", "number"):
                            header[prefix] = value
                        if prefix == "messages" and event == "start_array":
                            break
                    f.seek(0)
                    yield {**header, "messages": ijson.items(f, "messages.item", use_float=True)}
            except ijson.JSONError as err:
                raise SourceError(f"not valid JSON: {err}", file=str(path)) from None

    def _posts(self, messages: Iterable[dict[str, Any]], reader: Reader) -> Iterator[Post]:
        attachments = self.options.get("attachments", True)
        for m in messages:
            if m.get("type", "message") != "message":
                reader.dropped["service message"] += 1
                continue
            parts = [flatten(m.get("text"))] if flatten(m.get("text")).strip() else []
            media = None
            if m.get("photo"):
                media = "photo"
            elif m.get("media_type") == "sticker":
                media = f"sticker {m.get('sticker_emoji', '')}".strip()
            elif m.get("file"):
                media = m.get("file_name") or Path(str(m["file"])).name or m.get("media_type", "file")
            if media and attachments:
                parts.append(f"[attachment: {media}]")
            if not parts:
                reader.dropped["empty message"] += 1
                continue
            reply = m.get("reply_to_message_id")
            yield Post(
                author=str(m.get("from") or m.get("actor") or "unknown"),
                text="\n".join(parts),
                time=_time(m),
                id=str(m["id"]) if m.get("id") is not None else None,
                reply_to=str(reply) if reply is not None else None,
            )
