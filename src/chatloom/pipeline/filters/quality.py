"""The quality filter: cheap signs of a bad conversation in its assistant replies."""

from __future__ import annotations

from pydantic import Field

from ...model import Conversation
from ..base import Filter, Params


class QualityParams(Params):
    max_repeated_lines: float = Field(0.5, ge=0, le=1)  # share of an assistant turn's lines that repeat
    max_symbol_ratio: float = Field(0.5, ge=0, le=1)  # non-alphanumeric, non-space characters
    min_reply_chars: int = Field(2, ge=0)  # replies shorter than this are "very short"
    max_short_share: float = Field(0.8, ge=0, le=1)  # share of very short replies that drops


class Quality(Filter[QualityParams]):
    """Cheap signs of a bad conversation: assistant replies that repeat themselves, that are mostly
    symbols, or that are nearly all very short."""

    name = "quality"
    summary = "low-quality heuristics: repetition, symbol ratio, very short replies"

    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        p = self.params
        replies = [m.content for m in conv.messages if m.role == "assistant"]
        if not replies:
            return True
        for text in replies:
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if len(lines) >= 4 and 1 - len(set(lines)) / len(lines) > p.max_repeated_lines:
                return False, "repeated lines"
            words = text.split()
            if len(words) >= 8 and 1 - len(set(words)) / len(words) > 0.8:
                return False, "repeated words"
            visible = [c for c in text if not c.isspace()]
            if len(visible) >= 10 and sum(not c.isalnum() for c in visible) / len(visible) > p.max_symbol_ratio:
                return False, "mostly symbols"
        short = sum(len(r.strip()) < p.min_reply_chars for r in replies)
        if short / len(replies) > p.max_short_share:
            return False, "nearly all replies very short"
        return True
