"""The built-in filters: each answers keep, or (False, reason)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field

from ..model import Conversation, digest
from .base import DatasetFilter, Filter, Params

_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]")


def normalize(text: str) -> str:
    """What dedup compares: NFKC, lower case, no punctuation, single spaces."""
    return _SPACE.sub(" ", _PUNCT.sub("", unicodedata.normalize("NFKC", text).lower())).strip()


def conversation_text(conv: Conversation) -> str:
    return "\n".join(m.content for m in conv.messages)


class ExactDedup(DatasetFilter):
    """Drops a conversation seen before (same normalized turns), and with ``per_turn`` one whose
    every assistant turn was seen before; the first one in input order is kept."""

    name = "exact_dedup"
    summary = "drop repeated conversations (and, per_turn, repeated assistant replies), after normalization"

    class Params(Params):
        per_turn: bool = False

    def fit(self, convs: Iterable[Conversation]) -> None:
        seen: set[bytes] = set()
        turns: set[bytes] = set()
        self._drop: dict[str, str] = {}
        for conv in convs:
            key = hashlib.blake2b("\x00".join(f"{m.role}\x01{normalize(m.content)}" for m in conv.messages).encode(), digest_size=16).digest()
            if key in seen:
                self._drop[conv.id or digest(conv)] = "exact duplicate"
                continue
            seen.add(key)
            if self.params.per_turn:  # type: ignore[attr-defined]
                replies = [hashlib.blake2b(normalize(m.content).encode(), digest_size=16).digest() for m in conv.messages if m.role == "assistant"]
                if replies and all(r in turns for r in replies):
                    self._drop[conv.id or digest(conv)] = "every assistant turn seen before"
                    continue
                turns.update(replies)

    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        reason = self._drop.get(conv.id or digest(conv))
        return True if reason is None else (False, reason)


class NearDedup(DatasetFilter):
    """MinHash + LSH over each conversation's text, across the whole input, in input order: a
    conversation is dropped when it near-duplicates (Jaccard ≥ threshold, checked exactly) one
    already kept, so everything dropped has a real near-duplicate in the output. ``transitive``
    drops whole clusters of chained pairs instead (one kept each, as datatrove does)."""

    name = "near_dedup"
    summary = "drop near-duplicate conversations (MinHash + LSH; Jaccard threshold, n-grams, permutations)"

    class Params(Params):
        threshold: float = Field(0.8, gt=0, le=1)
        ngram: int = Field(5, ge=1)
        permutations: int = Field(128, ge=8)
        transitive: bool = False

    def fit(self, convs: Iterable[Conversation]) -> None:
        from . import minhash

        ids, texts = [], []
        for conv in convs:
            ids.append(conv.id or digest(conv))
            texts.append(conversation_text(conv))
        p = self.params
        keepers = minhash.near_duplicates(texts, threshold=p.threshold, ngram=p.ngram, permutations=p.permutations,  # type: ignore[attr-defined]
                                          seed=self.context.seed, transitive=p.transitive)  # type: ignore[attr-defined]
        self._drop = {ids[i] for i, k in enumerate(keepers) if k >= 0}
        self.stats["clusters"] = len({int(k) for k in keepers if k >= 0})

    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        return (False, "near duplicate") if (conv.id or digest(conv)) in self._drop else True


def _within(n: int, bounds: Any, unit: str) -> bool | tuple[bool, str]:
    if n < bounds.min:
        return False, f"fewer than {bounds.min} {unit}"
    if bounds.max is not None and n > bounds.max:
        return False, f"more than {bounds.max} {unit}"
    return True


class Turns(Filter):
    name = "turns"
    summary = "bounds on the number of turns (system messages not counted)"

    class Params(Params):
        min: int = Field(2, ge=0)
        max: int | None = Field(None, ge=1)

    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        return _within(sum(m.role != "system" for m in conv.messages), self.params, "turns")


class Tokens(Filter):
    name = "tokens"
    summary = "bounds on the conversation's length in tokens (ChatML, the recipe's tokenizer)"

    class Params(Params):
        min: int = Field(0, ge=0)
        max: int | None = Field(None, ge=1)

    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        from ..tokens.tokenizer import get_tokenizer

        n = get_tokenizer(self.context.tokenizer).chatml_counts([[(m.role, m.content) for m in conv.messages]])[0]
        return _within(n, self.params, "tokens")


class Regex(Filter):
    name = "regex"
    summary = "drop conversations whose text matches a pattern (or, keep_matching, those that do not)"

    class Params(Params):
        pattern: str
        roles: list[Literal["system", "user", "assistant", "tool"]] = ["user", "assistant"]
        ignore_case: bool = True
        keep_matching: bool = False

    def __init__(self, params: Params, context) -> None:  # type: ignore[no-untyped-def]
        super().__init__(params, context)
        self._re = re.compile(params.pattern, re.IGNORECASE if params.ignore_case else 0)  # type: ignore[attr-defined]

    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        roles = self.params.roles  # type: ignore[attr-defined]
        hit = any(self._re.search(m.content) for m in conv.messages if m.role in roles)
        if hit != self.params.keep_matching:  # type: ignore[attr-defined]
            return False, "matches the pattern" if hit else "does not match the pattern"
        return True


class Structure(Filter):
    name = "structure"
    summary = "roles alternate, the conversation ends with an assistant turn, no empty turns"

    class Params(Params):
        alternate: bool = True
        ends_with_assistant: bool = True
        no_empty: bool = True

    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        p = self.params
        turns = [m for m in conv.messages if m.role != "system"]
        if p.no_empty and any(not m.content.strip() and not m.tool_calls for m in conv.messages):  # type: ignore[attr-defined]
            return False, "an empty turn"
        if p.ends_with_assistant and (not turns or turns[-1].role != "assistant"):  # type: ignore[attr-defined]
            return False, "does not end with an assistant turn"
        if p.alternate:  # type: ignore[attr-defined]
            chat = [m.role for m in turns if m.role in ("user", "assistant")]
            if any(a == b for a, b in zip(chat, chat[1:])) or (chat and chat[0] != "user"):
                return False, "roles do not alternate"
        return True
