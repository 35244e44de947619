"""Transforms of the turns' roles: merge consecutive turns of one role; repair the alternation."""

from __future__ import annotations

from msgspec.structs import replace

from ...model import Conversation, Message
from ..base import Params, Transform


class MergeTurnsParams(Params):
    separator: str = "\n"


class MergeTurns(Transform[MergeTurnsParams]):
    name = "merge_turns"
    summary = "merge consecutive turns of one role into one (joined by a newline)"

    def apply(self, conv: Conversation) -> Conversation | None:
        out: list[Message] = []
        for m in conv.messages:
            if out and m.role == out[-1].role and m.role in ("user", "assistant") and not (m.tool_calls or out[-1].tool_calls):
                out[-1] = replace(out[-1], content=f"{out[-1].content}{self.params.separator}{m.content}")
                self.stats["turns merged"] += 1
            else:
                out.append(m)
        return replace(conv, messages=out) if len(out) != len(conv.messages) else conv


class FixRoles(Transform[Params]):
    name = "fix_roles"
    summary = "repair role alternation: merge same-role runs, drop turns before the first user turn and after the last assistant"
    drop_reason = "no user → assistant exchange left"

    def apply(self, conv: Conversation) -> Conversation | None:
        system = [m for m in conv.messages if m.role == "system"]
        chat = [m for m in conv.messages if m.role in ("user", "assistant")]
        merged: list[Message] = []
        for m in chat:
            if merged and merged[-1].role == m.role:
                merged[-1] = replace(merged[-1], content=f"{merged[-1].content}\n{m.content}")
            else:
                merged.append(m)
        while merged and merged[0].role != "user":
            merged.pop(0)
        while merged and merged[-1].role != "assistant":
            merged.pop()
        if not merged:
            return None
        out = system + merged
        if len(out) != len(conv.messages):
            self.stats["conversations repaired"] += 1
        return replace(conv, messages=out) if len(out) != len(conv.messages) else conv
