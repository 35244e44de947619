"""OpenAI-shaped messages.

- ``openai``: one ``{"messages": [...], "tools": [...]}`` object a line, plus our metadata (id,
  title, language, tags, source, meta), which ``chatloom import`` reads back losslessly. Options:
  ``meta=False`` writes only messages and tools (the bare fine-tuning shape);
  ``legacy_functions=True`` writes OpenAI's old ``function_call`` / ``function`` shape.
- ``completion``: TRL's conversational prompt-completion shape, ``{"prompt": [the messages
  before the last assistant turn], "completion": [that turn]}`` (+ ``tools``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import IO, Any

from .. import jsonl
from ..model import Conversation
from .base import Format, JsonlFormat, WriteReport, train_flags, until_last_reply
from .records import OPENAI_MESSAGES, OPENAI_TAGS


class OpenAIFormat(Format):
    name = "openai"
    summary = "JSONL of {messages, tools} with chatloom metadata (reads back losslessly)"
    llamafactory = {"formatting": "sharegpt", "columns": {"messages": "messages"}, "tags": {**OPENAI_TAGS, "observation_tag": "tool"}}
    axolotl = {"type": "chat_template", "field_messages": "messages", **OPENAI_MESSAGES, "message_field_training": "train"}

    def write(self, convs: Iterable[Conversation], fp: IO[bytes]) -> WriteReport:
        report = WriteReport()
        meta = self.options.get("meta", True)
        legacy = self.options.get("legacy_functions", False)
        for conv in convs:
            fp.write(jsonl.dumps(conv, meta=meta, legacy_functions=legacy))
            report.written += 1
        return report


class CompletionFormat(JsonlFormat):
    name = "completion"
    summary = "TRL prompt-completion JSONL: {prompt: [messages before the last reply], completion: [the reply]}"

    def record(self, conv: Conversation, dropped: Counter[str]) -> dict[str, Any] | None:
        messages = until_last_reply(conv.messages, dropped)
        if messages is None:
            return None
        train_flags(messages, dropped)
        dicts = jsonl.bare_messages(messages)
        record: dict[str, Any] = {"prompt": dicts[:-1], "completion": dicts[-1:]}
        if conv.tools:
            record["tools"] = conv.tools
        return record
