"""Where each turn starts and ends in a rendered chat template, found by rendering prefixes.

A *layout* is what a template makes of one shape of conversation (the roles, which messages have
a name or are empty, the tool calls, the ``train`` flags). It is computed once per shape with
sentinel contents, so it costs a few renders per shape, not per conversation:

1. Render the whole conversation, every prefix of it, and every prefix with the generation prompt.
   The longest common prefix of a prefix's render and the whole render is where the next message
   starts; the generation prompt's is where an assistant's completion starts. No marker strings
   are searched for, so this holds for any template (even one that, like phi-3's, adds an eos
   only after the last message).
2. The sentinels show where each content lands, and whether the template strips it (``| trim``).
3. A turn trains from the start of its completion to its end-of-turn token (the first special
   token after its content) inclusive; everything else is context.

The layout is a list of *runs*: pieces of text with one loss flag, cut at special tokens and at
the prompt/completion boundary. A run is tokenized whole, so the prompt's tokens are the ones a
model sees when it is asked to generate, and the mask is exact without any offset mapping.
Special tokens are recognized only in the template's own text: a ``<|im_end|>`` typed in a chat
is ordinary text.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..model import Conversation, Message
from .chat_templates import ChatTemplate, TemplateError, message_dicts
from .tokenizer import Tokenizer

PAD = "\u2002\u2003"  # around each content sentinel: a template that strips content strips these too
_SLOT = re.compile("(?P<lead>\u2002\u2003)?\ue000(?P<c>\\d+)c\ue001(?P<trail>\u2002\u2003)?|\ue000(?P<n>\\d+)n\ue001")


def _content_sentinel(i: int) -> str:
    return f"{PAD}\ue000{i}c\ue001{PAD}"


def _lcp(a: str, b: str) -> int:
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


@dataclass(frozen=True)
class Slot:
    """A message's content (or name) in the rendered text; ``strip`` is how the template strips it."""

    msg: int
    kind: str  # "c" content, "n" name
    strip: str  # "", "l", "r" or "lr"


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


def shape(conv: Conversation) -> tuple[Any, ...]:
    """What a layout depends on, besides the contents: one layout serves every conversation of a
    shape. ``(messages, tools)``; ``messages[:k]`` is the shape of the first k messages."""
    return (
        tuple((m.role, not m.content, m.name is not None, m.train,
               orjson.dumps(m.tool_calls) if m.tool_calls else None, m.tool_call_id) for m in conv.messages),
        orjson.dumps(conv.tools) if conv.tools else None,
    )


def fill(part: str | Slot, messages: Sequence[Message]) -> str:
    if isinstance(part, str):
        return part
    m = messages[part.msg]
    text = m.content if part.kind == "c" else (m.name or "")
    if part.strip == "lr":
        return text.strip()
    if part.strip == "l":
        return text.lstrip()
    if part.strip == "r":
        return text.rstrip()
    return text


@dataclass
class _Frame:
    """The sentinel render of a prefix, where each of its messages starts, and where each
    assistant's completion begins (after its generation prompt)."""

    full: str
    starts: list[int | None]
    begins: dict[int, int]
    slots: list[re.Match[str]] = field(default_factory=list)
    ok: bool = True  # False: the template refused this prefix (the frame carries the last good one)


