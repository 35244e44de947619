"""Dedup: exact (normalized turns, hashed) and near (MinHash + LSH, see ``minhash.py``). Both are
dataset-wide: ``fit`` sees every conversation in input order, and the first of each group is kept."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

from pydantic import Field

from ...model import Conversation, digest
from ..base import DatasetFilter, Params

_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]")


def normalize(text: str) -> str:
    """What exact dedup compares: NFKC, lower case, no punctuation, single spaces."""
    return _SPACE.sub(" ", _PUNCT.sub("", unicodedata.normalize("NFKC", text).lower())).strip()


def conversation_text(conv: Conversation) -> str:
    return "\n".join(m.content for m in conv.messages)


class ExactDedupParams(Params):
    per_turn: bool = False


class ExactDedup(DatasetFilter[ExactDedupParams]):
    """Drops a conversation seen before (same normalized turns), and with ``per_turn`` one whose
    every assistant turn was seen before; the first one in input order is kept."""

    name = "exact_dedup"
    summary = "drop repeated conversations (and, per_turn, repeated assistant replies), after normalization"

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
            if self.params.per_turn:
                replies = [hashlib.blake2b(normalize(m.content).encode(), digest_size=16).digest() for m in conv.messages if m.role == "assistant"]
                if replies and all(r in turns for r in replies):
                    self._drop[conv.id or digest(conv)] = "every assistant turn seen before"
                    continue
                turns.update(replies)

    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        reason = self._drop.get(conv.id or digest(conv))
        return True if reason is None else (False, reason)


class NearDedupParams(Params):
    threshold: float = Field(0.8, gt=0, le=1)
    # bounded: the shingling allocates ngram 64-bit constants, and each conversation's signature
    # is 4 bytes a permutation (+ a permutations² probe table): 1,024 is 4 KiB a conversation
    ngram: int = Field(5, ge=1, le=32)
    permutations: int = Field(128, ge=8, le=1024)
    transitive: bool = False


class NearDedup(DatasetFilter[NearDedupParams]):
    """MinHash + LSH over each conversation's text, across the whole input, in input order: a
    conversation is dropped when it near-duplicates (Jaccard ≥ threshold, checked exactly) one
    already kept, so everything dropped has a real near-duplicate in the output. ``transitive``
    drops whole clusters of chained pairs instead (one kept each, as datatrove does)."""

    name = "near_dedup"
    summary = "drop near-duplicate conversations (MinHash + LSH; Jaccard threshold, n-grams, permutations)"

    def fit(self, convs: Iterable[Conversation]) -> None:
        from . import minhash

        ids, texts = [], []
        for conv in convs:
            ids.append(conv.id or digest(conv))
            texts.append(conversation_text(conv))
        p = self.params
        keepers = minhash.near_duplicates(texts, threshold=p.threshold, ngram=p.ngram, permutations=p.permutations,
                                          seed=self.context.seed, transitive=p.transitive)
        self._drop = {ids[i] for i, k in enumerate(keepers) if k >= 0}
        self.stats["clusters"] = len({int(k) for k in keepers if k >= 0})

    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        return (False, "near duplicate") if (conv.id or digest(conv)) in self._drop else True
