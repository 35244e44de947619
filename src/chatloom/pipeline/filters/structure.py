"""Filters on a conversation's form: a pattern in its text (regex), its roles and turns (structure)."""

from __future__ import annotations

import re
from typing import Literal

import regex
from pydantic import Field, field_validator

from ...model import Conversation
from ..base import Context, Filter, Params

MAX_PATTERN_SIZE = 100_000  # compiles in about 0.03 s (1,000,000: 0.3 s); see pattern_size
_COUNT = re.compile(r"\{(\d*)(?:,(\d*))?\}")


def pattern_size(pattern: str) -> int:
    """About how large ``pattern`` compiles: a character, escape or class counts 1, a group what
    is in it, and a counted repeat ``X{m,n}`` X's size times the larger count, so nested repeats
    multiply. The ``regex`` module unrolls counted repeats when it compiles (``a{100000000}``
    takes minutes, with no timeout to stop it), so a recipe's pattern is measured first. It errs
    on the large side (a comment counts as its characters), never on the small one."""
    groups = [0]  # the size so far of each open group
    last = 0  # the size of the atom a quantifier would repeat
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "(":
            groups.append(0)
            i += 1
            continue
        if c == ")" and len(groups) > 1:
            last = max(groups.pop(), 1)
            groups[-1] += last
            i += 1
            continue
        count = _COUNT.match(pattern, i) if c == "{" else None
        if count and any(count.groups()):
            times = max(int(g[:10]) for g in count.groups() if g)
            groups[-1] += last * max(times - 1, 0)  # the atom was counted once already
            last *= max(times, 1)
            i = count.end()
            continue
        if c == "\\":
            i += 2
        elif c == "[":  # a class: up to its first unescaped ] (a ] first in it is literal)
            i += 2 if pattern.startswith("[^", i) else 1
            i += 1 if pattern.startswith("]", i) else 0
            while i < n and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
            i += 1
        else:
            i += 1
        last = 1
        groups[-1] += 1
    return sum(groups)


class RegexParams(Params):
    pattern: str = Field(min_length=1)
    roles: list[Literal["system", "user", "assistant", "tool"]] = Field(["user", "assistant"], min_length=1)
    ignore_case: bool = True
    keep_matching: bool = False
    timeout: float = Field(1.0, gt=0, le=60)  # seconds a search of one message may take: then the build stops

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        size = pattern_size(pattern)
        if size > MAX_PATTERN_SIZE:
            raise ValueError(f"too large: it unrolls to about {size:,} parts (counted repeats multiply), "
                             f"over the {MAX_PATTERN_SIZE:,} a regex step takes")
        try:
            regex.compile(pattern)
        except regex.error as err:
            raise ValueError(f"not a valid regular expression: {err}") from None
        return pattern


class Regex(Filter[RegexParams]):
    """Drops the conversations whose text (in ``roles``) matches ``pattern``, or with
    ``keep_matching`` those where it does not. The ``regex`` module runs it, each search bounded by
    ``timeout``: a pattern that backtracks catastrophically (``(a|aa)+$``) stops the build with an
    error naming it and the conversation, rather than hanging, or dropping conversations by how
    fast the machine is (the outputs must not depend on it)."""

    name = "regex"
    summary = "drop conversations whose text matches a pattern (or, keep_matching, those that do not)"

    def __init__(self, params: RegexParams, context: Context) -> None:
        super().__init__(params, context)
        self._re = regex.compile(params.pattern, regex.IGNORECASE if params.ignore_case else 0)

    def _search(self, conv: Conversation, text: str) -> bool:
        try:
            return self._re.search(text, timeout=self.params.timeout) is not None
        except TimeoutError:
            from ..recipe import RecipeError

            raise RecipeError((*self.where, "pattern"), f"a search took over {self.params.timeout:g} s (a message of "
                              f"{len(text):,} characters in conversation {conv.id}): the pattern backtracks "
                              "catastrophically; simplify it (or raise timeout)") from None

    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        roles = self.params.roles
        hit = any(self._search(conv, m.content) for m in conv.messages if m.role in roles)
        if hit != self.params.keep_matching:
            return False, "matches the pattern" if hit else "does not match the pattern"
        return True


class StructureParams(Params):
    alternate: bool = True
    ends_with_assistant: bool = True
    no_empty: bool = True


class Structure(Filter[StructureParams]):
    name = "structure"
    summary = "roles alternate, the conversation ends with an assistant turn, no empty turns"

    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        p = self.params
        turns = [m for m in conv.messages if m.role != "system"]
        if p.no_empty and any(not m.content.strip() and not m.tool_calls for m in conv.messages):
            return False, "an empty turn"
        if p.ends_with_assistant and (not turns or turns[-1].role != "assistant"):
            return False, "does not end with an assistant turn"
        if p.alternate:
            chat = [m.role for m in turns if m.role in ("user", "assistant")]
            if any(a == b for a, b in zip(chat, chat[1:])) or (chat and chat[0] != "user"):
                return False, "roles do not alternate"
        return True
