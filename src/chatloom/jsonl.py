"""The OpenAI ``messages`` JSONL shape, with our metadata: one conversation per line.

    {"id": "...", "messages": [{"role": "user", "content": "hi"}, ...], "tools": [...],
     "title": "...", "language": "en", "tags": [...], "source": {...}, "meta": {...}}

Reading is streaming and line-numbered; a clean line is decoded by msgspec straight into the
model (the fast path). A line in the legacy ``function_call`` shape, with ``content: null`` or
content parts, takes the slow path: it is upgraded, then validated, and a bad field is reported
with its JSON path. Writing omits empty fields, so our own export reads back losslessly.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import IO, Any

import msgspec
import orjson

from .model import Conversation, Message, downgrade_to_legacy, upgrade_legacy_messages


class RecordError(ValueError):
    """One record is bad; ``where`` says where inside it (a JSON path), when known."""


_decode_fast = msgspec.json.Decoder(Conversation).decode
_encode = msgspec.json.Encoder().encode


def fault_path(err: msgspec.ValidationError) -> str:
    """msgspec's message as ``$.path: what is wrong`` (or ``what is wrong`` at the top)."""
    # msgspec: "Expected `str`, got `int` - at `$.messages[0].content`"
    text = str(err)
    if " - at `" in text:
        what, _, where = text.partition(" - at `")
        return f"{where.rstrip('`')}: {what[0].lower() + what[1:]}"
    return text[0].lower() + text[1:]


class _ContentPart(msgspec.Struct):
    """A part of an OpenAI message's content (a list of them), as far as chatloom reads it."""

    type: str = "part"
    text: str | None = None


def from_obj(obj: Any) -> Conversation:
    """A decoded JSON object → Conversation, upgrading the legacy shape; RecordError when bad."""
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object with 'messages', got {type(obj).__name__}")
    if "messages" not in obj:
        raise RecordError("no 'messages' key")
    if not isinstance(obj["messages"], list):
        raise RecordError("$.messages: expected an array")
    for i, m in enumerate(obj["messages"]):
        if isinstance(m, dict) and isinstance(m.get("content"), list):  # OpenAI's content parts
            try:
                msgspec.convert(m["content"], list[str | _ContentPart])
            except msgspec.ValidationError as err:
                raise RecordError(f"$.messages[{i}].content{fault_path(err).removeprefix('$')}") from None
    obj = dict(obj)
    obj["messages"] = upgrade_legacy_messages([m if isinstance(m, dict) else {"bad": m} for m in obj["messages"]])
    try:
        return msgspec.convert(obj, Conversation)
    except msgspec.ValidationError as err:
        raise RecordError(fault_path(err)) from None


def parse_line(line: bytes) -> Conversation:
    """One JSONL line → Conversation; RecordError says what is wrong with it."""
    try:
        return _decode_fast(line)
    except msgspec.ValidationError:
        pass
    except msgspec.DecodeError as err:
        raise RecordError(f"not valid JSON ({err})") from None
    try:  # a type fault came first; the line may also be cut short
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as err:
        raise RecordError(f"not valid JSON ({err.msg})") from None
    return from_obj(obj)


def read_lines(fp: IO[bytes]) -> Iterator[tuple[int, int, bytes]]:
    """Yield (line number, bytes consumed so far, line) for each non-blank line of a binary file."""
    consumed = 0
    for lineno, line in enumerate(fp, 1):
        consumed += len(line)
        if line.strip():
            yield lineno, consumed, line


def read_path(path: str | os.PathLike[str]) -> Iterator[Conversation]:
    """The conversations of a JSONL file; a bad line is a SourceError naming the file and line."""
    with open(path, "rb") as fp:
        for lineno, _, line in read_lines(fp):
            yield parse_numbered(str(path), lineno, line)


class _Id(msgspec.Struct):
    id: str | None = None


_decode_id = msgspec.json.Decoder(_Id).decode


def read_ids(path: str | os.PathLike[str]) -> Iterator[str]:
    """The id of each conversation of a JSONL file, as ``ensure_id`` gives it: the line's own,
    read without decoding the rest (a fourth of the time); a line without one (or a bad line) is
    parsed whole, for the id its digest gives (or its one-line error)."""
    from .model import ensure_id

    with open(path, "rb") as fp:
        for lineno, _, line in read_lines(fp):
            try:
                found = _decode_id(line).id
            except (msgspec.DecodeError, msgspec.ValidationError):
                found = None
            yield found or ensure_id(parse_numbered(str(path), lineno, line))


