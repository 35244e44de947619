"""``text``: plain text documents (stories, notes) as assistant turns to learn to write like.

One conversation per file, or with ``--text-blocks`` one per blank-line-separated block. Never
detected automatically (any text file would match): pass ``-f text``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ..model import Conversation, Message
from .base import Reader, Source, read_text


class TextSource(Source):
    name = "text"
    summary = "plain text documents: one per file, or per blank-line block with --text-blocks (-f text)"
    extensions = (".txt", ".md")
    detectable = False

    def read(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        text, size = read_text(path)
        if self.options.text_blocks:
            blocks, line = [], 1
            for block in re.split(r"(\n\s*\n)", text):
                if block.strip() and not re.fullmatch(r"\n\s*\n", block):
                    blocks.append((line, block.strip()))
                line += block.count("\n")
        else:
            blocks = [(1, text.strip())] if text.strip() else []
        for line, block in blocks:
            yield Conversation(
                messages=[Message(role="assistant", content=block)],
                source={"format": self.name, "file": path.name, "locator": f"line {line}"},
            )
        reader.advance(size)
