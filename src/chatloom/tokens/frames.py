"""The data of a layout (see ``layout.py``): the runs a layout is made of, the frames (sentinel
renders of a conversation's prefixes) it is cut from, and the positions the cutting works with."""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..model import Conversation, Message
from .joined import Joined, Slot

PAD = "\u2002\u2003"  # around each content sentinel: a template that strips content strips these too
SLOT = re.compile("(?P<lead>\u2002\u2003)?\ue000(?P<c>\\d+)c\ue001(?P<trail>\u2002\u2003)?|\ue000(?P<n>\\d+)n\ue001")


def other_arguments(call: Any) -> Any:
    """A tool call with other arguments (of the same type: a JSON string stays a string)."""
    if not isinstance(call, dict):
        return call
    other = dict(call)
    fn = other.get("function")
    target = dict(fn) if isinstance(fn, dict) else other
    args = target.get("arguments")
    target["arguments"] = '{"\ue002": "\ue003"}' if isinstance(args, str) else {"\ue002": "\ue003"}
    if isinstance(fn, dict):
        other["function"] = target
    return other


def content_sentinel(i: int) -> str:
    return f"{PAD}\ue000{i}c\ue001{PAD}"


def lcp(a: str, b: str) -> int:
    """Length of the longest common prefix (by halving: C-speed compares, not a Python loop)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass
class Run:
    """Text pieces with one loss flag; ``ids`` when the run is all template text (tokenized once)."""

    trained: bool
    parts: list[str | Slot]
    ids: list[int] | None = None
    owner: int = -1  # the message it belongs to (-1: before the first)
    special: bool = False
    end: int = 0  # where it ends in the placeholder render (to reuse it for a longer shape)


@dataclass
class Layout:
    runs: list[Run]
    missing_end: list[int] = field(default_factory=list)  # trained turns with no end-of-turn token
    left_out: list[int] = field(default_factory=list)  # messages whose content the template drops
    full: str = ""  # the placeholder render it was cut from
    starts: list[int] = field(default_factory=list)  # where each message starts in it
    own: bool = False  # cut from one conversation's own render (not shared by its shape: never cached by id)
    plain: bool = False  # its text is the template's render for any contents (Layouts.get does not check it)
    regions: list[tuple[int, int, int]] = field(default_factory=list)  # trained spans of ``full`` (``_regions``)
    horizons: list[float] = field(default_factory=list)  # how far into ``full`` each message's turn was looked for
    calls: dict[int, int] = field(default_factory=dict)  # where each trained turn's tool calls end
    stored: bool = False  # read back from chatloom's cache (``stored.py``): its runs only, so no longer shape is built on it
    _text: Any = None

    def text(self, messages: Sequence[Message]) -> str:
        """The text this layout gives ``messages`` (the template's render, when the layout holds)."""
        if self._text is None:
            self._text = Joined([[p for run in self.runs for p in run.parts]])
        return self._text(messages)[0]  # type: ignore[no-any-return]


def shape(conv: Conversation) -> tuple[Any, ...]:
    """What a layout depends on, besides the contents: one layout serves every conversation of a
    shape. ``(messages, tools)``; ``messages[:k]`` is the shape of the first k messages. Tool
    calls and tools by ``repr``, which tells every JSON value apart (JSON text writes NaN as null)."""
    return (
        tuple((m.role, not m.content, m.name is not None, m.train,
               repr(m.tool_calls) if m.tool_calls else None, m.tool_call_id) for m in conv.messages),
        repr(conv.tools) if conv.tools else None,
    )


def marked(*texts: str) -> bool:
    """Whether any of ``texts`` holds the characters a sentinel is marked with (U+E000, U+E001)."""
    return any("\ue000" in text or "\ue001" in text for text in texts)


def holds_sentinels(conv: Conversation) -> bool:
    """Whether the text a shape renders as it is (tool calls, their ids, tools) holds a sentinel's
    characters: a layout would take them for a content's place, so its conversations are checked
    against their renders even with a plain template."""
    fixed = [orjson.dumps(m.tool_calls).decode() for m in conv.messages if m.tool_calls]
    fixed += [m.tool_call_id for m in conv.messages if m.tool_call_id]
    fixed += [orjson.dumps(conv.tools).decode()] if conv.tools else []
    return marked(*fixed)


@dataclass
class Frame:
    """The sentinel render of a prefix, where each of its messages starts, and where each
    assistant's completion begins (after its generation prompt)."""

    full: str
    starts: list[int | None]
    begins: dict[int, int]
    slots: list[re.Match[str]] = field(default_factory=list)
    ok: bool = True  # False: the template refused this prefix (the frame carries the last good one)
    _slot_starts: list[int] | None = None
    _slot_msgs: list[int] | None = None
    _content: dict[int, re.Match[str]] | None = None

    def slot_starts(self) -> list[int]:
        if self._slot_starts is None:
            self._slot_starts = [m.start() for m in self.slots]
        return self._slot_starts

    def slot_msgs(self) -> list[int]:
        """The message of each slot (its content's or its name's)."""
        if self._slot_msgs is None:
            self._slot_msgs = [int(m.group("c") or m.group("n")) for m in self.slots]
        return self._slot_msgs

    def content_slots(self) -> dict[int, re.Match[str]]:
        """Message → the first slot of its content."""
        if self._content is None:
            self._content = {}
            for m in self.slots:
                if m.group("c") is not None:
                    self._content.setdefault(int(m.group("c")), m)
        return self._content


@dataclass
class Carried:
    """The first ``turns`` turns of a shorter shape's ``_regions``: the starts up to the next one, and
    the regions, turns without an end token and horizons they gave."""

    turns: int = 0
    starts: list[int] = field(default_factory=list)
    regions: list[tuple[int, int, int]] = field(default_factory=list)
    missing_end: list[int] = field(default_factory=list)
    horizons: list[float] = field(default_factory=list)


class Later:
    """Positions by message index, for "the first position at or after ``lo`` of a message after
    ``k``": a bisect where the positions grow with the index (most templates), a scan where they
    do not (Mistral v3 moves the system prompt into the last user turn)."""

    def __init__(self, pairs: list[tuple[int, int]]):
        self.index = [j for j, _ in pairs]
        self.pos = [p for _, p in pairs]
        self.monotone = all(a <= b for a, b in zip(self.pos, self.pos[1:]))

    def first(self, k: int, lo: int, inclusive: bool, default: int) -> int:
        """The least position ``>= lo`` (``> lo`` unless ``inclusive``) of a message after ``k``, or ``default`` when smaller."""
        after = bisect.bisect_right(self.index, k)
        if self.monotone:
            at = (bisect.bisect_left if inclusive else bisect.bisect_right)(self.pos, lo, after)
            return min(default, self.pos[at]) if at < len(self.pos) else default
        return min([p for p in self.pos[after:] if (p >= lo if inclusive else p > lo)] + [default])
