"""Pipeline steps: small classes with one job each, in datatrove's style. Each step runs its own
loop (``run``), counting what it saw, kept, dropped (with the reason) and changed, and its time.

- A ``Filter`` answers ``keep(conv)``: True, or ``(False, reason)``.
- A ``Transform`` returns the changed conversation from ``apply(conv)`` (None drops it, with
  ``self.drop_reason``) and counts what it changed in ``self.stats``. A transform that emits
  several conversations for one (``window``) overrides ``run``.
- A ``DatasetFilter`` needs every conversation before it can answer (dedup): ``fit(convs)`` sees
  them all, in order, then ``keep(conv)`` answers as a Filter does. It is a ``barrier``: the
  runner spills the stream before it and runs it in the main process.

A step is generic over its parameters, a pydantic model (``extra="forbid"``, so a recipe's typo
is an error that names the key); the step reads them as ``self.params`` with their types::

    class TurnsParams(Params):
        min: int = Field(2, ge=0)

    class Turns(Filter[TurnsParams]):
        name = "turns"
        summary = "bounds on the number of turns"

        def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
            return len(conv.messages) >= self.params.min or (False, "too few turns")

``Turns.Params`` is ``TurnsParams`` (taken from the generic argument). A plugin registers more
steps with the ``register_steps`` hook.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Generic, TypeVar, get_args

from pydantic import BaseModel, ConfigDict

from ..model import Conversation


class ParamsError(Exception):
    """A step's parameters that validate one by one but cannot work together, raised by its
    ``__init__`` (``truncate`` with no limit anywhere): the recipe's error names ``key`` under the
    step (``ParamsError("no limit …", "max_tokens")``)."""

    def __init__(self, message: str, *key: str | int):
        super().__init__(message)
        self.message, self.key = message, key


class Params(BaseModel):
    """A step's parameters; a step without any takes this one."""

    model_config = ConfigDict(extra="forbid")


class Context(BaseModel):
    """What every step may use: the recipe's seed, tokenizer and token limit."""

    model_config = ConfigDict(extra="forbid")
    seed: int = 0
    tokenizer: str = "gpt2-chatml"
    max_tokens: int | None = None


P = TypeVar("P", bound=Params)

Drop = Callable[[Conversation, str], None]
"""Where a step's ``run`` sends what it drops, with the reason (the runner writes it to
``rejected.jsonl``)."""


class Step(Generic[P]):
    name: ClassVar[str]
    summary: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params  # the generic argument: see __init_subclass__
    barrier: ClassVar[bool] = False  # True: needs every conversation first (``fit``), in the main process
    where: tuple[str | int, ...] = ()  # its place in the recipe, ("filters", 2, "regex"): set by ``build_step``

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):  # class Turns(Filter[TurnsParams])
            for arg in get_args(base):
                if isinstance(arg, type) and issubclass(arg, Params):
                    cls.Params = arg

    def __init__(self, params: P, context: Context):
        self.params = params
        self.context = context
        self.reset()

    def reset(self) -> None:
        """Zero the counts: a worker reports what it did chunk by chunk."""
        self.seen = 0
        self.kept = 0
        self.seconds = 0.0
        self.stats: Counter[str] = Counter()  # what it changed or noticed, by kind

    @contextmanager
    def timed(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start

    def fit(self, convs: Iterable[Conversation]) -> None:
        """A ``barrier`` step sees every conversation here, in order, before ``run``."""

    def run(self, convs: Iterable[Conversation], drop: Drop) -> Iterator[Conversation]:
        """The step over a stream: what it keeps or makes, in order; what it drops goes to ``drop``."""
        raise NotImplementedError


class Filter(Step[P]):
    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        raise NotImplementedError

    def run(self, convs: Iterable[Conversation], drop: Drop) -> Iterator[Conversation]:
        clock = time.perf_counter
        for conv in convs:
            self.seen += 1
            start = clock()
            verdict = self.keep(conv)
            self.seconds += clock() - start
            ok, reason = (verdict, "") if isinstance(verdict, bool) else verdict
            if ok:
                self.kept += 1
                yield conv
            else:
                drop(conv, reason)


class DatasetFilter(Filter[P]):
    barrier = True

    def fit(self, convs: Iterable[Conversation]) -> None:
        raise NotImplementedError


class Transform(Step[P]):
    drop_reason: ClassVar[str] = "dropped"

    def apply(self, conv: Conversation) -> Conversation | None:
        raise NotImplementedError

    def run(self, convs: Iterable[Conversation], drop: Drop) -> Iterator[Conversation]:
        clock = time.perf_counter
        for conv in convs:
            self.seen += 1
            start = clock()
            out = self.apply(conv)
            self.seconds += clock() - start
            if out is None:
                drop(conv, self.drop_reason)
            else:
                self.kept += 1
                yield out
