"""``chatloom diff A B``: which conversations B added, removed and changed against A, by id and
state (the rows alone: a million a side compare in seconds), and for a changed one what changed:
its metadata, and its messages turn by turn (inserted, deleted, edited: the edit's words marked).

    result = diff(open_side("a.db"), open_side("b.jsonl"))
    for change in result.changed[:10]:
        turns = message_diff(a.get(change), b.get(change))
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from ..model import Conversation
from ..store.sync import DELETED
from .sides import DatasetSide, Side, merge_join


@dataclass
class DiffResult:
    added: list[str] = field(default_factory=list)  # in B only (or live in B, deleted in A)
    removed: list[str] = field(default_factory=list)  # in A only (or deleted in B)
    changed: list[str] = field(default_factory=list)  # in both, their states differ
    same: int = 0

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def diff(a: Side, b: Side) -> DiffResult:
    """Compare two sides by state; a tombstone counts as absent. Two datasets are compared by one
    join inside SQLite (only the rows that differ come out); anything else by both sides' states
    in id order."""
    out = DiffResult()
    if isinstance(a, DatasetSide) and isinstance(b, DatasetSide):
        rows = a.store.differing(b.store.path)
        total = a.store.count()
    else:
        rows, total = merge_join(a.states(), b.states()), None
    for conv_id, sa, sb in rows:
        live_a = sa is not None and sa != DELETED
        live_b = sb is not None and sb != DELETED
        if live_a and live_b:
            if sa == sb:
                out.same += 1
            else:
                out.changed.append(conv_id)
        elif live_b:
            out.added.append(conv_id)
        elif live_a:
            out.removed.append(conv_id)
    if total is not None:  # the live ones neither added, removed nor changed are the same
        out.same = total - len(out.removed) - len(out.changed)
    return out


# -- one conversation, turn by turn ---------------------------------------------------------

_WORDS = re.compile(r"\s+|\w+|[^\w\s]")
_META = ("title", "language", "tags", "tools", "meta")


def _key(m: Any) -> tuple[Any, ...]:
    return (m.role, m.name, m.content, repr(m.tool_calls), m.tool_call_id)


def word_diff(old: str, new: str) -> list[tuple[str, str]]:
    """(op, text) pieces, op one of ``=``, ``-``, ``+``: the words the edit removed and added."""
    a, b = _WORDS.findall(old), _WORDS.findall(new)
    out: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            out.append(("=", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(("-", "".join(a[i1:i2])))
        if j2 > j1:
            out.append(("+", "".join(b[j1:j2])))
    return out


def message_diff(old: Conversation, new: Conversation) -> dict[str, Any]:
    """What changed between two versions of one conversation: metadata fields (old, new), and
    the turns: ``{"op": "insert"|"delete"|"edit", "at": i (old), "to": j (new), ...}``."""
    meta = {f: (getattr(old, f), getattr(new, f)) for f in _META if getattr(old, f) != getattr(new, f)}
    turns: list[dict[str, Any]] = []
    a, b = old.messages, new.messages
    sm = difflib.SequenceMatcher(None, [_key(m) for m in a], [_key(m) for m in b], autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            continue
        if tag == "replace":
            pairs = min(i2 - i1, j2 - j1)
            for k in range(pairs):  # a replaced run pairs up as edits, the rest inserted or deleted
                ma, mb = a[i1 + k], b[j1 + k]
                turns.append({"op": "edit", "at": i1 + k, "to": j1 + k, "role": [ma.role, mb.role],
                              "words": word_diff(ma.content, mb.content),
                              **({"name": [ma.name, mb.name]} if ma.name != mb.name else {}),
                              **({"tool_calls": [ma.tool_calls, mb.tool_calls]} if ma.tool_calls != mb.tool_calls else {})})  # fmt: skip
            i1, j1 = i1 + pairs, j1 + pairs
        for i in range(i1, i2):
            turns.append({"op": "delete", "at": i, "role": a[i].role, "content": a[i].content})
        for j in range(j1, j2):
            turns.append({"op": "insert", "to": j, "role": b[j].role, "content": b[j].content})
    return {"meta": {k: list(v) for k, v in meta.items()}, "turns": turns}
