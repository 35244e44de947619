"""Bounds on a conversation's size: its number of turns, its length in tokens."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from ...model import Conversation
from ..base import Filter, Params


class BoundsParams(Params):
    min: int = Field(0, ge=0)
    max: int | None = Field(None, ge=1)

    @field_validator("max")
    @classmethod
    def _not_below_min(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min")
        if value is not None and low is not None and low > value:
            raise ValueError(f"min {low} is greater than max {value}: nothing would be kept")
        return value


def within(n: int, bounds: BoundsParams, unit: str) -> bool | tuple[bool, str]:
    if n < bounds.min:
        return False, f"fewer than {bounds.min} {unit}"
    if bounds.max is not None and n > bounds.max:
        return False, f"more than {bounds.max} {unit}"
    return True


class TurnsParams(BoundsParams):
    min: int = Field(2, ge=0)


class Turns(Filter[TurnsParams]):
    name = "turns"
    summary = "bounds on the number of turns (system messages not counted)"

    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        return within(sum(m.role != "system" for m in conv.messages), self.params, "turns")


class Tokens(Filter[BoundsParams]):
    name = "tokens"
    summary = "bounds on the conversation's length in tokens (ChatML, the recipe's tokenizer)"

    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        from ...tokens.tokenizer import get_tokenizer

        n = get_tokenizer(self.context.tokenizer).chatml_counts([[(m.role, m.content) for m in conv.messages]])[0]
        return within(n, self.params, "tokens")
