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

A long conversation has a shape per length (chitchat's 564-message chat: 255 shapes, 37,000
messages in all), so a shape is built on the longest shorter one already laid out: its prefix
renders (frames), its first turns and its runs are taken as they are where they provably hold,
each turn up to its *horizon* (how far into the text, and into the later messages' positions,
finding its end looked), when that lies in the text both renders share. The data types are in
``frames.py``.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import re
from collections.abc import Sequence
from typing import Any

from ..errors import UsageError
from ..model import Conversation, Message
from . import stored
from .chat_templates import ChatTemplate, TemplateError, message_dicts
from .frames import PAD, SLOT, Carried, Frame, Later, Layout, Run, content_sentinel, holds_sentinels, lcp, other_arguments, shape
from .joined import Slot
from .tokenizer import Tokenizer

__all__ = ["Layout", "Layouts", "Run", "shape"]


class Layouts:
    """Layouts of one template with one tokenizer, cached by conversation shape."""

    def __init__(self, template: ChatTemplate, tokenizer: Tokenizer, keep: bool = False):
        if template.holds_sentinels:
            raise UsageError(f"template {template.name} holds the characters U+E000 or U+E001 (in its text or its special tokens), "
                             "which chatloom marks a chat's contents with to find them in its renders: it cannot be laid out")
        self.template = template
        self.tokenizer = tokenizer
        specials = sorted(tokenizer.special_tokens, key=len, reverse=True)
        self._special = re.compile("|".join(re.escape(s) for s in specials)) if specials else None
        # no cut falls inside an added token, special or not (Qwen's <tool_call> beside <think>)
        whole = sorted({*specials, *tokenizer.added_tokens}, key=len, reverse=True)
        self._whole = re.compile("|".join(re.escape(s) for s in whole)) if whole else None
        self._longest = max(map(len, whole), default=0)
        self._cache: dict[tuple[Any, ...], Layout] = {}
        self._frames: dict[tuple[Any, ...], Frame] = {}
        self._frame_chars = 0
        self._heads: dict[str, tuple[str, str] | None] = {}  # a local template's head renders, by first message (``_head``)
        self._store = stored.key(template, tokenizer) if keep else None  # the key of chatloom's store of these layouts (``stored.py``)
        self._unread = self._store is not None  # (read at the first shape not laid out here)
        self._built: list[tuple[Any, ...]] = []  # shapes built here, not yet handed out (``built``)

    def __len__(self) -> int:
        return len(self._cache)

    def get(self, conv: Conversation) -> Layout:
        """The layout of ``conv``; raises TemplateError when the template refuses it. Its shape's
        serves when the template renders the contents as they are (one render and a compare; a
        ``plain`` template does, as its syntax shows); where it changes them (``<think>`` stripped,
        ``lstrip``, ``tojson``) the layout is cut from this conversation's own renders instead."""
        key = shape(conv)
        layout = self._cache.get(key)
        if layout is None and self._unread:
            self._unread = False
            self._cache.update(stored.load(self._store, self.tokenizer))  # type: ignore[arg-type]
            layout = self._cache.get(key)
        if layout is None:
            layout = self._cache[key] = self._build(conv, key)
            layout.plain = self.template.plain and not holds_sentinels(conv)
            if self._store is not None:
                self._built.append(key)
        if layout.plain:  # its render is the layout's text, whatever the contents
            return layout
        real = self.template.render(message_dicts(conv), conv.tools or None)
        if layout.text(conv.messages) == real:
            return layout
        return self._own(conv, real, layout)

    def built(self) -> tuple[str, Any] | None:
        """The key and the pack (``stored.save``) of the layouts built since the last call; None: none, or none kept."""
        if not self._built or self._store is None:
            return None
        keys, self._built = self._built, []
        return self._store, stored.pack((k, self._cache[k]) for k in keys)

    def _special_around(self, text: str, pos: int) -> int | None:
        """The start of the added token that ``pos`` falls strictly inside, if any."""
        if self._whole is None:
            return None
        for m in self._whole.finditer(text, max(0, pos - self._longest), min(len(text), pos + self._longest)):
            if m.start() < pos < m.end():
                return m.start()
        return None

    @functools.cached_property
    def ends(self) -> frozenset[str]:
        """The template's end-of-turn tokens: the tokenizer's eos, and the special token that
        follows an assistant's text in the middle of a chat and at its end (``<|end|>`` and
        ``<|return|>`` in gpt-oss)."""
        specials = self.tokenizer.special_tokens
        ends = {t for t in (self.template.end_token, self.tokenizer.template_tokens.get("eos_token")) if t in specials}
        probe = [{"role": role, "content": content_sentinel(i)} for i, role in enumerate(("user", "assistant", "user", "assistant"))]
        full = self._render(probe, None)
        if full is not None and self._special is not None:
            for m in SLOT.finditer(full):
                if m.group("c") in ("1", "3"):
                    after = self._special.search(full, m.end())
                    if after is not None and not full[m.end():after.start()].strip():
                        ends.add(after.group())
        return frozenset(ends)

    def _turn_end(self, full: str, lo: int, hi: int | None, further: int, call: bool = False) -> int | None:
        """Where a turn's end-of-turn token ends, looking after the turn's text (``lo``) and
        before the next message (``hi``; None where a prefix render cannot tell, the turn rendering
        differently when it is the last: then before the next message's text, ``further``): the
        first of the template's end tokens; else the end token where the turn's render as the last
        parts from the whole (gpt-oss: ``<|return|>`` there, ``<|end|>`` here); else the last
        special token; else None. After a tool call (``call``: ``lo`` is where its arguments
        end), the first special token (gpt-oss's ``<|call|>``). A tool call's own
        specials (Mistral's ``[TOOL_CALLS]``, gpt-oss's ``<|channel|>``) come before its text
        ends, so they are never its end."""
        if self._special is None:
            return None
        if call:  # after a tool call's arguments, the first special token ends it (<|call|>, </s>, <|im_end|>)
            after = self._special.search(full, lo, max(hi or 0, further))
            return after.end() if after is not None else None
        if hi is None:
            first = next((m for m in self._special.finditer(full, lo, further) if m.group() in self.ends), None)
            return first.end() if first is not None else None
        found = list(self._special.finditer(full, lo, hi))
        first = next((m for m in found if m.group() in self.ends), None)
        if first is not None:
            return first.end()
        at = self._special.match(full, hi + len(full[hi:further]) - len(full[hi:further].lstrip()))
        if at is not None and at.group() in self.ends:
            return at.end()
        return found[-1].end() if found else None

    def _regions(self, messages: Sequence[Message], full: str, starts: list[int], begins: dict[int, int],
                 content: dict[int, tuple[int, int]], calls: dict[int, int],
                 carried: Carried | None = None) -> tuple[list[tuple[int, int, int]], list[int], list[float]]:
        """Which spans of ``full`` train, as (begin, end, message): each trained turn from the
        start of its completion (after the generation prompt) to its end-of-turn token, inclusive;
        and the trained turns with no end token. ``content`` is where each message's text is,
        ``calls`` where each tool-calling turn's calls end. ``starts`` (one more than the
        messages) are moved where a turn renders differently when it is the last (Qwen3 keeps a
        ``<think>`` block only there, gpt-oss ends it with ``<|return|>``): a prefix render is
        then no guide to where the next message starts, the turn's own text and end token are.

        Also each turn's *horizon*: past it, ``full`` and the positions of later messages played
        no part in that turn (``carried``: the first turns of a shorter shape, taken as they are).
        """
        c = carried or Carried()
        regions, missing_end, horizons = list(c.regions), list(c.missing_end), list(c.horizons)
        n = len(messages)
        if carried is not None:
            starts[:c.turns + 1] = c.starts
        later_content = Later(sorted((j, span[0]) for j, span in content.items()))
        later_begins = Later(sorted(begins.items()))
        for k in range(c.turns, n):
            message = messages[k]
            starts[k + 1] = max(starts[k + 1], starts[k])
            horizon = max(starts[k + 1], starts[k + 2]) if k + 2 < n else math.inf  # (starts[n]: the end, which grows)
            span = content.get(k)
            floor = starts[k]
            if span is not None and span[0] >= starts[k] and (k + 2 > n or span[1] <= starts[k + 2]):
                floor = span[1]  # (not where the template moved the text: Mistral's system prompt in the last user turn)
            if message.trains:
                if message.role == "assistant":
                    begin = max(starts[k], begins.get(k, starts[k]))
                    if span is not None:
                        begin = min(begin, span[0])
                else:
                    begin = span[0] if span is not None else starts[k]
                lo = max(span[1] if span is not None else begin, calls.get(k, begin))
                further = later_begins.first(k, lo, False, later_content.first(k, lo, True, len(full)))
                hi = starts[k + 1] if starts[k + 1] > lo else None
                horizon = max(horizon, further)
                end = self._turn_end(full, lo, hi, further, call=calls.get(k, -1) >= lo)
                if end is None:  # no end token: the turn trains to the end of its text (``fix`` adds an eos there)
                    end = lo if span is not None or k in calls else (further if hi is None else hi)
                    missing_end.append(k)
                if end > begin:
                    regions.append((begin, end, k))
                floor = max(floor, end)
            starts[k + 1] = max(starts[k + 1], floor)
            horizons.append(horizon + self._longest)  # (a special token is matched at a position up to there)
        return regions, missing_end, horizons

    def _calls_end(self, msgs: list[dict[str, Any]], tools: Any, full: str, k: int) -> int | None:
        """Where message k's tool calls end in ``full``: rendered again with other arguments,
        the two texts differ up to there (the arguments are the last thing of a call a template
        writes, bar an id or a closing bracket)."""
        other = [dict(d) for d in msgs]
        other[k]["tool_calls"] = [other_arguments(c) for c in msgs[k]["tool_calls"]]
        rendered = self._render(other, tools)
        if rendered is None or rendered == full:
            return None
        return len(full) - lcp(full[::-1], rendered[::-1])

    # -- frames: prefix renders, memoized by prefix shape ---------------------------------------

    def _sentinels(self, conv: Conversation) -> list[dict[str, Any]]:
        msgs = message_dicts(conv)
        for i, d in enumerate(msgs):
            if d["content"]:
                d["content"] = content_sentinel(i)
            if "name" in d:
                d["name"] = f"\ue000{i}n\ue001"
        return msgs

    def _render(self, msgs: list[dict[str, Any]], tools: Any, gen: bool = False) -> str | None:
        try:
            return self.template.render(msgs, tools, add_generation_prompt=gen)
        except TemplateError:
            return None

    def _cut(self, rendered: str, frame: Frame) -> int:
        """Where ``rendered`` and the frame's text part: never inside a sentinel, nor inside a
        special token of either text (phi-3's prefixes end with ``</s>`` where the whole goes on
        with ``<|user|>``: their common ``<`` is no boundary)."""
        full = frame.full
        pos = lcp(rendered, full)
        starts = frame.slot_starts()
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

    def _frame(self, conv: Conversation, key: tuple[Any, ...]) -> Frame:
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
            if k == n and not frame.ok:  # refused as a prefix of a longer one: as a whole, the template's own error
                self.template.render(msgs, tools)
        else:
            empty = self._render([], tools)
            frame = Frame(empty or "", [], {}, ok=empty is not None)
        for j in range(k + 1, n + 1):
            frame = self._extend(frame, conv, msgs[:j], tools, last=j == n)
            self._remember((roles[:j], tools_key), frame)
        return frame

    def _extend(self, prev: Frame, conv: Conversation, msgs: list[dict[str, Any]], tools: Any, last: bool) -> Frame:
        j = len(msgs)
        if prev.ok and (self.template.verbatim or (j >= 2 and self.template.local)):
            frame = self._extend_local(prev, conv, msgs, tools)
            if frame is not None:
                return frame
        full = self.template.render(msgs, tools) if last else self._render(msgs, tools)
        if full is None:  # the template refuses this prefix (not the whole): carry the last good frame
            return Frame(prev.full, [*prev.starts, None], prev.begins, prev.slots, ok=False)
        shared = lcp(prev.full, full) if prev.ok else -1
        frame = self._framed(prev, full, shared)
        # a cut at or before the point where the two renders part holds in both
        frame.starts = [s if s is not None and s <= shared else None for s in prev.starts]
        frame.starts.append(self._place(prev.full, frame, j - 1) if prev.ok else None)
        frame.begins = {k: b for k, b in prev.begins.items() if b <= shared}
        for k in range(j):  # not carried over (or new): render that prefix again
            if conv.messages[k].role == "assistant" and k not in frame.begins:
                prompted = self._render(msgs[:k], tools, gen=True)
                if prompted is not None:
                    frame.begins[k] = self._place(prompted, frame, k)
        for k, s in enumerate(frame.starts):
            if s is None:
                rendered = self._render(msgs[:k], tools)
                frame.starts[k] = self._place(rendered, frame, k) if rendered is not None else None
        return frame

    @staticmethod
    def _framed(prev: Frame, full: str, shared: int) -> Frame:
        """A frame of ``full`` with its slots: those of ``prev`` that end (with the two characters a
        slot's end may still take) in the text the two share, then a search of the rest (a long
        chat's prefixes: its slots are not matched again at each step)."""
        keep = bisect.bisect_right(prev.slot_starts(), shared) if shared > 0 else 0
        while keep and prev.slots[keep - 1].end() + len(PAD) > shared:  # slots are in order and disjoint
            keep -= 1
        bound = prev.slots[keep - 1].end() if keep else 0
        new = list(SLOT.finditer(full, bound))
        frame = Frame(full, [], {}, prev.slots[:keep] + new)
        frame._slot_starts = prev.slot_starts()[:keep] + [m.start() for m in new]
        frame._slot_msgs = prev.slot_msgs()[:keep] + [int(m.group("c") or m.group("n")) for m in new]
        frame._content = {k: m for k, m in prev.content_slots().items() if m.end() <= bound}  # (a first slot kept is first here too)
        for m in new:
            if m.group("c") is not None:
                frame._content.setdefault(int(m.group("c")), m)
        return frame

    def _extend_local(self, prev: Frame, conv: Conversation, msgs: list[dict[str, Any]], tools: Any) -> Frame | None:
        """``_extend`` for a template that renders each message alone: the prefix render grows
        by the new message's render (and its generation prompt is the prefix's plus the
        template's own), so a step renders one or two messages, not the whole prefix. A
        ``verbatim`` built-in renders the message by itself; a ``local`` template (its head and
        the first message's body may differ) gives what ``[first, new]`` adds to ``[first]``.
        None where that does not render (``_extend`` then renders the prefix, and says why it
        fails). Every cut is placed as ``_extend`` places it; property tests hold the two to the
        same layouts."""
        j = len(msgs)
        if self.template.verbatim:
            piece, prompt = self.template.render(msgs[-1:], tools), self.template.render([], tools, add_generation_prompt=True)
        else:
            found = self._head(msgs[0], tools)
            pair = self._render([msgs[0], msgs[-1]], tools) if found is not None else None
            if found is None or pair is None or not pair.startswith(found[0]):
                return None
            piece, prompt = pair[len(found[0]):], found[1]
        full = prev.full + piece
        frame = self._framed(prev, full, len(prev.full))
        frame.starts, frame.begins = list(prev.starts), dict(prev.begins)
        frame.starts.append(self._place(prev.full, frame, j - 1))
        if conv.messages[j - 1].role == "assistant":
            frame.begins[j - 1] = self._place(prev.full + prompt, frame, j - 1)
        return frame

    def _head(self, first: dict[str, Any], tools: Any) -> tuple[str, str] | None:
        """A ``local`` template's render of ``[first]``, and what the generation prompt adds to it:
        the same at every step of a chat's prefixes, so rendered once (None where either does not
        render, or the prompt changes the head)."""
        key = repr((first, tools))
        if key not in self._heads:
            head, prompted = self._render([first], tools), self._render([first], tools, gen=True)
            ok = head is not None and prompted is not None and prompted.startswith(head)
            self._heads[key] = (head, prompted[len(head):]) if ok else None  # type: ignore[index,arg-type]
        return self._heads[key]

    def _place(self, rendered: str, frame: Frame, k: int) -> int:
        """Where the render of the first ``k`` messages (with or without the generation prompt)
        ends in the frame. Where the two part before the end of message k-1's text (Mistral v3
        puts the system prompt and tools in the last user message, so a shorter prefix's render
        is no prefix of the whole), the text the prefix render puts after message k-1's content
        (``[/INST]``, a generation prompt) is found right after that content in the frame."""
        pos = self._cut(rendered, frame)
        if k == 0:
            return pos
        mark = f"\ue000{k - 1}c\ue001"
        ours = frame.content_slots().get(k - 1)
        if ours is None or pos >= ours.end():
            return pos
        at = rendered.rfind(mark)
        if at < 0:
            return pos
        theirs = next((m for m in SLOT.finditer(rendered, max(0, at - len(PAD))) if m.group("c") == str(k - 1)), None)
        if theirs is None:
            return pos
        tail = rendered[theirs.end():]
        return ours.end() + len(tail) if frame.full.startswith(tail, ours.end()) else pos

    def _remember(self, key: tuple[Any, ...], frame: Frame) -> None:
        self._frame_chars += len(frame.full)
        if self._frame_chars > 64 << 20:  # bounded: forget the frames (the layouts stay)
            self._frames.clear()
            self._heads.clear()
            self._frame_chars = len(frame.full)
        self._frames[key] = frame

    # -- the layout of a frame ------------------------------------------------------------------

    def _build(self, conv: Conversation, key: tuple[Any, ...]) -> Layout:
        frame = self._frame(conv, key)
        full, slots = frame.full, frame.slots
        n = len(conv.messages)
        content_at = frame.content_slots()
        starts: list[int] = []
        for k in range(n):  # a refused prefix: its content is the best guess of where it starts
            s = frame.starts[k]
            if s is None:
                later = next((t for t in frame.starts[k + 1:] if t is not None), len(full))
                s = content_at[k].start() if k in content_at and content_at[k].start() <= later else (starts[-1] if starts else 0)
            starts.append(max(s, starts[-1]) if starts else s)
        starts.append(len(full))

        spans = {k: (m.start(), m.end()) for k, m in content_at.items()}
        calls: dict[int, int] = {}
        if any(m.tool_calls for m in conv.messages):
            sentinels = self._sentinels(conv)
            calls = {k: e for k, m in enumerate(conv.messages) if m.trains and m.tool_calls
                     and (e := self._calls_end(sentinels, conv.tools or None, full, k)) is not None}
        prefix, shorter = self._prefix(key, n)
        carried = self._carried(prefix, shorter, key, frame, calls) if prefix is not None else None
        regions, missing_end, horizons = self._regions(conv.messages, full, starts, frame.begins, spans, calls, carried)
        region_ends = [e for _, e, _ in regions]  # in order and disjoint: the first ending after a slot's start is the one it may overlap
        # right by construction: no context text inside a completion (wherever the template puts it); a
        # carried turn's slots were checked in the shorter shape: those ending before any new region are skipped
        bound = min((b for b, _, _ in regions[len(carried.regions):]), default=len(full)) if carried else 0
        first = max(0, bisect.bisect_right(frame.slot_starts(), bound) - 1)
        for m in itertools.islice(slots, first, None):
            if m.group("c") is None:
                continue
            k = int(m.group("c"))
            at = bisect.bisect_right(region_ends, m.start())
            inside = regions[at][2] if at < len(regions) and regions[at][0] < m.end() else None
            if inside is not None and inside != k and not conv.messages[k].trains:
                raise TemplateError(f"template {self.template.name} puts the text of message {k} ({conv.messages[k].role}) "
                                    f"inside the completion of message {inside}: chatloom cannot mask it")

        left_out = [k for k, m in enumerate(conv.messages) if m.content and k not in content_at]
        reused = self._reusable(prefix, shorter, full, starts, regions, frame) if prefix is not None else []
        runs = self._runs(full, slots, starts, regions, reused, frame=frame)
        return Layout(runs, missing_end, left_out, full, starts, regions=regions, horizons=horizons, calls=calls)

    def _prefix(self, key: tuple[Any, ...], n: int) -> tuple[Layout | None, int]:
        """The layout of the longest shorter shape (of two messages or more) already laid out, and its length."""
        roles, tools_key = key
        m = n - 1
        while m > 1 and ((found := self._cache.get((roles[:m], tools_key))) is None or found.stored):
            m -= 1
        return (self._cache[(roles[:m], tools_key)], m) if m > 1 else (None, 0)

    def _carried(self, prefix: Layout, m: int, key: tuple[Any, ...], frame: Frame, calls: dict[int, int]) -> Carried | None:
        """The first turns of the shorter shape's layout, as they are: those whose horizon lies in the
        text the two renders share, when the two frames agree on everything those turns read (where
        the first m messages start, where their completions and contents begin, where their tool
        calls end) and no later message of this one starts inside that text. A long conversation's
        shapes (one per length) then cost their new turns, not their whole length each."""
        roles, tools_key = key
        theirs = self._frames.get((roles[:m], tools_key))
        # (a refused prefix's start is guessed from the next known one: known here, the last is)
        if theirs is None or len(theirs.starts) != m or theirs.starts[-1] is None or frame.starts[:m] != theirs.starts:
            return None
        if {k: b for k, b in frame.begins.items() if k < m} != theirs.begins:
            return None
        content, their_content = frame.content_slots(), theirs.content_slots()
        limit = min([lcp(frame.full, prefix.full), *(content[j].start() for j in range(m, len(frame.starts)) if j in content),
                     *(b for j, b in frame.begins.items() if j >= m)])  # fmt: skip
        turns = 0
        while turns < len(prefix.horizons) and prefix.horizons[turns] < limit:
            turns += 1
        for k in range(m):  # a carried turn's own text is where it was; a later one's, where an earlier turn looked
            mine, their = (content[k].span() if k in content else None), (their_content[k].span() if k in their_content else None)
            if mine != their:
                turns = min(turns, k)
                at, was = mine[0] if mine else math.inf, their[0] if their else math.inf
                if at != was and min(at, was) < limit:
                    return None
        if not turns or {k: e for k, e in calls.items() if k < turns} != {k: e for k, e in prefix.calls.items() if k < turns}:
            return None
        return Carried(turns, prefix.starts[:turns + 1], prefix.regions[:bisect.bisect_left(prefix.regions, turns, key=lambda r: r[2])],
                        prefix.missing_end[:bisect.bisect_left(prefix.missing_end, turns)], prefix.horizons[:turns])  # fmt: skip

    def _reusable(self, prefix: Layout, m: int, full: str, starts: list[int], regions: list[tuple[int, int, int]],
                  frame: Frame) -> list[Run]:
        """The runs of the longest shorter shape already laid out that this one shares: everything
        before that shape's last message (and before anything of a later message), bar the last
        run, which the walk redoes."""
        if len(prefix.starts) < m or prefix.starts[m - 1] != starts[m - 1]:
            return []
        limit = min([starts[m - 1], *(begin for begin, _, _ in regions[bisect.bisect_left(regions, m - 1, key=lambda r: r[2]):]),
                     *(at for at, j in zip(frame.slot_starts(), frame.slot_msgs()) if j >= m - 1)])  # fmt: skip
        if prefix.full[:limit] != full[:limit]:
            return []
        return prefix.runs[:max(0, bisect.bisect_right(prefix.runs, limit, key=lambda r: r.end) - 1)]

    def _runs(self, full: str, slots: list[re.Match[str]], starts: list[int], regions: list[tuple[int, int, int]],
              reused: list[Run], tokenize: bool = True, frame: Frame | None = None) -> list[Run]:
        """The runs of ``full`` from where the ``reused`` ones end (``frame``: ``slots``' own, for
        where they start). The cuts are the starts, the regions' and the slots' ends, from there on:
        starts grow, and regions and slots are in order and disjoint."""
        done = reused[-1].end if reused else 0
        slot_starts = frame.slot_starts() if frame is not None else [m.start() for m in slots]
        regions_from = bisect.bisect_left(regions, done, key=lambda r: r[1])
        slots_from = max(0, bisect.bisect_left(slot_starts, done) - 1)
        cuts = {done, len(full), *starts[bisect.bisect_left(starts, done):]}
        for begin, end, _ in itertools.islice(regions, regions_from, None):
            cuts.update((begin, end))
        for m in itertools.islice(slots, slots_from, None):
            cuts.update((m.start(), m.end()))
        cuts_sorted = sorted(c for c in cuts if done <= c <= len(full))
        slot_at = {m.start(): m for m in itertools.islice(slots, slots_from, None)}
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

        region = regions_from  # regions are in order and disjoint; the cuts walk them once
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
        # template-only runs are tokenized once, here (the reused ones were, bar the last, which may have grown)
        for run in itertools.islice(runs, max(0, len(reused) - 1), None) if tokenize else ():
            if run.ids is None and all(isinstance(p, str) for p in run.parts):
                run.ids = self.tokenizer.encode("".join(run.parts))  # type: ignore[arg-type]
        return runs

    def _own(self, conv: Conversation, full: str, shaped: Layout) -> Layout:
        """The layout of one conversation whose contents the template changes, cut from its own
        renders: a render per prefix (where each message starts) and per assistant prefix with the
        generation prompt (where its completion starts). Special tokens are those of the render;
        a special token typed in a message cannot be told from the template's here, so it is refused."""
        if self._special is not None:
            for k, m in enumerate(conv.messages):
                found = self._special.search(m.content) if m.content else None
                if found is not None:
                    raise TemplateError(f"template {self.template.name} changes the text of messages, and message {k} holds "
                                        f"the special token {found.group()!r} as text: chatloom cannot tell it from the template's")
        msgs = message_dicts(conv)
        tools = conv.tools or None
        n = len(msgs)
        starts = [0]
        for k in range(1, n):
            rendered = self._render(msgs[:k], tools)
            starts.append(self._cut_text(rendered, full) if rendered is not None else starts[-1])
        starts.append(len(full))
        begins: dict[int, int] = {}
        for k, m in enumerate(conv.messages):
            if m.role == "assistant" and m.trains:
                prompted = self._render(msgs[:k], tools, gen=True)
                if prompted is not None:
                    begins[k] = self._cut_text(prompted, full)
        calls = {k: e for k, m in enumerate(conv.messages) if m.trains and m.tool_calls
                 and (e := self._calls_end(msgs, tools, full, k)) is not None}
        regions, missing_end, _ = self._regions(conv.messages, full, starts, begins, {}, calls)
        runs = self._runs(full, [], starts, regions, [], tokenize=False)
        return Layout(runs, missing_end, shaped.left_out, full, starts, own=True)

    def _cut_text(self, rendered: str, full: str) -> int:
        """Where two renders part, never inside a special token of either."""
        pos = lcp(rendered, full)
        for text in (rendered, full):
            inside = self._special_around(text, pos)
            if inside is not None:
                pos = min(pos, inside)
        return pos
