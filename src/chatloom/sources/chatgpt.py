"""``chatgpt``: ChatGPT's data export, ``conversations.json`` (or the export's zip as it comes).

Each conversation is a tree of nodes (``mapping``): regenerating an answer or editing a prompt
adds a branch. The active branch is the path from ``current_node`` up through ``parent``,
reversed; ``--all-branches`` also imports every other branch (ending at a leaf) as its own
conversation, ``chatgpt:<id>:<leaf>``. Hidden nodes, empty nodes, the model's thoughts and the
user's custom instructions are skipped; a voice message is its transcription; code the model sent
to a tool (python, the browser) is a tool call, answered by the tool's message; other non-text
parts (images, browsing displays) become placeholders such as ``[image]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import orjson

from ..errors import SourceError
from ..jsonl import RecordError, fault_path
from ..model import Conversation, Message
from .base import BOM, JSON_ARRAY_END, ItemLines, Reader, Source, check_json_end, check_text, json_error, skip_bom, under

STREAM_ABOVE = 256 << 20
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "tool": "tool"}


# The fields of a conversation chatloom reads, with their types: every conversation is decoded
# into them, so one of another shape ("current_node": 5, "parts": "hi", "author": null) is a bad
# record, not read as something else.


class _Author(msgspec.Struct):
    role: str
    name: str | None = None


class _Content(msgspec.Struct):
    content_type: str = "text"
    parts: list[str | dict[str, Any]] | None = None
    text: str | None = None


class _Message(msgspec.Struct):
    author: _Author
    content: _Content | None = None
    id: str | None = None
    create_time: float | None = None
    metadata: dict[str, Any] | None = None
    recipient: str | None = None


class _Node(msgspec.Struct):
    message: _Message | None = None
    parent: str | None = None
    children: list[str] = []


class ChatGPTConversation(msgspec.Struct):
    mapping: dict[str, _Node]
    current_node: str | None = None
    title: str | None = None
    create_time: float | None = None
    update_time: float | None = None
    id: str | None = None
    conversation_id: str | None = None
    default_model_slug: str | None = None


_decode_all = msgspec.json.Decoder(list[ChatGPTConversation]).decode


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        raise RecordError(f"a time out of range ({ts})") from None


# the model's own working (o1/o3 thoughts and their summary) and the user's custom instructions:
# not turns of the conversation
_SKIPPED = {"thoughts", "reasoning_recap", "user_editable_context", "model_editable_context"}
_AUDIO = ("audio_asset_pointer", "real_time_user_audio_video_asset_pointer")  # the recording; its transcription is the text


def _text(content: _Content) -> str | None:
    """A message's text, with placeholders for what is not text; None for a node to skip."""
    kind = content.content_type
    if kind in _SKIPPED:
        return None
    if kind in ("text", "multimodal_text"):
        out = []
        for part in content.parts or ():
            if isinstance(part, str):
                out.append(part)
            else:
                ptype = str(part.get("content_type", "part"))
                if isinstance(part.get("text"), str):  # a voice message's audio_transcription
                    out.append(part["text"])
                elif ptype not in _AUDIO:
                    out.append(f"[{'image' if 'image' in ptype else ptype}]")
        return "\n".join(p for p in out if p)
    if kind in ("code", "execution_output", "tether_quote"):
        return content.text or ""
    return f"[{kind}]"


def _fault(conv: Any, err: msgspec.ValidationError) -> str:
    """msgspec's fault as ``$.path: what``, naming the node (``$.mapping["b"]``) where msgspec
    writes ``$.mapping[...]``: found by checking the nodes one by one, only on this error."""
    message = fault_path(err)
    if message.startswith("$.mapping[...]") and isinstance(conv, dict) and isinstance(conv.get("mapping"), dict):
        for key, node in conv["mapping"].items():
            try:
                msgspec.convert(node, _Node)
            except msgspec.ValidationError:
                return message.replace("[...]", f"[{orjson.dumps(key).decode()}]", 1)
    return message


def _conv_id(conv: ChatGPTConversation, index: int) -> str:
    return conv.conversation_id or conv.id or f"index{index}"


