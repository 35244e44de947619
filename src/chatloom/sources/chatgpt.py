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

import orjson

from ..errors import SourceError
from ..model import Conversation, Message
from .base import BOM, JSON_ARRAY_END, Reader, Source, check_json_end, check_text, json_error, skip_bom

STREAM_ABOVE = 256 << 20
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "tool": "tool"}


def _iso(ts: Any) -> str | None:
    if isinstance(ts, int | float):
        return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
    return None


# the model's own working (o1/o3 thoughts and their summary) and the user's custom instructions:
# not turns of the conversation
_SKIPPED = {"thoughts", "reasoning_recap", "user_editable_context", "model_editable_context"}
_AUDIO = ("audio_asset_pointer", "real_time_user_audio_video_asset_pointer")  # the recording; its transcription is the text


def _text(content: dict[str, Any]) -> str | None:
    """A message's text, with placeholders for what is not text; None for a node to skip."""
    kind = content.get("content_type", "text")
    if kind in _SKIPPED:
        return None
    if kind in ("text", "multimodal_text"):
        out = []
        for part in content.get("parts") or ():
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict):
                ptype = str(part.get("content_type", "part"))
                if isinstance(part.get("text"), str):  # a voice message's audio_transcription
                    out.append(part["text"])
                elif ptype not in _AUDIO:
                    out.append(f"[{'image' if 'image' in ptype else ptype}]")
        return "\n".join(p for p in out if p)
    if kind == "code":
        return str(content.get("text", ""))
    if kind in ("execution_output", "tether_quote"):
        return str(content.get("text", ""))
    return f"[{kind}]"


def _conv_id(conv: dict[str, Any], index: int) -> str:
    return str(conv.get("conversation_id") or conv.get("id") or f"index{index}")


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
        for i, conv in enumerate(self._conversations(path)):
            try:
                conv_id = _conv_id(conv, i)
                if conv_id in read_at:  # a later copy would silently replace the first one
                    reader.bad(f"$[{i}]", f"conversation id '{conv_id}' again (read at $[{read_at[conv_id]}]); skipped")
                    continue
                for branch in self._branches(conv, conv_id, i, path, reader):
                    read_at.setdefault(conv_id, i)  # once read: a copy that gave nothing does not shut out a good one
                    yield branch
            except (KeyError, TypeError, AttributeError, ValueError, OverflowError, OSError) as err:  # OSError: a time out of range
                reader.bad(f"$[{i}]", f"not a ChatGPT conversation ({type(err).__name__}: {err})")
        reader.advance(path.stat().st_size)

    def _conversations(self, path: Path) -> Iterator[dict[str, Any]]:
        if path.stat().st_size <= STREAM_ABOVE:
            data = path.read_bytes().removeprefix(BOM)
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError as err:
                raise json_error(data, err, path) from None
            if not isinstance(doc, list):
                raise SourceError("expected a list of conversations (conversations.json)", file=str(path))
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

    def _branches(self, conv: dict[str, Any], conv_id: str, index: int, path: Path, reader: Reader) -> Iterator[Conversation]:
        mapping: dict[str, Any] = conv["mapping"]
        current = conv.get("current_node")
        if current not in mapping:  # no current node: the newest leaf
            leaves = [k for k, v in mapping.items() if not v.get("children")]
            current = leaves[-1] if leaves else None
        if current is None:
            reader.bad(f"$[{index}]", "a conversation without messages")
            return
        leaves = [current]
        if self.options.all_branches:
            leaves += [k for k, v in mapping.items() if not v.get("children") and k != current]
        for leaf in leaves:
            messages = self._path(mapping, leaf)
            if not messages:
                reader.dropped["empty conversation"] += 1
                continue
            active = leaf == current
            yield Conversation(
                id=f"chatgpt:{conv_id}" if active else f"chatgpt:{conv_id}:{leaf}",
                messages=messages,
                title=conv.get("title"),
                source={"format": self.name, "file": path.name, "locator": f"$[{index}]" + ("" if active else f"@{leaf}")},
                meta={"branch": "active" if active else "alternative", **({"model": conv["default_model_slug"]} if conv.get("default_model_slug") else {})},
                created_at=_iso(conv.get("create_time")),
                updated_at=_iso(conv.get("update_time")),
            )

    def _path(self, mapping: dict[str, Any], leaf: str) -> list[Message]:
        nodes = []
        node_id: str | None = leaf
        seen = set()
        while node_id is not None and node_id in mapping and node_id not in seen:
            seen.add(node_id)
            nodes.append(mapping[node_id])
            node_id = mapping[node_id].get("parent")
        messages = []
        calls: dict[str, str] = {}  # tool name → the id of its call not answered yet
        for node in reversed(nodes):
            m = node.get("message")
            if not m:
                continue
            meta = m.get("metadata") or {}
            if meta.get("is_visually_hidden_from_conversation"):
                continue
            role = _ROLES.get((m.get("author") or {}).get("role", ""), None)
            text = _text(m.get("content") or {})
            if role is None or text is None:
                continue
            if not text.strip() and not (role == "tool" and (m.get("author") or {}).get("name") in calls):
                continue  # an empty node (a placeholder of the app's); a tool's empty answer to a call stays
            msg_meta = {"time": t} if (t := _iso(m.get("create_time"))) else {}
            name = (m.get("author") or {}).get("name") if role == "tool" else None
            recipient = m.get("recipient") or "all"
            if role == "assistant" and recipient != "all" and (m.get("content") or {}).get("content_type") == "code":
                # code the model sent to a tool (python, the browser): a tool call, answered by
                # the tool's message that follows
                call_id = f"call_{m.get('id') or len(messages)}"
                calls[recipient] = call_id
                arguments = orjson.dumps({"code": text}).decode()
                messages.append(Message(role="assistant", content="", meta=msg_meta,
                                        tool_calls=[{"id": call_id, "type": "function", "function": {"name": recipient, "arguments": arguments}}]))  # fmt: skip
                continue
            call_id = calls.pop(name, None) if role == "tool" else None
            messages.append(Message(role=role, content=text, name=name, tool_call_id=call_id, meta=msg_meta))
        return messages