def parse_numbered(path: str, lineno: int, line: bytes) -> Conversation:
    """Line ``lineno`` of ``path`` → Conversation; a SourceError naming the file and line when bad."""
    from .errors import SourceError

    try:
        return parse_line(line)
    except RecordError as err:
        raise SourceError(str(err), file=path, where=lineno) from None


class RawLines:
    """A JSONL file for processes that read and parse its lines themselves (``chatloom tokenize``'s
    workers): the reader hands out spans of the file, found by looking for newlines alone, so it is
    never the bottleneck and no line passes through it.

        for span in RawLines("chats.jsonl").spans(512):
            convs = [parse_numbered(path, n, line) for n, line in read_span(path, span)]
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = str(path)

    def spans(self, lines: int) -> Iterator[tuple[tuple[int, ...], int, int, int]]:
        """(the file's identity, number of its first line, start, end) of each run of ``lines``
        lines (blank lines included), in order; together they cover the file as it was read."""
        with open(self.path, "rb") as fp:
            identity = _identity(fp)
            start = pos = count = 0
            lineno = 1
            while block := fp.read(1 << 20):
                at = block.find(b"\n")
                while at >= 0:
                    count += 1
                    if count == lines:
                        yield identity, lineno, start, pos + at + 1
                        lineno, start, count = lineno + lines, pos + at + 1, 0
                    at = block.find(b"\n", at + 1)
                pos += len(block)
            if pos > start:
                yield identity, lineno, start, pos

    def __iter__(self) -> Iterator[Conversation]:
        return read_path(self.path)


def _identity(fp: IO[bytes]) -> tuple[int, ...]:
    st = os.fstat(fp.fileno())
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def read_span(path: str, span: tuple[tuple[int, ...], int, int, int]) -> Iterator[tuple[int, bytes]]:
    """The numbered, non-blank lines of one of ``RawLines.spans``; a SourceError where the file is
    no longer the one the spans were found in (rewritten, replaced, cut or grown since)."""
    from .errors import SourceError

    identity, lineno, start, end = span
    with open(path, "rb") as fp:
        fp.seek(max(0, start - 1))
        data = fp.read(end - max(0, start - 1))
        if _identity(fp) != identity or len(data) != end - max(0, start - 1) or (start and data[:1] != b"\n"):
            raise SourceError("the file changed while it was being read; run again on a file that stays as it is",
                              file=path, where=lineno)
    for n, line in enumerate(data[1 if start else 0 :].split(b"\n"), lineno):
        if line.strip():
            yield n, line


def dumps(conv: Conversation, *, meta: bool = True, legacy_functions: bool = False) -> bytes:
    """One conversation as a JSON line (with the trailing newline)."""
    if meta and not legacy_functions:
        return _encode(conv) + b"\n"
    obj: dict[str, Any] = msgspec.to_builtins(conv) if meta else {"messages": bare_messages(conv.messages)}
    if not meta and conv.tools:
        obj["tools"] = msgspec.to_builtins(conv.tools)
    if legacy_functions:
        obj["messages"] = downgrade_to_legacy(conv.messages)
        if "tools" in obj:
            obj["functions"] = [t.get("function", t) for t in obj.pop("tools")]
    return orjson.dumps(obj) + b"\n"


def bare_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages as OpenAI's fine-tuning API takes them: role, content, name, tool calls; no ``None``."""
    return [_bare(m) for m in msgspec.to_builtins(messages)]


def _bare(message: dict[str, Any]) -> dict[str, Any]:
    """A message as OpenAI's fine-tuning API takes it: no chatloom fields (meta, train)."""
    message.pop("meta", None)
    message.pop("train", None)
    return message


def write(convs: Iterable[Conversation], fp: IO[bytes], **options: Any) -> int:
    """Write conversations as JSONL to a binary file; returns how many were written."""
    n = 0
    for conv in convs:
        fp.write(dumps(conv, **options))
        n += 1
    return n