class ChatGPTSource(Source):
    name = "chatgpt"
    summary = "ChatGPT data export: conversations.json or the export's .zip (active branch; --all-branches)"
    extensions = (".json",)

    def detect(self, path: Path, head: bytes) -> bool:
        # "current_node" comes after the mapping, which may be longer than the head; "create_time"
        # comes before it
        return head.lstrip(b"\xef\xbb\xbf").lstrip().startswith(b"[") and b'"mapping"' in head and (
            b'"current_node"' in head or b'"create_time"' in head
        )

    def read(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        with open(path, "rb") as f:
            check_text(path, f.read(4096))
        read_at: dict[str, int] = {}  # conversation id → the index it was read from
        held: list[Any] = [None]  # the file, when it is held in memory; then where its conversations start

        def bad(i: int, message: str) -> None:
            line = None
            if held[0] is not None and reader.showing:
                held[0] = held[0] if isinstance(held[0], ItemLines) else ItemLines(held[0])
                line = held[0](i)
            reader.bad(line, under(f"$[{i}]", message))

        for i, conv in enumerate(self._conversations(path, held)):
            if not isinstance(conv, ChatGPTConversation):
                try:
                    conv = msgspec.convert(conv, ChatGPTConversation)
                except msgspec.ValidationError as err:
                    bad(i, _fault(conv, err))
                    continue
            conv_id = _conv_id(conv, i)
            if conv_id in read_at:  # a later copy would silently replace the first one
                bad(i, f"conversation id '{conv_id}' again (read at $[{read_at[conv_id]}]); skipped")
                continue
            try:
                branches = list(self._branches(conv, conv_id, i, path, reader))
            except RecordError as err:
                bad(i, str(err))
                continue
            if branches:
                read_at.setdefault(conv_id, i)  # once read: a copy that gave nothing does not shut out a good one
            yield from branches
        reader.advance(path.stat().st_size)

    def _conversations(self, path: Path, held: list[Any]) -> Iterator[ChatGPTConversation | Any]:
        """Each conversation: decoded into its shape when the whole file has it, else as JSON
        for ``read`` to check one by one. A file parsed at once is kept in ``held[0]``."""
        if path.stat().st_size <= STREAM_ABOVE:
            data = held[0] = path.read_bytes().removeprefix(BOM)
            try:
                yield from _decode_all(data)
                return
            except msgspec.ValidationError:  # a conversation of another shape: each one checked on its own
                pass
            except (msgspec.DecodeError, RecursionError) as err:
                raise json_error(data, err, path) from None
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError as err:
                raise json_error(data, err, path) from None
            if not isinstance(doc, list):
                raise SourceError("expected a list of conversations (conversations.json)", file=str(path), where=1)
            yield from doc
            return
        import ijson

        check_json_end(path, JSON_ARRAY_END)
        with open(path, "rb") as f:
            skip_bom(f)
            try:
                yield from ijson.items(f, "item", use_float=True)
            except ijson.JSONError as err:
                raise SourceError(f"not valid JSON: {err}", file=str(path)) from None

    def _branches(self, conv: ChatGPTConversation, conv_id: str, index: int, path: Path, reader: Reader) -> Iterator[Conversation]:
        mapping = conv.mapping
        current = conv.current_node
        if current not in mapping:  # no current node: the newest leaf
            leaves = [k for k, v in mapping.items() if not v.children]
            current = leaves[-1] if leaves else None
        if current is None:
            raise RecordError("a conversation without messages")
        leaves = [current]
        if self.options.all_branches:
            leaves += [k for k, v in mapping.items() if not v.children and k != current]
        created, updated = _iso(conv.create_time), _iso(conv.update_time)
        for leaf in leaves:
            messages = self._path(mapping, leaf)
            if not messages:
                reader.dropped["empty conversation"] += 1
                continue
            active = leaf == current
            yield Conversation(
                id=f"chatgpt:{conv_id}" if active else f"chatgpt:{conv_id}:{leaf}",
                messages=messages,
                title=conv.title,
                source={"format": self.name, "file": path.name, "locator": f"$[{index}]" + ("" if active else f"@{leaf}")},
                meta={"branch": "active" if active else "alternative", **({"model": conv.default_model_slug} if conv.default_model_slug else {})},
                created_at=created,
                updated_at=updated,
            )

    def _path(self, mapping: dict[str, _Node], leaf: str) -> list[Message]:
        nodes = []
        node_id: str | None = leaf
        seen = set()
        while node_id is not None and node_id in mapping and node_id not in seen:
            seen.add(node_id)
            nodes.append(mapping[node_id])
            node_id = mapping[node_id].parent
        messages = []
        calls: dict[str, str] = {}  # tool name → the id of its call not answered yet
        for node in reversed(nodes):
            m = node.message
            if m is None:
                continue
            if (m.metadata or {}).get("is_visually_hidden_from_conversation"):
                continue
            role = _ROLES.get(m.author.role)
            content = m.content if m.content is not None else _Content()
            text = _text(content)
            if role is None or text is None:
                continue
            if not text.strip() and not (role == "tool" and m.author.name in calls):
                continue  # an empty node (a placeholder of the app's); a tool's empty answer to a call stays
            msg_meta = {"time": t} if (t := _iso(m.create_time)) else {}
            name = m.author.name if role == "tool" else None
            recipient = m.recipient or "all"
            if role == "assistant" and recipient != "all" and content.content_type == "code":
                # code the model sent to a tool (python, the browser): a tool call, answered by
                # the tool's message that follows
                call_id = f"call_{m.id or len(messages)}"
                calls[recipient] = call_id
                arguments = orjson.dumps({"code": text}).decode()
                messages.append(Message(role="assistant", content="", meta=msg_meta,
                                        tool_calls=[{"id": call_id, "type": "function", "function": {"name": recipient, "arguments": arguments}}]))  # fmt: skip
                continue
            call_id = calls.pop(name, None) if role == "tool" and name is not None else None
            messages.append(Message(role=role, content=text, name=name, tool_call_id=call_id, meta=msg_meta))
        return messages
