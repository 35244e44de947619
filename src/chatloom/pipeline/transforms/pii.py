"""The PII transform: emails, phone numbers, URLs, IP addresses, Discord mentions and handles, card
numbers (Luhn-checked), found by regular expressions in a fixed order (URLs before emails and
handles, cards before phones) and never overlapping; redacted as ``[KIND]`` or the conversation dropped."""

from __future__ import annotations

import re
from typing import Literal

from msgspec.structs import replace
from pydantic import Field

from ...model import Conversation
from ..base import Params, Transform


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


Kind = Literal["EMAIL", "PHONE", "URL", "IP", "MENTION", "HANDLE", "CARD"]


class PIIParams(Params):
    mode: Literal["redact", "drop"] = "redact"
    kinds: list[Kind] = Field(["URL", "EMAIL", "MENTION", "IP", "CARD", "PHONE", "HANDLE"], min_length=1)  # all, in PII_PATTERNS' order
    roles: list[Literal["system", "user", "assistant", "tool"]] = Field(["system", "user", "assistant", "tool"], min_length=1)


class PII(Transform[PIIParams]):
    """Emails, phone numbers, URLs, IP addresses, Discord mentions and handles, card numbers:
    ``redact`` replaces each with a typed placeholder (``[EMAIL]``), ``drop`` drops the conversation."""

    name = "pii"
    summary = "personal data: redact with typed placeholders ([EMAIL], [PHONE], …) or drop the conversation"
    drop_reason = "personal data"

    def apply(self, conv: Conversation) -> Conversation | None:
        kinds, changed, found = set(self.params.kinds), [], 0
        for m in conv.messages:
            spans = [s for s in find_pii(m.content) if s[2] in kinds] if m.role in self.params.roles else []
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
        if self.params.mode == "drop":
            return None
        self.stats["conversations redacted"] += 1
        return replace(conv, messages=changed)