class Layouts:
    """Layouts of one template with one tokenizer, cached by conversation shape."""

    def __init__(self, template: ChatTemplate, tokenizer: Tokenizer):
        self.template = template
        self.tokenizer = tokenizer
        specials = sorted(tokenizer.special_tokens, key=len, reverse=True)
        self._special = re.compile("|".join(re.escape(s) for s in specials)) if specials else None
        self._longest = max(map(len, specials), default=0)
        self._cache: dict[tuple[Any, ...], Layout] = {}
        self._frames: dict[tuple[Any, ...], _Frame] = {}
        self._frame_chars = 0

    def __len__(self) -> int:
        return len(self._cache)

    def get(self, conv: Conversation) -> Layout:
        """The layout of ``conv``'s shape; raises TemplateError when the template refuses it."""
        key = shape(conv)
        layout = self._cache.get(key)
        if layout is None:
            layout = self._build(conv, key)
            self._verify(layout, conv)
            self._cache[key] = layout
        return layout

    def text(self, layout: Layout, conv: Conversation) -> str:
        return "".join(fill(p, conv.messages) for run in layout.runs for p in run.parts)

    def _special_around(self, text: str, pos: int) -> int | None:
        """The start of the special token that ``pos`` falls strictly inside, if any."""
        if self._special is None:
            return None
        for m in self._special.finditer(text, max(0, pos - self._longest), min(len(text), pos + self._longest)):
            if m.start() < pos < m.end():
                return m.start()
        return None

    # -- frames: prefix renders, memoized by prefix shape ---------------------------------------

    def _sentinels(self, conv: Conversation) -> list[dict[str, Any]]:
        msgs = message_dicts(conv)
        for i, d in enumerate(msgs):
            if d["content"]:
                d["content"] = _content_sentinel(i)
            if "name" in d:
                d["name"] = f"\ue000{i}n\ue001"
        return msgs

    def _render(self, msgs: list[dict[str, Any]], tools: Any, gen: bool = False) -> str | None:
        try:
            return self.template.render(msgs, tools, add_generation_prompt=gen)
        except TemplateError:
            return None

    def _cut(self, rendered: str, frame: _Frame) -> int:
        """Where ``rendered`` and the frame's text part: never inside a sentinel, nor inside a
        special token of either text (phi-3's prefixes end with ``</s>`` where the whole goes on
        with ``<|user|>``: their common ``<`` is no boundary)."""
        full = frame.full
        pos = _lcp(rendered, full)
        starts = [m.start() for m in frame.slots]
        moved = True
        while moved:
            moved = False
            i = bisect.bisect_left(starts, pos) - 1
            if i >= 0 and pos < frame.slots[i].end():
                pos, moved = starts[i], True
            for text in (rendered, full):
                inside = self._special_around(text, pos)
                if inside is not None:
                    pos, moved = inside, True
        return pos

    def _frame(self, conv: Conversation, key: tuple[Any, ...]) -> _Frame:
        """The whole conversation's frame, built on the longest prefix already framed. Each step
        renders one more prefix (and its generation prompt); earlier boundaries carry over where
        they lie in the part the two renders share, so a shape costs renders of its new messages
        only, not of all its prefixes."""
        msgs = self._sentinels(conv)
        roles, tools_key = key
        tools = conv.tools or None
        n = len(msgs)
        k = n
        while k > 0 and (roles[:k], tools_key) not in self._frames:
            k -= 1
        if k:
            frame = self._frames[(roles[:k], tools_key)]
        else:
            empty = self._render([], tools)
            frame = _Frame(empty or "", [], {}, ok=empty is not None)
        for j in range(k + 1, n + 1):
            frame = self._extend(frame, conv, msgs[:j], tools, last=j == n)
            self._remember((roles[:j], tools_key), frame)
        return frame

    def _extend(self, prev: _Frame, conv: Conversation, msgs: list[dict[str, Any]], tools: Any, last: bool) -> _Frame:
        j = len(msgs)
        full = self.template.render(msgs, tools) if last else self._render(msgs, tools)
        if full is None:  # the template refuses this prefix (not the whole): carry the last good frame
            return _Frame(prev.full, [*prev.starts, None], prev.begins, prev.slots, ok=False)
        frame = _Frame(full, [], {}, list(_SLOT.finditer(full)))
        shared = _lcp(prev.full, full) if prev.ok else -1
        frame.starts = [s if s is not None and s < shared else None for s in prev.starts]
        frame.starts.append(self._cut(prev.full, frame) if prev.ok else None)
        frame.begins = {k: b for k, b in prev.begins.items() if b < shared}
        if conv.messages[j - 1].role == "assistant":
            prompted = self._render(msgs[:-1], tools, gen=True)
            if prompted is not None:
                frame.begins[j - 1] = self._cut(prompted, frame)
        for k, s in enumerate(frame.starts):  # not carried over: render that prefix again (rare)
            if s is None:
                rendered = self._render(msgs[:k], tools)
                frame.starts[k] = self._cut(rendered, frame) if rendered is not None else None
        return frame

    def _remember(self, key: tuple[Any, ...], frame: _Frame) -> None:
        self._frame_chars += len(frame.full)
        if self._frame_chars > 64 << 20:  # bounded: forget the frames (the layouts stay)
            self._frames.clear()
            self._frame_chars = len(frame.full)
        self._frames[key] = frame

    # -- the layout of a frame ------------------------------------------------------------------

    def _build(self, conv: Conversation, key: tuple[Any, ...]) -> Layout:
        frame = self._frame(conv, key)
        full, slots = frame.full, frame.slots
        n = len(conv.messages)
        content_at: dict[int, re.Match[str]] = {}
        for m in slots:
            if m.group("c") is not None:
                content_at.setdefault(int(m.group("c")), m)
        starts: list[int] = []
        for k in range(n):  # a refused prefix: its content is the best guess of where it starts
            s = frame.starts[k]
            if s is None:
                s = content_at[k].start() if k in content_at else (starts[-1] if starts else 0)
            starts.append(max(s, starts[-1]) if starts else s)
        starts.append(len(full))

        # which spans train: completion start … end-of-turn token, inclusive
        regions: list[tuple[int, int, int]] = []
        missing_end: list[int] = []
        for k, message in enumerate(conv.messages):
            if not message.trains:
                continue
            slot = content_at.get(k)
            if message.role == "assistant":
                begin = max(starts[k], frame.begins.get(k, starts[k]))
                if slot is not None:
                    begin = min(begin, slot.start())
            else:
                begin = slot.start() if slot is not None else starts[k]
            after = slot.end() if slot is not None else begin
            special = self._special.search(full, after, starts[k + 1]) if self._special else None
            if special is not None:
                end = special.end()
            else:  # no end token: the turn trains to the end of its text (``fix`` adds an eos there)
                end = after if slot is not None else starts[k + 1]
                missing_end.append(k)
            if end > begin:
                regions.append((begin, end, k))

        left_out = [k for k, m in enumerate(conv.messages) if m.content and k not in content_at]
        reused = self._reusable(key, n, full, starts, regions, slots)
        return Layout(self._runs(full, slots, starts, regions, reused), missing_end, left_out, full, starts)

    def _reusable(self, key: tuple[Any, ...], n: int, full: str, starts: list[int], regions: list[tuple[int, int, int]],
                  slots: list[re.Match[str]]) -> list[Run]:
        """The runs of the longest shorter shape already laid out that this one shares: everything
        before that shape's last message (and before anything of a later message), bar the last
        run, which the walk redoes. A long conversation's shapes (one per length) cost their new
        messages, not their whole length each."""
        roles, tools_key = key
        m = n - 1
        while m > 1 and (roles[:m], tools_key) not in self._cache:
            m -= 1
        prefix = self._cache.get((roles[:m], tools_key)) if m > 1 else None
        if prefix is None or len(prefix.starts) < m or prefix.starts[m - 1] != starts[m - 1]:
            return []
        limit = starts[m - 1]
        limit = min([limit, *(begin for begin, _, k in regions if k >= m - 1),
                     *(s.start() for s in slots if int(s.group("c") or s.group("n")) >= m - 1)])
        if prefix.full[:limit] != full[:limit]:
            return []
        reused = list(itertools.takewhile(lambda r: r.end <= limit, prefix.runs))
        return reused[:-1]

    def _runs(self, full: str, slots: list[re.Match[str]], starts: list[int], regions: list[tuple[int, int, int]],
              reused: list[Run]) -> list[Run]:
        done = reused[-1].end if reused else 0
        cuts = {done, len(full), *starts}
        for begin, end, _ in regions:
            cuts.update((begin, end))
        for m in slots:
            cuts.update((m.start(), m.end()))
        cuts_sorted = sorted(c for c in cuts if done <= c <= len(full))
        slot_at = {m.start(): m for m in slots}
        runs: list[Run] = list(reused)
        shared = len(runs)  # runs of another layout: copied before they change

        def add(trained: bool, part: str | Slot, special: bool, owner: int, end: int) -> None:
            nonlocal shared
            last = runs[-1] if runs else None
            if special:  # a special token stands alone
                runs.append(Run(trained, [part], [self.tokenizer.special_tokens[part]], owner, True, end))  # type: ignore[index]
            elif last is None or last.special or last.trained != trained:
                runs.append(Run(trained, [part], None, owner, False, end))
            else:
                if len(runs) <= shared:
                    last = runs[-1] = Run(last.trained, list(last.parts), None, last.owner, False, last.end)
                    shared = len(runs) - 1
                last.parts.append(part)
                last.ids = None
                last.end = end

        region = 0  # regions are in order and disjoint; the cuts walk them once
        for a, b in zip(cuts_sorted, cuts_sorted[1:]):
            while region < len(regions) and regions[region][1] <= a:
                region += 1
            trained = region < len(regions) and regions[region][0] <= a
            owner = bisect.bisect_right(starts, a) - 1
            m = slot_at.get(a)
            if m is not None and m.end() == b:
                if m.group("n") is not None:
                    slot = Slot(int(m.group("n")), "n", "")
                else:
                    strip = ("" if m.group("lead") else "l") + ("" if m.group("trail") else "r")
                    slot = Slot(int(m.group("c")), "c", strip)
                add(trained, slot, False, owner, b)
                continue
            literal = full[a:b]
            pos = 0
            for sm in self._special.finditer(literal) if self._special else ():
                if sm.start() > pos:
                    add(trained, literal[pos:sm.start()], False, owner, a + sm.start())
                add(trained, sm.group(), True, owner, a + sm.end())
                pos = sm.end()
            if pos < len(literal):
                add(trained, literal[pos:], False, owner, b)
        # template-only runs are tokenized once, here
        for run in runs:
            if run.ids is None and all(isinstance(p, str) for p in run.parts):
                run.ids = self.tokenizer.encode("".join(run.parts))  # type: ignore[arg-type]
        return runs

    def _verify(self, layout: Layout, conv: Conversation) -> None:
        """The first conversation of each shape is rendered for real and compared with its layout."""
        real = self.template.render(message_dicts(conv), conv.tools or None)
        if self.text(layout, conv) != real:
            raise TemplateError(
                f"template {self.template.name} renders a message differently depending on its text "
                f"(conversation {conv.id}); chatloom cannot find its turns")
