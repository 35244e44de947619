"""Filters on a conversation's form: a pattern in its text (regex), its roles and turns (structure)."""

from __future__ import annotations

import re
from typing import Literal

from ...model import Conversation
from ..base import Context, Filter, Params


class RegexParams(Params):
    pattern: str
    roles: list[Literal["system", "user", "assistant", "tool"]] = ["user", "assistant"]
    ignore_case: bool = True
    keep_matching: bool = False


class Regex(Filter[RegexParams]):
    name = "regex"
    summary = "drop conversations whose text matches a pattern (or, keep_matching, those that do not)"

    def __init__(self, params: RegexParams, context: Context) -> None:
        super().__init__(params, context)
        self._re = re.compile(params.pattern, re.IGNORECASE if params.ignore_case else 0)

    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        roles = self.params.roles
        hit = any(self._re.search(m.content) for m in conv.messages if m.role in roles)
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
