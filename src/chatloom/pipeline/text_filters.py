"""Filters and a transform that read the text: PII, slop and refusals, quality, language."""

from __future__ import annotations

import re
from importlib import resources
from typing import Literal

from msgspec.structs import replace
from pydantic import Field

from ..model import Conversation
from .base import Filter, Params, Transform


def _luhn(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# the order matters: URLs before emails and handles, cards before phones
PII_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("URL", re.compile(r"\b(?:https?://|www\.)[^\s<>\"']*[^\s<>\"'.,;:!?)\]]", re.IGNORECASE)),  # not a closing comma
    ("EMAIL", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}\b", re.IGNORECASE)),
    ("MENTION", re.compile(r"<(?:@[!&]?|#)\d{5,}>")),
    ("IP", re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"
                      r"|\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b", re.IGNORECASE)),
    ("CARD", re.compile(r"\b(?:\d[ -]?){12,18}\d\b")),
    ("PHONE", re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{2,4}[ .-]?\d{3,4}\b")),
    ("HANDLE", re.compile(r"(?<![\w@])@[A-Za-z0-9_][A-Za-z0-9_.]{1,31}\b")),
]


def find_pii(text: str) -> list[tuple[int, int, str]]:
    """Spans of personal data: (start, end, kind), not overlapping, in order."""
    taken: list[tuple[int, int, str]] = []
    for kind, pattern in PII_PATTERNS:
        for m in pattern.finditer(text):
            if kind == "CARD" and not _luhn(re.sub(r"\D", "", m.group())):
                continue
            if any(m.start() < e and s < m.end() for s, e, _ in taken):
                continue
            taken.append((m.start(), m.end(), kind))
    return sorted(taken)


class PII(Transform):
    """Emails, phone numbers, URLs, IP addresses, Discord mentions and handles, card numbers:
    ``redact`` replaces each with a typed placeholder (``[EMAIL]``), ``drop`` drops the conversation."""

    name = "pii"
    summary = "personal data: redact with typed placeholders ([EMAIL], [PHONE], …) or drop the conversation"
    drop_reason = "personal data"

    class Params(Params):
        mode: Literal["redact", "drop"] = "redact"
        kinds: list[Literal["EMAIL", "PHONE", "URL", "IP", "MENTION", "HANDLE", "CARD"]] = [k for k, _ in PII_PATTERNS]
        roles: list[Literal["system", "user", "assistant", "tool"]] = ["system", "user", "assistant", "tool"]

    def apply(self, conv: Conversation) -> Conversation | None:
        kinds, changed, found = set(self.params.kinds), [], 0  # type: ignore[attr-defined]
        for m in conv.messages:
            spans = [s for s in find_pii(m.content) if s[2] in kinds] if m.role in self.params.roles else []  # type: ignore[attr-defined]
            if not spans:
                changed.append(m)
                continue
            found += len(spans)
            for _, _, kind in spans:
                self.stats[f"{kind.lower()} found"] += 1
            text, at = [], 0
            for s, e, kind in spans:
                text.append(m.content[at:s] + f"[{kind}]")
                at = e
            changed.append(replace(m, content="".join(text) + m.content[at:]))
        if not found:
            return conv
        if self.params.mode == "drop":  # type: ignore[attr-defined]
            return None
        self.stats["conversations redacted"] += 1
        return replace(conv, messages=changed)


