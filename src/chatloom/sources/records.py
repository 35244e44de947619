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
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ..errors import SourceError
from ..jsonl import RecordError, from_obj
from ..model import Conversation, Message, upgrade_legacy_messages
from .base import (
    BOM,
    HEAD_BYTES,
    JSON_ARRAY_END,
    Reader,
    Source,
    check_json_end,
    check_text,
    csv_rows,
    first_json_item,
    json_error,
    read_text,
    skip_bom,
)

STREAM_ABOVE = 256 << 20


def read_records(path: Path, reader: Reader) -> Iterator[tuple[str, Any]]:
    """(locator, record) for a JSON array file or a JSONL file; bad JSONL lines go to ``reader``."""
    with open(path, "rb") as f:
        head = f.read(4096)
    check_text(path, head)
    if head.lstrip(b"\xef\xbb\xbf").lstrip().startswith(b"["):
        if path.stat().st_size > STREAM_ABOVE:
            import ijson

            check_json_end(path, JSON_ARRAY_END)
            with open(path, "rb") as f:
                skip_bom(f)
                try:
                    for i, record in enumerate(ijson.items(f, "item", use_float=True)):
                        yield f"$[{i}]", record
                except ijson.JSONError as err:
                    raise SourceError(f"not valid JSON: {err}", file=str(path)) from None
            return
        data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
        try:
            records = orjson.loads(data)
        except orjson.JSONDecodeError as err:
            raise json_error(data, err, path) from None
        for i, record in enumerate(records):
            yield f"$[{i}]", record
        reader.advance(len(data))
        return
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield f"line {lineno}", orjson.loads(line.removeprefix(b"\xef\xbb\xbf") if lineno == 1 else line)
            except orjson.JSONDecodeError as err:
                reader.bad(lineno, f"not valid JSON ({err.msg})")
            if lineno % 1024 == 0:
                reader.advance(f.tell())


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
    """A format of one conversation per record; subclasses implement ``convert``."""

    extensions = (".json", ".jsonl")
    keys: tuple[str, ...] = ()  # keys a first record must have, for detection

    def detect(self, path: Path, head: bytes) -> bool:
        first = _first_record(head)
        if first is None and len(head) >= HEAD_BYTES and _starts_a_record(head.removeprefix(BOM).lstrip()):  # a first record longer than the head
            st = path.stat()
            first = _first_record_in(path, st.st_size, st.st_mtime_ns)
        return first is not None and all(k in first for k in self.keys) and self.looks_like(first)

    def looks_like(self, record: dict[str, Any]) -> bool:
        return True

    def read(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        for locator, record in read_records(path, reader):
            try:
                if not isinstance(record, dict):
                    raise RecordError(f"expected an object, got {type(record).__name__}")
                conv = self.convert(record)
            except RecordError as err:
                reader.bad(locator.removeprefix("line "), str(err))
                continue
            except (TypeError, ValueError, AttributeError, KeyError) as err:  # a field of a shape the format does not have
                reader.bad(locator.removeprefix("line "), f"not a valid {self.name} record ({type(err).__name__}: {err})")
                continue
            conv.source = {"format": self.name, "file": path.name, "locator": locator}
            yield conv

    def convert(self, record: dict[str, Any]) -> Conversation:
        raise NotImplementedError


def _need(record: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in record:
        raise RecordError(f"no '{key}' key")
    if not isinstance(record[key], kind):
        raise RecordError(f"$.{key}: expected {getattr(kind, '__name__', 'another type')}, got {type(record[key]).__name__}")
    return record[key]


def _text_field(record: dict[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is not None and not isinstance(value, str):
        raise RecordError(f"$.{key}: expected a string, got {type(value).__name__}")
    return value or None


def _tools(value: Any) -> list[dict[str, Any]]:
    """Tool schemas: a list or a JSON string of them; bare function schemas get OpenAI's wrapper."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value) if value.strip() else []
        except orjson.JSONDecodeError:
            raise RecordError("$.tools: not valid JSON") from None
    if not isinstance(value, list):
        return []
    return [t if t.get("type") == "function" and "function" in t else {"type": "function", "function": t} for t in value if isinstance(t, dict)]


# -- ShareGPT ----------------------------------------------------------------------------------

_SHAREGPT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
    "bot": "assistant", "chatgpt": "assistant", "bard": "assistant", "system": "system",
    "function_call": "function_call", "observation": "tool", "function": "tool", "tool": "tool",
}  # fmt: skip


class ShareGPTSource(RecordSource):
    name = "sharegpt"
    summary = "ShareGPT: {conversations: [{from, value}]}, JSON or JSONL (tool calls and preference pairs too)"
    keys = ("conversations",)

    def convert(self, record: dict[str, Any]) -> Conversation:
        turns = _need(record, "conversations", list)
        raw: list[dict[str, Any]] = []
        if record.get("system"):
            raw.append({"role": "system", "content": str(record["system"])})
        waiting: list[str | None] = []  # the names of the calls not answered yet, in order
        last: str | None = None
        for i, turn in enumerate(turns):
            if not isinstance(turn, dict) or "value" not in turn:
                raise RecordError(f"$.conversations[{i}]: expected {{from, value}}")
            who = str(turn.get("from", turn.get("role", ""))).lower()
            role = _SHAREGPT_ROLES.get(who)
            if role is None:
                raise RecordError(f"$.conversations[{i}].from: unknown role '{who}'")
            value = turn["value"]
            if not isinstance(value, str):  # a number or true/false as its text; a call or a tool's result may be JSON itself
                if value is None or (isinstance(value, dict | list) and role not in ("function_call", "tool")):
                    raise RecordError(f"$.conversations[{i}].value: expected a string, got {type(value).__name__}")
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
        for key in ("chosen", "rejected"):
            if isinstance(record.get(key), dict):
                meta[key] = record[key]
        if "chosen" in meta:
            raw.append({"role": "assistant", "content": str(meta["chosen"].get("value", ""))})
            meta = {"rejected": meta["rejected"]} if "rejected" in meta else {}
        conv = Conversation(messages=[Message(**m) for m in upgrade_legacy_messages(raw)], tools=_tools(record.get("tools")), meta=meta)
        for key in ("id", "title"):
            if isinstance(record.get(key), str):
                setattr(conv, key, f"sharegpt:{record[key]}" if key == "id" else record[key])
        return conv


# -- Alpaca ------------------------------------------------------------------------------------


class AlpacaSource(RecordSource):
    name = "alpaca"
    summary = "Alpaca: {instruction, input, output, system?, history?}, JSON or JSONL"
    keys = ("instruction", "output")

    def convert(self, record: dict[str, Any]) -> Conversation:
        instruction = str(_need(record, "instruction", (str, int, float)))
        output = str(_need(record, "output", (str, int, float)))
        messages = []
        if record.get("system"):
            messages.append(Message(role="system", content=str(record["system"])))
        for i, pair in enumerate(record.get("history") or ()):
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise RecordError(f"$.history[{i}]: expected a [prompt, response] pair")
            messages += [Message(role="user", content=str(pair[0])), Message(role="assistant", content=str(pair[1]))]
        prompt = instruction + (f"\n\n{record['input']}" if record.get("input") else "")
        messages += [Message(role="user", content=prompt), Message(role="assistant", content=output)]
        return Conversation(messages=messages)


# -- LLaMA-Factory v1 --------------------------------------------------------------------------


class LlamaFactorySource(RecordSource):
    name = "llamafactory"
    summary = "LLaMA-Factory v1 JSONL: content blocks, per-message loss_weight → train"
    keys = ("messages",)

    def looks_like(self, record: dict[str, Any]) -> bool:
        msgs = record.get("messages") or []
        return any(isinstance(m, dict) and ("loss_weight" in m or _is_blocks(m.get("content"))) for m in msgs)

    def convert(self, record: dict[str, Any]) -> Conversation:
        msgs = _need(record, "messages", list)
        raw = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or "role" not in m:
                raise RecordError(f"$.messages[{i}]: expected {{role, content}}")
            m = dict(m)
            weight = m.pop("loss_weight", None)
            content = m.get("content")
            if _is_blocks(content):
                m["content"] = "\n".join(str(b.get("value", b.get("text", ""))) if b.get("type") == "text" else f"[{b.get('type')}]" for b in content)
            if weight is not None:
                try:
                    m["train"] = float(weight) > 0
                except (TypeError, ValueError):
                    raise RecordError(f"$.messages[{i}].loss_weight: expected a number") from None
            raw.append(m)
        return from_obj({"messages": raw, **({"tools": _tools(record["tools"])} if record.get("tools") else {})})


def _is_blocks(content: Any) -> bool:
    return isinstance(content, list) and all(isinstance(b, dict) and "type" in b for b in content)


# -- LIMA-GUI ----------------------------------------------------------------------------------


class LimaSource(RecordSource):
    name = "lima"
    summary = "LIMA-GUI dataset: JSONL {name, lang, tags, messages, tools} or the old CSV with a 'chat' column"
    extensions = (".jsonl", ".json", ".csv")
    keys = ("messages",)

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

    def convert(self, record: dict[str, Any]) -> Conversation:
        conv = from_obj({"messages": _need(record, "messages", list), "tools": _tools(record.get("tools") or [])})
        conv.title = _text_field(record, "name")
        conv.language = _text_field(record, "lang")
        tags = record.get("tags") or []
        if not isinstance(tags, list):
            raise RecordError(f"$.tags: expected a list, got {type(tags).__name__}")
        conv.tags = [str(t) for t in tags]
        return conv

    def _csv(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        text, _ = read_text(path)
        rows = csv_rows(text, path)
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
                conv = self.convert(record)
            except (orjson.JSONDecodeError, RecordError, TypeError, ValueError, AttributeError, KeyError) as err:
                reader.bad(n, f"chat column: {err}")
                continue
            conv.source = {"format": self.name, "file": path.name, "locator": f"line {n}"}
            yield conv

