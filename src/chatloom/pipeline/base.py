"""Build steps: small classes with one job each, in datatrove's style.

- A ``Filter`` answers ``keep(conv)``: True, or ``(False, reason)``.
- A ``Transform`` returns the changed conversation from ``apply(conv)`` (None drops it, with
  ``self.drop_reason``) and counts what it changed in ``self.stats``.
- A ``DatasetFilter`` needs every conversation before it can answer (dedup): ``fit(convs)`` sees
  them all, in order, then ``keep(conv)`` answers as a Filter does.

Parameters are a pydantic model (``Params``, ``extra="forbid"``): a recipe's typo is an error
that names the key. A plugin registers more steps with the ``register_steps`` hook.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from contextlib import contextmanager
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ..model import Conversation


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Context(BaseModel):
    """What every step may use: the recipe's seed, tokenizer and token limit."""

    model_config = ConfigDict(extra="forbid")
    seed: int = 0
    tokenizer: str = "gpt2-chatml"
    max_tokens: int | None = None


class Step:
    name: ClassVar[str]
    summary: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = Params

    def __init__(self, params: BaseModel, context: Context):
        self.params = params
        self.context = context
        self.stats: Counter[str] = Counter()
        self.seconds = 0.0

    @contextmanager
    def timed(self) -> Any:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start


class Filter(Step):
    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        raise NotImplementedError


class DatasetFilter(Filter):
    def fit(self, convs: Iterable[Conversation]) -> None:
        raise NotImplementedError


class Transform(Step):
    drop_reason: str = "dropped"

    def apply(self, conv: Conversation) -> Conversation | None:
        raise NotImplementedError
