"""The canonical conversation model (DESIGN §1).

Messages and conversations are msgspec Structs: decoding a JSONL line straight into them is the
fast path of every import, and they carry no per-field validation cost once built. Validation
happens at the edges (files, API payloads), where ``msgspec`` names the JSON path of a bad field.
They are not tracked by the garbage collector (``gc=False``): an import holds batches of
hundreds of thousands, which made every collection walk them. So a conversation or message must
never be part of a reference cycle (put no conversation inside its own ``meta``).

    >>> conv = Conversation(messages=[Message(role="user", content="hi"),
    ...                               Message(role="assistant", content="hello")])
    >>> digest(conv)[:12]
    '...'
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any, Literal

import msgspec
import orjson

ROLES = ("system", "user", "assistant", "tool")
Role = Literal["system", "user", "assistant", "tool"]


class Message(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One turn. ``train``: None means the default policy (assistant turns train)."""

    role: Role
    content: str  # always written, even when empty: OpenAI readers expect the key
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    train: bool | None = None
    meta: dict[str, Any] = {}

    @property
    def trains(self) -> bool:
        """Whether the loss counts on this message: its ``train`` flag, else assistant turns."""
        return self.role == "assistant" if self.train is None else self.train


class Conversation(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """A conversation with its metadata. ``source`` is ``{format, file, locator}``."""

    id: str | None = None
    messages: list[Message]
    title: str | None = None
    language: str | None = None
    tags: list[str] = []
    tools: list[dict[str, Any]] = []
    source: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    created_at: str | None = None
    updated_at: str | None = None


def _norm(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip()


def digest(conv: Conversation) -> str:
    """sha256 over the normalized (role, name, content, tool_calls) sequence.

    Equal digest means the same content: dedup, diff and idempotent import rely on it. Metadata
    (title, tags, meta, timestamps) is not part of it; content is NFC-normalized and stripped.
    """
    rows = [(m.role, m.name or "", _norm(m.content), m.tool_calls) for m in conv.messages]
    return hashlib.sha256(orjson.dumps(rows, option=orjson.OPT_SORT_KEYS)).hexdigest()


def ensure_id(conv: Conversation, conv_digest: str | None = None) -> str:
    """Give ``conv`` an id derived from its digest when the source gave none; return the id."""
    if not conv.id:
        conv.id = "sha:" + (conv_digest or digest(conv))[:20]
    return conv.id


# -- the legacy OpenAI function-calling shape -------------------------------------------------


def _arguments(value: Any) -> str:
    """OpenAI tool-call arguments are a JSON string; LIMA-GUI and others wrote a dict."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def upgrade_legacy_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Convert ``function_call`` / role ``function`` (OpenAI's old shape) to ``tool_calls`` / ``tool``.

    Call ids are made up deterministically (``call_<message index>``) and each ``function``
    result is linked to the latest unanswered call of the same name. Returns new dicts.
    """
    out: list[dict[str, Any]] = []
    pending: dict[str, list[str]] = {}
    for i, raw in enumerate(messages):
        m = dict(raw)
        fc = m.pop("function_call", None)
        if fc is not None and m.get("role") == "assistant":
            call_id = f"call_{i}"
            m["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": fc.get("name", ""), "arguments": _arguments(fc.get("arguments", ""))},
                }
            ]
            pending.setdefault(fc.get("name", ""), []).append(call_id)
        elif m.get("tool_calls"):
            calls = []
            for call in m["tool_calls"]:
                call = dict(call)
                fn = dict(call.get("function") or {})
                if "arguments" in fn:
                    fn["arguments"] = _arguments(fn["arguments"])
                call["function"] = fn
                calls.append(call)
                pending.setdefault(fn.get("name", ""), []).append(call.get("id", ""))
            m["tool_calls"] = calls
        if m.get("role") == "function":
            m["role"] = "tool"
            waiting = pending.get(m.get("name") or "", [])
            if waiting and "tool_call_id" not in m:
                m["tool_call_id"] = waiting.pop(0)
        if m.get("content") is None:
            m["content"] = ""
        elif isinstance(m["content"], list):
            m["content"] = content_parts_to_text(m["content"])
        out.append(m)
    return out


def content_parts_to_text(parts: list[Any]) -> str:
    """OpenAI content parts → text; a non-text part becomes a placeholder such as ``[image_url]``."""
    texts = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict):
            kind = part.get("type", "part")
            texts.append(part["text"] if kind == "text" and "text" in part else f"[{kind}]")
    return "\n".join(texts)


def downgrade_to_legacy(messages: list[Message]) -> list[dict[str, Any]]:
    """Write ``tool_calls`` / ``tool`` back as ``function_call`` / ``function`` (one call per turn)."""
    out = []
    for m in messages:
        d = msgspec.to_builtins(m)
        calls = d.pop("tool_calls", None)
        if calls:
            fn = calls[0].get("function", {})
            d["function_call"] = {"name": fn.get("name", ""), "arguments": fn.get("arguments", "")}
            if not d.get("content"):
                d["content"] = None
        if d["role"] == "tool":
            d["role"] = "function"
            d.pop("tool_call_id", None)
        out.append(d)
    return out
