"""Seeded train/validation split by conversation.

Each id gets a key ``sha256(seed:id)``; the validation set is the ``k`` smallest keys. The split is
reproducible, independent of storage order, and stable as a dataset grows: a conversation moves
between sets only when the boundary moves past it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

from ..errors import ParamError


def validation_size(n: int, split: float) -> int:
    """``split`` < 1 is a ratio of ``n``; ≥ 1 a count, which must leave at least one conversation
    for training. Both sides keep at least one when n ≥ 2."""
    if not math.isfinite(split) or split < 0:
        raise ParamError("{split} must be a ratio in (0, 1) or a count ≥ 1, not {value}", value=split)
    if split < 1:
        k = round(n * split)
        if split > 0 and n >= 2:
            k = min(max(k, 1), n - 1)
        return k
    if split != int(split):
        raise ParamError("{split} {value}: a count must be a whole number", value=split)
    if split >= n:
        raise ParamError("{split} {value:g} leaves no conversation for training: there are {n:,}", value=split, n=n)
    return int(split)


def validation_ids(ids: Iterable[str], split: float, seed: int) -> set[str]:
    ids = list(ids)
    k = validation_size(len(ids), split)
    keyed = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).digest())
    return set(keyed[:k])
