"""Record formats: one conversation per JSON line, in the shapes trainers and tools read.

- ``sharegpt``: ``{conversations: [{from, value}], system, tools}`` as LLaMA-Factory reads it:
  the opening system message is the ``system`` key, a tool call is a ``function_call`` turn whose
  value is ``{"name", "arguments"}`` JSON (a list of them for parallel calls), a tool result is an
  ``observation`` turn, and ``tools`` is a JSON string of function schemas.
- ``alpaca``: ``{instruction, input, output, system, history}``, the last reply as ``output`` and
  the pairs before it as ``history``.
- ``openchat``: ``{items: [{role, content, weight}], system}``, the weight from ``Message.trains``.
- ``lima``: LIMA-GUI's ``{name, lang, tags, messages, tools}``, tool calls as ``function_call``
  with dict arguments and results as role ``function``.

Each reads back through chatloom's importer of the same name.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from ..model import Conversation
from .base import (
    NAMES,
    NO_PAIR,
    NO_REPLY,
    JsonlFormat,
    call_arguments,
    leading_system,
    plain_messages,
    train_flags,
    user_assistant_pairs,
)

_SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt", "tool": "observation"}

#: the axolotl ``chat_template`` mapping of OpenAI-shaped messages
OPENAI_MESSAGES = {"message_property_mappings": {"role": "role", "content": "content"}, "roles_to_train": ["assistant"]}
#: LLaMA-Factory's tags for OpenAI-shaped messages
OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant", "system_tag": "system"}


class ShareGPTFormat(JsonlFormat):
    name = "sharegpt"
    summary = "ShareGPT JSONL as LLaMA-Factory reads it: {conversations: [{from, value}], system, tools}"
    llamafactory = {"formatting": "sharegpt", "columns": {"messages": "conversations", "system": "system", "tools": "tools"}}
    axolotl = {
        "type": "chat_template",
        "field_messages": "conversations",
        "message_property_mappings": {"role": "from", "content": "value"},
        "roles": {"system": ["system"], "user": ["human"], "assistant": ["gpt", "function_call"], "tool": ["observation"]},
        "roles_to_train": ["assistant"],
    }

    def record(self, conv: Conversation, dropped: Counter[str]) -> dict[str, Any]:
        system, rest = leading_system(conv.messages, dropped, keep_late=True)
        turns = []
        for m in rest:
            if m.name is not None and m.role != "tool":  # a tool message's name is its function's
                dropped[NAMES] += 1
            if m.tool_calls:
                if m.content:
                    dropped["assistant text beside tool calls"] += 1
                calls = [{"name": (c.get("function") or {}).get("name", ""), "arguments": call_arguments(c)} for c in m.tool_calls]
                turns.append({"from": "function_call", "value": orjson.dumps(calls[0] if len(calls) == 1 else calls).decode()})
            else:
                turns.append({"from": _SHAREGPT_ROLES[m.role], "value": m.content})
        train_flags(conv.messages, dropped)
        tools = [t.get("function", t) if t.get("type") == "function" else t for t in conv.tools]
        return {"conversations": turns, "system": system, "tools": orjson.dumps(tools).decode() if tools else ""}


class AlpacaFormat(JsonlFormat):
    name = "alpaca"
    summary = "Alpaca JSONL as LLaMA-Factory reads it: {instruction, input, output, system, history}"
    llamafactory = {
        "formatting": "alpaca",
        "columns": {"prompt": "instruction", "query": "input", "response": "output", "system": "system", "history": "history"},
    }
    axolotl = {"type": "alpaca"}

    def record(self, conv: Conversation, dropped: Counter[str]) -> dict[str, Any] | None:
        system, messages = leading_system(plain_messages(conv, dropped), dropped)
        pairs = user_assistant_pairs(messages, dropped)
        if not pairs:
            dropped[NO_PAIR] += 1
            return None
        (instruction, output) = pairs[-1]
        return {"instruction": instruction, "input": "", "output": output, "system": system, "history": [list(p) for p in pairs[:-1]]}


class OpenChatFormat(JsonlFormat):
    name = "openchat"
    summary = "OpenChat JSONL: {items: [{role, content, weight}], system}, weight 1.0 where the loss counts"
    llamafactory = {"formatting": "sharegpt", "columns": {"messages": "items", "system": "system"}, "tags": OPENAI_TAGS}
    axolotl = {"type": "chat_template", "field_messages": "items", **OPENAI_MESSAGES, "message_field_training": "weight"}

    def record(self, conv: Conversation, dropped: Counter[str]) -> dict[str, Any] | None:
        system, messages = leading_system(plain_messages(conv, dropped, train=True), dropped)
        if not any(m.role == "assistant" for m in messages):
            dropped[NO_REPLY] += 1
            return None
        items = [{"role": m.role, "content": m.content, "weight": 1.0 if m.trains else 0.0} for m in messages]
        return {"items": items, "system": system}


class LimaFormat(JsonlFormat):
    name = "lima"
    summary = "LIMA-GUI JSONL: {name, lang, tags, messages, tools}, function_call with dict arguments"

    def record(self, conv: Conversation, dropped: Counter[str]) -> dict[str, Any]:
        messages = []
        called: dict[str, str] = {}  # tool call id → function name
        for m in conv.messages:
            d: dict[str, Any] = {"role": m.role, "content": m.content}
            if m.name is not None:
                d["name"] = m.name
            if m.tool_calls:
                if len(m.tool_calls) > 1:
                    dropped["tool calls after the first of a turn (LIMA-GUI holds one)"] += len(m.tool_calls) - 1
                call = m.tool_calls[0]
                fn_name = (call.get("function") or {}).get("name", "")
                called[call.get("id", "")] = fn_name
                d["function_call"] = {"name": fn_name, "arguments": call_arguments(call)}
            if m.role == "tool":
                d = {"role": "function", "content": m.content, "name": m.name or called.get(m.tool_call_id or "", "")}
            messages.append(d)
        train_flags(conv.messages, dropped)
        return {"name": conv.title or "", "lang": conv.language or "", "tags": conv.tags, "messages": messages, "tools": conv.tools}
