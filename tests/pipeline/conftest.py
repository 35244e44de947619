"""Helpers for the step tests: a step built as a recipe builds it, and a filter's verdict."""

from __future__ import annotations

from chatloom.model import Conversation
from chatloom.pipeline.base import Context
from chatloom.pipeline.registry import build_step

CTX = Context(seed=0, tokenizer="gpt2-chatml", max_tokens=40)


def step(spec):  # type: ignore[no-untyped-def]
    return build_step(spec, CTX)


def keeps(spec, c: Conversation):  # type: ignore[no-untyped-def]
    s = step(spec)
    if s.barrier:  # a dataset-wide filter sees the conversation first
        s.fit([c])
    v = s.keep(c)
    return v if isinstance(v, bool) else v[0]
