"""The truncate transform: fit a token limit by dropping the oldest whole turns."""

from __future__ import annotations

from msgspec.structs import replace
from pydantic import Field

from ...model import Conversation
from ..base import Context, Params, ParamsError, Transform


class TruncateParams(Params):
    max_tokens: int | None = Field(None, ge=1)


class Truncate(Transform[TruncateParams]):
    """Fit ``max_tokens`` (the recipe's, unless given) by dropping the oldest whole turns; the system
    prompt stays and the rest starts on a user turn. A conversation whose last exchange alone is too
    long is dropped. What is cut is counted."""

    name = "truncate"
    summary = "fit max_tokens: drop the oldest whole turns, keep the system prompt (counted)"
    drop_reason = "over max_tokens even after truncation"

    def __init__(self, params: TruncateParams, context: Context) -> None:
        super().__init__(params, context)
        if params.max_tokens is None and context.max_tokens is None:
            raise ParamsError("no limit to truncate to: give max_tokens here or at the top of the recipe", "max_tokens")

    def apply(self, conv: Conversation) -> Conversation | None:
        from ...tokens.tokenizer import get_tokenizer

        limit = self.params.max_tokens or self.context.max_tokens
        if limit is None:
            return conv
        tok = get_tokenizer(self.context.tokenizer)
        system = [m for m in conv.messages if m.role == "system"]
        rest = [m for m in conv.messages if m.role != "system"]
        lengths = tok.chatml_counts([[(m.role, m.content)] for m in conv.messages])
        by_msg = dict(zip(map(id, conv.messages), lengths))
        total = sum(lengths)
        if total <= limit:
            return conv
        budget = limit - sum(by_msg[id(m)] for m in system)
        kept = total - sum(by_msg[id(m)] for m in system)
        for j in range(len(rest)):
            if kept <= budget and rest[j].role == "user":
                self.stats["conversations truncated"] += 1
                self.stats["turns cut"] += j
                return replace(conv, messages=system + rest[j:])
            kept -= by_msg[id(rest[j])]
        return None