def phrase_list(name: str) -> list[str]:
    """A shipped phrase list (``slop``, ``refusals``): one phrase a line, ``#`` comments."""
    text = resources.files("chatloom.pipeline").joinpath(f"phrases/{name}.txt").read_text(encoding="utf-8")
    return [line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#")]


class Phrases(Filter):
    """Drop conversations whose assistant turns use phrases from a list: ``slop`` (the tics of LLM
    prose), ``refusals`` (I'm sorry, but as an AI…), both shipped, plus your own."""

    name = "phrases"
    summary = "drop assistant turns with LLM slop or refusal phrases (shipped lists, extendable)"

    class Params(Params):
        lists: list[Literal["slop", "refusals"]] = ["slop", "refusals"]
        extra: list[str] = []
        max_hits: int = Field(0, ge=0)  # more hits than this drops the conversation

    def __init__(self, params: Params, context) -> None:  # type: ignore[no-untyped-def]
        super().__init__(params, context)
        self._lists = {name: phrase_list(name) for name in params.lists}  # type: ignore[attr-defined]
        if params.extra:  # type: ignore[attr-defined]
            self._lists["extra"] = [p.lower() for p in params.extra]  # type: ignore[attr-defined]
        self._re = {name: re.compile("|".join(re.escape(p) for p in phrases)) for name, phrases in self._lists.items() if phrases}

    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        text = "\n".join(m.content.lower().replace("\u2019", "'") for m in conv.messages if m.role == "assistant")
        for name, pattern in self._re.items():
            if len(pattern.findall(text)) > self.params.max_hits:  # type: ignore[attr-defined]
                return False, f"{name} phrases"
        return True


class Quality(Filter):
    """Cheap signs of a bad conversation: assistant replies that repeat themselves, that are mostly
    symbols, or that are nearly all very short."""

    name = "quality"
    summary = "low-quality heuristics: repetition, symbol ratio, very short replies"

    class Params(Params):
        max_repeated_lines: float = Field(0.5, ge=0, le=1)  # share of an assistant turn's lines that repeat
        max_symbol_ratio: float = Field(0.5, ge=0, le=1)  # non-alphanumeric, non-space characters
        min_reply_chars: int = Field(2, ge=0)  # replies shorter than this are "very short"
        max_short_share: float = Field(0.8, ge=0, le=1)  # share of very short replies that drops

    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        p = self.params
        replies = [m.content for m in conv.messages if m.role == "assistant"]
        if not replies:
            return True
        for text in replies:
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if len(lines) >= 4 and 1 - len(set(lines)) / len(lines) > p.max_repeated_lines:  # type: ignore[attr-defined]
                return False, "repeated lines"
            words = text.split()
            if len(words) >= 8 and 1 - len(set(words)) / len(words) > 0.8:
                return False, "repeated words"
            visible = [c for c in text if not c.isspace()]
            if len(visible) >= 10 and sum(not c.isalnum() for c in visible) / len(visible) > p.max_symbol_ratio:  # type: ignore[attr-defined]
                return False, "mostly symbols"
        short = sum(len(r.strip()) < p.min_reply_chars for r in replies)  # type: ignore[attr-defined]
        if short / len(replies) > p.max_short_share:  # type: ignore[attr-defined]
            return False, "nearly all replies very short"
        return True


class Language(Filter):
    """The language of the user and assistant text (py3langid, offline) must be one of ``keep``."""

    name = "language"
    summary = "keep conversations in the given languages (py3langid, offline)"

    class Params(Params):
        keep: list[str] = Field(min_length=1)
        min_confidence: float = Field(0.9, ge=0, le=1)  # below it the detector is unsure (short chats): see ``unsure``
        unsure: Literal["keep", "drop"] = "keep"

    def __init__(self, params: Params, context) -> None:  # type: ignore[no-untyped-def]
        super().__init__(params, context)
        import py3langid

        self._identifier = py3langid.langid.LanguageIdentifier.from_model_file(py3langid.langid.MODEL_FILE, norm_probs=True)

    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        text = " ".join(m.content for m in conv.messages if m.role in ("user", "assistant"))
        lang, prob = self._identifier.classify(text[:2000])  # a few hundred words decide it; more costs time only
        if lang in self.params.keep:  # type: ignore[attr-defined]
            return True
        if prob < self.params.min_confidence:  # type: ignore[attr-defined]
            if self.params.unsure == "drop":  # type: ignore[attr-defined]
                return False, "language unsure"
            self.stats["unsure, kept"] += 1
            return True
        return False, f"language {lang}"
