"""Conversations → token ids and loss masks, with the checks that catch silent failures.

    enc = Encoder(get_tokenizer("gpt2-chatml"), "chatml")
    [(ids, mask)] = enc.encode_batch([conv])

Each check is an error naming the conversation, or with ``fix=True`` a repair, counted in
``enc.report``: roles the template refuses, an assistant turn without its end-of-turn token, a
message the template leaves out, a doubled BOS, an empty mask, and (with ``max_tokens``) a
conversation too long, dropped or (``truncate=True``) cut by whole turns.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from msgspec.structs import replace

from ..errors import ChatloomError, ParamError, UsageError
from ..model import Conversation, Message
from .chat_templates import ChatTemplate, TemplateError, get_template
from .joined import Joined, Slot
from .layout import Layout, Layouts, Run
from .tokenizer import Tokenizer

EXAMPLES = 3  # conversation ids kept per reason in the report


class CheckError(ParamError):
    """A conversation fails a check and ``fix`` is off (the message says what ``{fix}`` would do)."""


@dataclass
class Report:
    """What happened to the conversations, counted: nothing is dropped or changed without a line here."""

    conversations: int = 0  # written
    tokens: int = 0
    trained_tokens: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    fixed: Counter[str] = field(default_factory=Counter)
    truncated: int = 0
    turns_cut: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    def note(self, counter: Counter[str], reason: str, conv_id: str | None) -> None:
        counter[reason] += 1
        ids = self.examples.setdefault(reason, [])
        if len(ids) < EXAMPLES and conv_id:
            ids.append(conv_id)

    def merge(self, other: Report) -> None:
        self.conversations += other.conversations
        self.tokens += other.tokens
        self.trained_tokens += other.trained_tokens
        self.dropped += other.dropped
        self.fixed += other.fixed
        self.truncated += other.truncated
        self.turns_cut += other.turns_cut
        for reason, ids in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine.extend(ids[: EXAMPLES - len(mine)])

    def as_dict(self) -> dict[str, Any]:
        return {
            "conversations": self.conversations, "tokens": self.tokens, "trained_tokens": self.trained_tokens,
            "dropped": dict(sorted(self.dropped.items())), "fixed": dict(sorted(self.fixed.items())),
            "truncated": self.truncated, "turns_cut": self.turns_cut, "examples": dict(sorted(self.examples.items())),
        }


class _Drop(Exception):
    def __init__(self, reason: str):
        self.reason = reason


# -- role repairs (fix=True), tried in this order until the template accepts the conversation --

def _merge_same_roles(messages: list[Message]) -> list[Message]:
    out: list[Message] = []
    for m in messages:
        if out and m.role == out[-1].role and m.role in ("user", "assistant", "system") and not (m.tool_calls or out[-1].tool_calls):
            out[-1] = replace(out[-1], content=f"{out[-1].content}\n{m.content}" if out[-1].content else m.content)
        else:
            out.append(m)
    return out


def _fold_system(messages: list[Message]) -> list[Message]:
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    rest = [m for m in messages if m.role != "system"]
    for i, m in enumerate(rest):
        if m.role == "user":
            rest[i] = replace(m, content=f"{system}\n\n{m.content}" if system else m.content)
            break
    return rest


def _from_first_user(messages: list[Message]) -> list[Message]:
    keep = [m for m in messages if m.role == "system"]
    first = next((i for i, m in enumerate(messages) if m.role == "user"), len(messages))
    return keep + [m for m in messages[first:] if m.role != "system"]


def _without_tools(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.role != "tool" and not m.tool_calls]


REPAIRS = (
    ("merged consecutive turns of one role", _merge_same_roles),
    ("folded the system prompt into the first user turn", _fold_system),
    ("dropped turns before the first user turn", _from_first_user),
    ("dropped tool calls and results", _without_tools),
)


class Encoder:
    """Tokenizes conversations with a template; ``report`` counts what the checks did."""

    def __init__(self, tokenizer: Tokenizer, template: ChatTemplate | str | None = None, *, fix: bool = False,
                 max_tokens: int | None = None, truncate: bool = False, end_with_eos: bool = True, keep_layouts: bool = False):
        self.tokenizer = tokenizer
        self.template = template if isinstance(template, ChatTemplate) else get_template(template, tokenizer.template_tokens)
        missing = [t for t in self.template.needs if t not in tokenizer.special_tokens]
        if missing:
            raise ChatloomError(
                f"template {self.template.name} needs special tokens that tokenizer {tokenizer.name} lacks: {', '.join(missing)}; "
                "use a tokenizer that has them (gpt2-chatml for chatml, or the model's own tokenizer folder)")
        self.layouts = Layouts(self.template, tokenizer, keep=keep_layouts)  # (kept: tokenize's, in chatloom's cache)
        self.fix, self.max_tokens, self.truncate = fix, max_tokens, truncate
        specials = tokenizer.special_tokens
        self.eos = specials.get(tokenizer.template_tokens.get("eos_token", ""))
        self.bos = specials.get(tokenizer.template_tokens.get("bos_token", ""))
        if self.eos is None:
            named = tokenizer.template_tokens.get("eos_token")
            why = f"its eos_token {named!r} is not one of its special tokens" if named else "it names no eos_token"
            raise UsageError(f"{getattr(tokenizer, 'config_path', tokenizer.name)}: {why}: a model trained on these files "
                             "would never learn where a conversation ends; set eos_token in the tokenizer's config")
        self.end_with_eos = end_with_eos and self.eos is not None
        self.dtype = np.dtype("<u2") if tokenizer.vocab_size <= 1 << 16 else np.dtype("<u4")
        # a folder tiktoken encodes: ids past its vocabulary stand for the (at most 256) bytes it lacks
        lacking = getattr(tokenizer, "lacking_from", None)  # (a plugin's tokenizer may not say)
        self._check_arrays = lacking is not None and lacking + 256 <= np.iinfo(self.dtype).max + 1
        self.report = Report()
        self._fixed_layouts: dict[int, Layout] = {}
        self._compiled_layouts: dict[int, _Compiled] = {}

    # -- one conversation's plan: its runs, after the checks that need no tokens ---------------

    def _check(self, what: str, conv: Conversation, repair: str | None) -> None:
        """Fail unless fixing; when fixing, count ``repair`` (the caller repairs)."""
        if not self.fix:
            hint = "; {fix} {repair}" if repair else ""
            raise CheckError("conversation {conv_id}: {what}" + hint, conv_id=conv.id, what=what, **({"repair": repair} if repair else {}))

    def _layout(self, conv: Conversation) -> tuple[Conversation, Layout]:
        try:
            return conv, self.layouts.get(conv)
        except TemplateError as refused:
            if not refused.refusal:  # the template fails, or chatloom cannot follow it: no repair of the roles helps
                if not self.fix:
                    raise CheckError("conversation {conv_id}: {failed}", conv_id=conv.id, failed=str(refused)) from None
                raise _Drop(str(refused).replace(f"template {self.template.name}", "template", 1)) from None
            if not self.fix:
                raise CheckError("conversation {conv_id}: {refused}; {fix} repairs the roles (merges, folds the system prompt, …)",
                                 conv_id=conv.id, refused=str(refused)) from None
            messages = list(conv.messages)
            for label, repair in REPAIRS:
                repaired = repair(messages)
                if repaired == messages:
                    continue
                messages = repaired
                self.report.note(self.report.fixed, label, conv.id)
                candidate = replace(conv, messages=messages)
                try:
                    return candidate, self.layouts.get(candidate)
                except TemplateError as still:
                    if not still.refusal:
                        raise _Drop(str(still).replace(f"template {self.template.name}", "template", 1)) from None
            raise _Drop(f"template {self.template.name} refuses the roles") from None

    def _with_end(self, layout: Layout) -> Layout:
        """``fix``: an eos after each trained turn that has no end-of-turn token (cached per layout)."""
        fixed = None if layout.own else self._fixed_layouts.get(id(layout))
        if fixed is None:
            runs: list[Run] = []
            missing = set(layout.missing_end)
            for i, run in enumerate(layout.runs):
                runs.append(run)
                nxt = layout.runs[i + 1] if i + 1 < len(layout.runs) else None
                if run.trained and run.owner in missing and (nxt is None or not nxt.trained or nxt.owner != run.owner):
                    runs.append(Run(True, [self.tokenizer.template_tokens["eos_token"]], [self.eos], run.owner, special=True))  # type: ignore[list-item]
            fixed = Layout(runs, [], layout.left_out, own=layout.own)
            if not layout.own:
                self._fixed_layouts[id(layout)] = fixed
        return fixed

    def plan(self, conv: Conversation) -> tuple[Conversation, Layout]:
        conv, layout = self._layout(conv)
        if layout.left_out:
            k = layout.left_out[0]
            self._check(f"template {self.template.name} leaves out message {k} ({conv.messages[k].role})", conv, "keeps going without it")
            self.report.note(self.report.fixed, "messages the template leaves out", conv.id)
        if layout.missing_end:
            k = layout.missing_end[0]
            self._check(f"turn {k} ({conv.messages[k].role}) has no end-of-turn token after it: the model would never learn to stop",
                        conv, "appends the tokenizer's eos")
            if self.eos is None:
                raise _Drop("no end-of-turn token and the tokenizer has no eos")
            self.report.note(self.report.fixed, "appended eos after a turn without an end token", conv.id)
            layout = self._with_end(layout)
        return conv, layout

    # -- tokens ----------------------------------------------------------------------------

    def _compiled(self, layout: Layout) -> _Compiled:
        compiled = None if layout.own else self._compiled_layouts.get(id(layout))
        if compiled is None:
            compiled = _compile(layout, self.eos if self.end_with_eos else None, self.template.tokens.get("eos_token"))
            if not layout.own:
                self._compiled_layouts[id(layout)] = compiled
        return compiled

    def _pieces(self, planned: Sequence[tuple[Conversation, Layout]], memo: dict[str, list[int]] | None = None,
                check: bool = True) -> tuple[list[list[int]], list[np.ndarray], list[int], int | None]:
        """Every run's token ids in order, the loss flag of each run, and the number of runs of
        each conversation. The texts of all the conversations go to the tokenizer in one batch;
        with ``memo`` (text → ids), only those it lacks, which it then holds. Without ``check``,
        also the id from which an id is wrong (``Tokenizer.encode_batch_unchecked``), or None."""
        compiled = [self._compiled(layout) for _, layout in planned]
        texts: list[str] = []
        for (conv, _), c in zip(planned, compiled):
            texts.extend(c.texts(conv.messages))
        past = None
        if not check:
            ids, past = self.tokenizer.encode_batch_unchecked(texts)
            encoded = iter(ids)
        elif memo is None:
            encoded = iter(self.tokenizer.encode_batch(texts))
        else:
            new = [t for t in dict.fromkeys(texts) if t not in memo]
            memo.update(zip(new, self.tokenizer.encode_batch(new)))
            encoded = iter([memo[t] for t in texts])
        pieces: list[list[int]] = []
        for c in compiled:
            pieces.extend([ids if ids is not None else next(encoded) for ids in c.order])
        return pieces, [c.flags for c in compiled], [len(c.order) for c in compiled], past

    def _lists(self, conv: Conversation, layout: Layout, memo: dict[str, list[int]] | None = None) -> tuple[list[int], bytearray]:
        pieces, flags, _, _ = self._pieces([(conv, layout)], memo)
        ids = [t for p in pieces for t in p]
        mask = bytearray(np.repeat(flags[0], [len(p) for p in pieces]).tobytes())
        return ids, mask

    def _finish(self, conv: Conversation, ids: list[int], mask: bytearray) -> tuple[list[int], bytearray]:
        if self.bos is not None and len(ids) > 1 and ids[0] == ids[1] == self.bos:
            self._check("starts with a doubled BOS token", conv, "removes one")
            self.report.note(self.report.fixed, "removed a doubled BOS", conv.id)
            del ids[0]
            del mask[0]
        if 1 not in mask:
            self._check("has no trained token (no assistant turn, or every turn has train=false)", conv, "drops it")
            raise _Drop("no trained token")
        return ids, mask

    def _shorten(self, conv: Conversation, memo: dict[str, list[int]]) -> tuple[list[int], bytearray] | None:
        """Fit ``max_tokens`` by dropping the oldest turns, whole, keeping the system prompt (as
        the build step's truncation does): the shortest cut whose rest starts on a user turn.

        Dropping more turns never makes the rest longer, so the first cut short enough is found
        by bisection (a few encodes, not one per turn: a 500-turn chat cost 500 encodes of
        itself before); from there the cuts are tried in order until one has something to train.
        A cut's runs are mostly the whole conversation's (``memo``, text → ids, holds those): only
        the texts that differ, at the new start, are tokenized again."""
        system = [m for m in conv.messages if m.role == "system"]
        rest = [m for m in conv.messages if m.role != "system"]
        cuts = [j for j in range(1, len(rest)) if rest[j].role == "user"]
        tried: dict[int, tuple[list[int], bytearray] | None] = {}

        def encoded(i: int) -> tuple[list[int], bytearray] | None:  # None: nothing left to train on
            if i not in tried:
                shorter = replace(conv, messages=system + rest[cuts[i]:])
                try:
                    tried[i] = self._finish(shorter, *self._lists(*self.plan(shorter), memo))
                except _Drop:
                    tried[i] = None
            return tried[i]

        def too_long(i: int) -> bool:
            got = encoded(i)
            return got is not None and len(got[0]) > self.max_tokens  # type: ignore[operator]

        lo, hi = 0, len(cuts)
        while lo < hi:
            mid = (lo + hi) // 2
            if too_long(mid):
                lo = mid + 1
            else:
                hi = mid
        for i in range(lo, len(cuts)):
            got = encoded(i)
            if got is not None and len(got[0]) <= self.max_tokens:  # type: ignore[operator]
                self.report.turns_cut += cuts[i]
                return got
        return None

    def _slow(self, conv: Conversation, ids: list[int], mask: bytearray,
              memo: dict[str, list[int]] | None = None) -> tuple[list[int], bytearray] | None:
        """A conversation that failed a fast check, one by one: fail, repair or drop (counted)."""
        try:
            ids, mask = self._finish(conv, ids, mask)
        except _Drop as drop:
            self.report.note(self.report.dropped, drop.reason, conv.id)
            return None
        if self.max_tokens is not None and len(ids) > self.max_tokens:
            shorter = self._shorten(conv, memo if memo is not None else {}) if self.truncate else None
            if shorter is None:
                self.report.note(self.report.dropped, f"over --max-tokens {self.max_tokens}", conv.id)
                return None
            self.report.truncated += 1
            truncated = self.report.examples.setdefault("truncated", [])
            if len(truncated) < EXAMPLES and conv.id:
                truncated.append(conv.id)
            ids, mask = shorter
        return ids, mask

    def _memo(self, conv: Conversation, layout: Layout, pieces: list[list[int]]) -> dict[str, list[int]]:
        """Text → ids of a conversation's runs, from its pieces (those of ``_pieces``)."""
        compiled = self._compiled(layout)
        encoded = (ids for ids, fixed in zip(pieces, compiled.order) if fixed is None)
        return dict(zip(compiled.texts(conv.messages), encoded))

    def encode_arrays(self, convs: Sequence[Conversation]) -> Encoded:
        """The conversations' tokens and loss bytes, concatenated, with each one's length.

        The checks run vectorized over the batch; only the conversations that fail one are
        looked at one by one (to fail, repair or drop them).
        """
        planned: list[tuple[Conversation, Layout]] = []
        index: list[int] = []
        for i, conv in enumerate(convs):
            try:
                planned.append(self.plan(conv))
                index.append(i)
            except _Drop as drop:
                self.report.note(self.report.dropped, drop.reason, conv.id)
        kept = [False] * len(convs)
        if not planned:
            return Encoded(kept, np.zeros(0, np.int64), np.zeros(0, self.dtype), np.zeros(0, np.uint8))
        # the ids are checked here at once, in numpy, where every id that may be wrong fits the dtype;
        # where one is (a byte the vocabulary lacks), the chunk is encoded again, checked
        for check in (not self._check_arrays, True):
            pieces, flags, counts, past = self._pieces(planned, check=check)
            piece_len = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
            tokens = np.fromiter(itertools.chain.from_iterable(pieces), dtype=self.dtype, count=int(piece_len.sum()))
            if past is None or not len(tokens) or int(tokens.max()) < past:
                break
        mask = np.repeat(np.concatenate(flags), piece_len)
        first_piece = np.cumsum(counts) - counts
        lengths = np.add.reduceat(piece_len, first_piece)
        starts = np.cumsum(lengths) - lengths
        trained = np.add.reduceat(mask, starts, dtype=np.int64)
        bad = trained == 0
        if self.bos is not None:
            two = lengths > 1
            bad |= two & (tokens[starts] == self.bos) & (tokens[np.minimum(starts + 1, len(tokens) - 1)] == self.bos)
        if self.max_tokens is not None:
            bad |= lengths > self.max_tokens
        if not bad.any():
            for i in index:
                kept[i] = True
            out = Encoded(kept, lengths, tokens, mask)
        else:
            segments: list[tuple[np.ndarray, np.ndarray]] = []
            new_lengths: list[int] = []
            for j, (i, (conv, layout)) in enumerate(zip(index, planned)):
                s, e = int(starts[j]), int(starts[j] + lengths[j])
                if bad[j]:
                    memo = self._memo(conv, layout, pieces[first_piece[j] : first_piece[j] + counts[j]]) if self.truncate else None
                    fixed = self._slow(conv, tokens[s:e].tolist(), bytearray(mask[s:e].tobytes()), memo)
                    if fixed is None:
                        continue
                    segments.append((np.asarray(fixed[0], dtype=self.dtype), np.frombuffer(bytes(fixed[1]), dtype=np.uint8)))
                else:
                    segments.append((tokens[s:e], mask[s:e]))
                kept[i] = True
                new_lengths.append(len(segments[-1][0]))
            out = Encoded(kept, np.asarray(new_lengths, dtype=np.int64),
                          np.concatenate([t for t, _ in segments]) if segments else np.zeros(0, self.dtype),
                          np.concatenate([m for _, m in segments]) if segments else np.zeros(0, np.uint8))
        self.report.conversations += len(out.lengths)
        self.report.tokens += len(out.tokens)
        self.report.trained_tokens += int(np.count_nonzero(out.loss))
        return out

    def encode_batch(self, convs: Sequence[Conversation]) -> list[tuple[list[int], bytes] | None]:
        """Token ids and loss mask (one byte a token) per conversation; None where one is dropped."""
        enc = self.encode_arrays(convs)
        out: list[tuple[list[int], bytes] | None] = []
        at = j = 0
        for keep in enc.kept:
            if not keep:
                out.append(None)
                continue
            n = int(enc.lengths[j])
            out.append((enc.tokens[at : at + n].tolist(), enc.loss[at : at + n].tobytes()))
            at += n
            j += 1
        return out

    def encode(self, conv: Conversation) -> tuple[list[int], bytes] | None:
        return self.encode_batch([conv])[0]

    def tokens(self, conv: Conversation) -> tuple[list[int], bytearray]:
        """One conversation's ids and mask as the template makes them, before the checks on
        tokens (for ``inspect``: an empty mask is shown, not dropped)."""
        try:
            return self._lists(*self.plan(conv))
        except _Drop as drop:
            raise CheckError(f"conversation {conv.id}: {drop.reason}") from None


@dataclass
class Encoded:
    kept: list[bool]  # per input conversation
    lengths: np.ndarray  # tokens of each kept conversation
    tokens: np.ndarray
    loss: np.ndarray  # uint8, one per token


@dataclass
class _Compiled:
    """A layout made fast: one generated function returns the texts to tokenize (its runs that
    hold message text), ``order`` interleaves them with the runs tokenized once (None: the next
    text), and ``flags`` is the loss flag of each entry of ``order``."""

    texts: Any
    order: list[list[int] | None]
    flags: np.ndarray


def _compile(layout: Layout, eos: int | None, eos_text: str | None) -> _Compiled:
    order: list[list[int] | None] = []
    flags: list[int] = []
    groups: list[list[str | Slot]] = []
    for run in layout.runs:
        flags.append(int(run.trained))
        if run.ids is not None:
            order.append(run.ids)
            continue
        order.append(None)
        groups.append(run.parts)
    if eos is not None and not (layout.runs and layout.runs[-1].special and layout.runs[-1].ids == [eos]):
        order.append([eos])  # the document separator: not trained
        flags.append(0)
    return _Compiled(Joined(groups), order, np.asarray(flags, dtype=np.uint8))
