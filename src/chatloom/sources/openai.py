"""``openai``: JSONL with ``messages`` (+ ``tools``), also our own export, read back losslessly."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import orjson

from ..jsonl import RecordError, parse_line, read_lines
from ..model import Conversation
from .base import Reader, Source, check_text


class OpenAISource(Source):
    name = "openai"
    summary = "JSONL, one {messages, tools} object a line (OpenAI fine-tuning format; chatloom's export)"
    extensions = (".jsonl", ".jsonl.txt", ".ndjson")

    def detect(self, path: Path, head: bytes) -> bool:
        stripped = head.removeprefix(b"\xef\xbb\xbf").lstrip()
        if not stripped.startswith(b"{"):
            return False
        first, newline, _ = stripped.partition(b"\n")
        if not newline:  # a first line longer than the head: messages must be a list of objects
            return re.search(rb'"messages"\s*:\s*\[\s*\{', first) is not None
        try:
            obj = orjson.loads(first)
        except orjson.JSONDecodeError:
            return False
        return isinstance(obj, dict) and "messages" in obj

    def read(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        with open(path, "rb") as f:
            check_text(path, f.read(4096))
            f.seek(0)
            first = True
            for lineno, consumed, line in read_lines(f):
                if first:
                    line = line.removeprefix(b"\xef\xbb\xbf")  # UTF-8 BOM
                    first = False
                try:
                    conv = parse_line(line)
                except RecordError as err:
                    reader.bad(lineno, str(err))
                    continue
                if not conv.messages:  # nothing to learn from, nothing to look at
                    reader.dropped["empty conversation"] += 1
                    continue
                if not conv.source:
                    conv.source = {"format": self.name, "file": path.name, "locator": f"line {lineno}"}
                yield conv
                if lineno % 1024 == 0:
                    reader.advance(consumed)
