"""Record formats: one conversation per record, in a JSON array or in JSONL.

- ``sharegpt``: ``{conversations: [{from, value}], system?, tools?}``; role aliases (human, gpt,
  function_call, observation, …); a ``function_call`` value holds one call or a list of them
  (parallel calls); preference records (``chosen`` / ``rejected``) keep the chosen answer as
  the last turn and the rejected one in ``meta``.
- ``alpaca``: ``{instruction, input, output, system?, history?}``; ``history`` pairs become the
  earlier turns.
- ``llamafactory``: LLaMA-Factory v1 JSONL, content blocks and per-message ``loss_weight``,
  which becomes ``train``.
- ``lima``: LIMA-GUI's JSONL ``{name, lang, tags, messages, tools}`` (``function_call`` with dict
  arguments → ``tool_calls``), and its older CSV with one ``chat`` JSON column.

These records have no ids of their own: ids come from the digest, so importing a file again adds
nothing. The record's place (``$[3]`` or ``line 4``) is kept in ``source.locator``.

Each format's shape (the fields it reads, with their JSON types) is one msgspec Struct, into
which every record is decoded: a record of another shape (``"value": 5``, ``"system": [...]``) is a
bad record, reported with its line and the JSON path of the fault, not read as something else.
A JSON array larger than ``STREAM_ABOVE`` is streamed through ijson, so memory stays flat.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import msgspec
import orjson

from ..errors import SourceError
from ..jsonl import RecordError, fault_path, from_obj
from ..model import Conversation, Message, upgrade_legacy_messages
from .base import (
    BOM,
    HEAD_BYTES,
    JSON_ARRAY_END,
    ItemLines,
    Reader,
    Source,
    check_json_end,
    check_text,
    csv_rows,
    first_json_item,
    json_error,
    read_text,
    skip_bom,
    under,
)

#: a JSON array of records larger than this is streamed (ijson, about half orjson's speed);
#: smaller ones are parsed at once
STREAM_ABOVE = 16 << 20

R = TypeVar("R")  # a format's record shape (a msgspec Struct)


class RecordFile(Generic[R]):
    """The records of a JSON array file or a JSONL file, each decoded into ``shape``: iterate for
    (locator, record); a record of another shape, or a JSONL line that is not JSON, goes to the
    reader as bad. ``bad(locator, message)`` reports a record the format found bad itself."""

    def __init__(self, path: Path, reader: Reader, shape: type[R]):
        self.path, self.reader, self.shape = path, reader, shape
        self.data: bytes | None = None  # an array held in memory…
        self.lines: ItemLines | None = None  # …and where its items start, found once a record is bad

    def __iter__(self) -> Iterator[tuple[str, R]]:
        with open(self.path, "rb") as f:
            head = f.read(4096)
        check_text(self.path, head)
        if head.removeprefix(BOM).lstrip().startswith(b"["):
            return self._stream() if self.path.stat().st_size > STREAM_ABOVE else self._array()
        return self._lines()

    def bad(self, locator: str, message: str) -> None:
        """Record ``locator`` (``line 4``, ``$[3]``) is bad: at its line, the JSON path in
        ``message`` (``$.x``) made the path from the file's top (``$[3].x``)."""
        if locator.startswith("line "):
            self.reader.bad(int(locator[5:]), message)
            return
        line = None
        if self.data is not None and self.reader.showing:
            self.lines = self.lines or ItemLines(self.data)
            line = self.lines(int(locator[2:-1]))
        self.reader.bad(line, under(locator, message))

    def _typed(self, locator: str, record: Any) -> R | None:
        try:
            return msgspec.convert(record, self.shape)
        except msgspec.ValidationError as err:
            self.bad(locator, fault_path(err))
            return None

    def _array(self) -> Iterator[tuple[str, R]]:
        data = self.data = self.path.read_bytes().removeprefix(BOM)
        try:
            records: list[Any] = _decoder(list[self.shape])(data)
        except msgspec.ValidationError:  # a record of another shape: each one checked on its own
            try:
                records = msgspec.json.decode(data)
            except (msgspec.DecodeError, RecursionError) as err:
                raise json_error(data, err, self.path) from None
            if not isinstance(records, list):
                raise SourceError(f"expected a JSON array of records, got {_json_type(records)}", file=str(self.path), where=1) from None
            records = [self._typed(f"$[{i}]", r) for i, r in enumerate(records)]
        except (msgspec.DecodeError, RecursionError) as err:
            raise json_error(data, err, self.path) from None
        for i, record in enumerate(records):
            if record is not None:
                yield f"$[{i}]", record
        self.reader.advance(len(data))

    def _stream(self) -> Iterator[tuple[str, R]]:
        import ijson

        check_json_end(self.path, JSON_ARRAY_END)
        with open(self.path, "rb") as f:
            skip_bom(f)
            try:
                for i, item in enumerate(ijson.items(f, "item", use_float=True)):
                    record = self._typed(f"$[{i}]", item)
                    if record is not None:
                        yield f"$[{i}]", record
                    if i % 4096 == 0:
                        self.reader.advance(f.tell())
            except ijson.JSONError as err:
                raise SourceError(f"not valid JSON: {err}", file=str(self.path), where=_line_at(self.path, f.tell())) from None

    def _lines(self) -> Iterator[tuple[str, R]]:
        decode = _decoder(self.shape)
        with open(self.path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield f"line {lineno}", decode(line.removeprefix(BOM) if lineno == 1 else line)
                except msgspec.ValidationError as err:
                    self.reader.bad(lineno, fault_path(err))
                except msgspec.DecodeError as err:
                    self.reader.bad(lineno, f"not valid JSON ({err})")
                except RecursionError:
                    self.reader.bad(lineno, "nested too deeply to read")
                if lineno % 1024 == 0:
                    self.reader.advance(f.tell())


@functools.cache
def _decoder(shape: Any) -> Any:
    return msgspec.json.Decoder(shape).decode


def _json_type(value: Any) -> str:
    """A Python value's JSON type, as errors name it."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "true or false", type(None): "null"}
    return names.get(type(value), "a number")


def _line_at(path: Path, pos: int) -> int:
    """The line of byte ``pos`` (about where a streaming parser stopped), read again in blocks:
    only on an error."""
    line = 1
    with open(path, "rb") as f:
        while pos > 0 and (block := f.read(min(pos, 1 << 24))):
            line += block.count(b"\n")
            pos -= len(block)
    return line


def _starts_a_record(text: bytes) -> bool:
    """Whether stripped bytes open a JSONL object or an array of objects (not "[8/15/23, …")."""
    return text.startswith(b"{") or (text.startswith(b"[") and text[1:].lstrip().startswith(b"{"))


def _first_record_of(data: bytes) -> dict[str, Any] | None:
    """The first record of JSON-array or JSONL bytes (a file's start), when it ends in them: the
    array's first item is found by ``first_json_item``, a scan that skips strings and refuses
    deep nesting, and parsed by orjson."""
    text = data.removeprefix(BOM).lstrip()
    if not _starts_a_record(text):
        return None
    try:
        if text.startswith(b"["):
            span = first_json_item(text)
            obj = orjson.loads(text[span[0] : span[1]]) if span is not None else None
        else:
            obj = orjson.loads(text.split(b"\n", 1)[0])
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


@functools.lru_cache(maxsize=4)
def _first_record(head: bytes) -> dict[str, Any] | None:
    """The first record in a file's head (kept: the record formats' detectors all ask for the
    same head's; they only read it)."""
    return _first_record_of(head)


FIRST_RECORD_BYTES = 64 << 20  # a first record longer than this is not looked for


@functools.lru_cache(maxsize=4)
def _first_record_in(path: Path, size: int, mtime_ns: int) -> dict[str, Any] | None:
    """The first record read from the file itself, up to 64 MB, for a head that ends inside it
    (not ijson: its memory grows with the square of the depth). ``size`` and ``mtime_ns`` key
    the cache."""
    with open(path, "rb") as f:
        return _first_record_of(f.read(FIRST_RECORD_BYTES))


class RecordSource(Source):
    """A format of one conversation per record: ``shape``, the msgspec Struct of the fields it
    reads (every record is decoded into it: a record of another shape is bad), and ``convert``
    from it to a conversation, which raises ``RecordError`` for a record it finds bad."""

    extensions = (".json", ".jsonl")
    keys: tuple[str, ...] = ()  # keys a first record must have, for detection
    shape: ClassVar[type[msgspec.Struct]]

    def detect(self, path: Path, head: bytes) -> bool:
        first = _first_record(head)
        if first is None and len(head) >= HEAD_BYTES and _starts_a_record(head.removeprefix(BOM).lstrip()):  # a first record longer than the head
            st = path.stat()
            first = _first_record_in(path, st.st_size, st.st_mtime_ns)
        return first is not None and all(k in first for k in self.keys) and self.looks_like(first)

    def looks_like(self, record: dict[str, Any]) -> bool:
        return True

    def read(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        records = RecordFile(path, reader, self.shape)
        for locator, record in records:
            try:
                conv = self.convert(record)
            except RecordError as err:
                records.bad(locator, str(err))
                continue
            conv.source = {"format": self.name, "file": path.name, "locator": locator}
            yield conv

    def convert(self, record: Any) -> Conversation:
        raise NotImplementedError


def _tools(value: str | list[Any] | None) -> list[dict[str, Any]]:
    """Tool schemas: a list, or a JSON string of one; bare function schemas get OpenAI's wrapper."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value) if value.strip() else []
        except orjson.JSONDecodeError:
            raise RecordError("$.tools: not valid JSON") from None
    if not value:
        return []
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise RecordError("$.tools: expected a list of tool schemas (objects)")
    return [t if t.get("type") == "function" and "function" in t else {"type": "function", "function": t} for t in value]


# -- ShareGPT ----------------------------------------------------------------------------------

_SHAREGPT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
    "bot": "assistant", "chatgpt": "assistant", "bard": "assistant", "system": "system",
    "function_call": "function_call", "observation": "tool", "function": "tool", "tool": "tool",
}  # fmt: skip


class _Turn(msgspec.Struct):
    value: str | dict[str, Any] | list[Any]  # an object or a list only for a call or a tool's result
    from_: str | None = msgspec.field(default=None, name="from")
    role: str | None = None  # "from"'s other name


class ShareGPTRecord(msgspec.Struct):
    """The fields of a ShareGPT record chatloom reads, with their types."""

    conversations: list[_Turn]
    system: str | None = None
    tools: str | list[Any] | None = None
    chosen: _Turn | None = None
    rejected: dict[str, Any] | None = None  # kept in meta as it is
    id: Any = None  # kept when a string
    title: Any = None


class ShareGPTSource(RecordSource):
    name = "sharegpt"
    summary = "ShareGPT: {conversations: [{from, value}]}, JSON or JSONL (tool calls and preference pairs too)"
    keys = ("conversations",)
    shape = ShareGPTRecord

    def convert(self, record: ShareGPTRecord) -> Conversation:
        raw: list[dict[str, Any]] = []
        if record.system:
            raw.append({"role": "system", "content": record.system})
        waiting: list[str | None] = []  # the names of the calls not answered yet, in order
        last: str | None = None
        for i, turn in enumerate(record.conversations):
            who = (turn.from_ if turn.from_ is not None else turn.role or "").lower()
            role = _SHAREGPT_ROLES.get(who)
            if role is None:
                raise RecordError(f"$.conversations[{i}].from: unknown role '{who}'")
            value = turn.value
            if not isinstance(value, str):  # a call or a tool's result may be JSON itself
                if role not in ("function_call", "tool"):
                    raise RecordError(f"$.conversations[{i}].value: expected `str`, got `{'object' if isinstance(value, dict) else 'array'}`")
                value = orjson.dumps(value).decode()
            if role == "function_call":
                try:
                    call = orjson.loads(value)
                except orjson.JSONDecodeError:
                    raise RecordError(f"$.conversations[{i}].value: a function_call must be JSON") from None
                calls = call if isinstance(call, list) else [call]
                if not calls or not all(isinstance(c, dict) for c in calls):
                    raise RecordError(f"$.conversations[{i}].value: a function_call must be an object or a list of them")
                if isinstance(call, dict):
                    raw.append({"role": "assistant", "content": None, "function_call": call})
                else:  # parallel calls (LLaMA-Factory writes a list)
                    raw.append({"role": "assistant", "content": None, "tool_calls": [
                        {"id": f"call_{len(raw)}_{j}", "type": "function", "function": {"name": c.get("name", ""), "arguments": c.get("arguments", "")}}
                        for j, c in enumerate(calls)
                    ]})  # fmt: skip
                waiting = [c.get("name") for c in calls]
                last = waiting[-1]
            elif role == "tool":
                raw.append({"role": "function", "name": waiting.pop(0) if waiting else last, "content": value})
            else:
                raw.append({"role": role, "content": value})
        meta: dict[str, Any] = {}
        if record.chosen is not None:
            if not isinstance(record.chosen.value, str):
                raise RecordError("$.chosen.value: expected `str`")
            raw.append({"role": "assistant", "content": record.chosen.value})
            if record.rejected is not None:
                meta["rejected"] = record.rejected
        conv = Conversation(messages=[Message(**m) for m in upgrade_legacy_messages(raw)], tools=_tools(record.tools), meta=meta)
        if isinstance(record.id, str):
            conv.id = f"sharegpt:{record.id}"
        if isinstance(record.title, str):
            conv.title = record.title
        return conv


# -- Alpaca ------------------------------------------------------------------------------------


class AlpacaRecord(msgspec.Struct):
    """The fields of an Alpaca record, with their types."""

    instruction: str
    output: str
    input: str | None = None
    system: str | None = None
    history: list[tuple[str, str]] | None = None  # [prompt, response] pairs


class AlpacaSource(RecordSource):
    name = "alpaca"
    summary = "Alpaca: {instruction, input, output, system?, history?}, JSON or JSONL"
    keys = ("instruction", "output")
    shape = AlpacaRecord

    def convert(self, record: AlpacaRecord) -> Conversation:
        messages = []
        if record.system:
            messages.append(Message(role="system", content=record.system))
        for prompt, response in record.history or ():
            messages += [Message(role="user", content=prompt), Message(role="assistant", content=response)]
        prompt = record.instruction + (f"\n\n{record.input}" if record.input else "")
        messages += [Message(role="user", content=prompt), Message(role="assistant", content=record.output)]
        return Conversation(messages=messages)


# -- LLaMA-Factory v1 --------------------------------------------------------------------------


class _Block(msgspec.Struct):
    type: str
    value: str | None = None
    text: str | None = None  # "value"'s other name


class _LlamaFactoryMessage(msgspec.Struct, omit_defaults=True):
    role: str
    content: str | list[_Block] | None = None
    loss_weight: float | None = None
    name: Any = None  # these three as OpenAI has them: checked by the model
    tool_calls: Any = None
    tool_call_id: Any = None


class LlamaFactoryRecord(msgspec.Struct):
    """The fields of a LLaMA-Factory v1 record, with their types."""

    messages: list[_LlamaFactoryMessage]
    tools: str | list[Any] | None = None


class LlamaFactorySource(RecordSource):
    name = "llamafactory"
    summary = "LLaMA-Factory v1 JSONL: content blocks, per-message loss_weight → train"
    keys = ("messages",)
    shape = LlamaFactoryRecord

    def looks_like(self, record: dict[str, Any]) -> bool:
        msgs = record.get("messages")
        return isinstance(msgs, list) and any(isinstance(m, dict) and ("loss_weight" in m or _is_blocks(m.get("content"))) for m in msgs)

    def convert(self, record: LlamaFactoryRecord) -> Conversation:
        raw = []
        for m in record.messages:
            message = msgspec.structs.asdict(m)
            if isinstance(m.content, list):
                message["content"] = "\n".join((b.value if b.value is not None else b.text or "") if b.type == "text" else f"[{b.type}]" for b in m.content)
            weight = message.pop("loss_weight")
            if weight is not None:
                message["train"] = weight > 0
            raw.append({k: v for k, v in message.items() if v is not None or k == "content"})
        return from_obj({"messages": raw, **({"tools": _tools(record.tools)} if record.tools else {})})


def _is_blocks(content: Any) -> bool:
    return isinstance(content, list) and all(isinstance(b, dict) and "type" in b for b in content)


# -- LIMA-GUI ----------------------------------------------------------------------------------


class LimaRecord(msgspec.Struct):
    """The fields of a LIMA-GUI record, with their types (its messages: OpenAI's, checked by the model)."""

    messages: list[Any]
    tools: str | list[Any] | None = None
    name: str | None = None
    lang: str | None = None
    tags: list[str] | None = None


class LimaSource(RecordSource):
    name = "lima"
    summary = "LIMA-GUI dataset: JSONL {name, lang, tags, messages, tools} or the old CSV with a 'chat' column"
    extensions = (".jsonl", ".json", ".csv")
    keys = ("messages",)
    shape = LimaRecord

    def looks_like(self, record: dict[str, Any]) -> bool:
        return "lang" in record or ("name" in record and "tags" in record)

    def detect(self, path: Path, head: bytes) -> bool:
        if head.lstrip(b"\xef\xbb\xbf").startswith(b"chat") or head.lstrip(b"\xef\xbb\xbf").startswith(b'"chat"'):
            return True
        return super().detect(path, head)

    def read(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        with open(path, "rb") as f:
            first = f.read(16).lstrip(b"\xef\xbb\xbf")
        if first.startswith((b"chat", b'"chat"')):
            yield from self._csv(path, reader)
            return
        yield from super().read(path, reader)

    def convert(self, record: LimaRecord) -> Conversation:
        conv = from_obj({"messages": record.messages, "tools": _tools(record.tools)})
        conv.title = record.name or None
        conv.language = record.lang or None
        conv.tags = record.tags or []
        return conv

    def _csv(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        text, _ = read_text(path)
        rows = csv_rows(text, path, reader)
        fieldnames = rows[0][1] if rows else []
        if "chat" not in fieldnames:
            raise SourceError("expected a CSV with a 'chat' column (LIMA-GUI's old format)", file=str(path), where=1)
        for n, values in rows[1:]:
            if not values:
                continue
            row = dict(zip(fieldnames, values, strict=False))
            try:
                chat = orjson.loads(row["chat"])
                record = chat if isinstance(chat, dict) else {"messages": chat}
                for key in ("name", "lang", "tags"):
                    if row.get(key) and key not in record:
                        value = row[key]
                        if key == "tags":  # a JSON list, or one plain tag
                            value = orjson.loads(value) if value.startswith("[") else [value]
                        record[key] = value
                conv = self.convert(msgspec.convert(record, LimaRecord))
            except orjson.JSONDecodeError as err:
                reader.bad(n, f"chat column: not valid JSON ({err.msg})")
                continue
            except msgspec.ValidationError as err:
                reader.bad(n, f"chat column: {fault_path(err)}")
                continue
            except RecordError as err:
                reader.bad(n, f"chat column: {err}")
                continue
            conv.source = {"format": self.name, "file": path.name, "locator": f"line {n}"}
            yield conv

