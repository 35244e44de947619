"""``openai``: one ``{"messages": [...], "tools": [...]}`` object a line, plus our metadata
(id, title, language, tags, source, meta), which ``chatloom import`` reads back losslessly.

Options: ``meta=False`` writes only messages and tools (the bare fine-tuning shape);
``legacy_functions=True`` writes OpenAI's old ``function_call`` / ``function`` shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO

from .. import jsonl
from ..model import Conversation
from .base import Format, WriteReport


class OpenAIFormat(Format):
    name = "openai"
    summary = "JSONL of {messages, tools} with chatloom metadata (reads back losslessly)"

    def write(self, convs: Iterable[Conversation], fp: IO[bytes]) -> WriteReport:
        report = WriteReport()
        meta = self.options.get("meta", True)
        legacy = self.options.get("legacy_functions", False)
        for conv in convs:
            fp.write(jsonl.dumps(conv, meta=meta, legacy_functions=legacy))
            report.written += 1
        return report
