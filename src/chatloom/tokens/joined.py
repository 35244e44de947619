"""Text from a layout's parts over a conversation's messages: ``Slot`` (where a message's content
or name goes, and how the template strips it) and ``Joined`` (the parts joined, walked for a shape
met once or twice, compiled to one function from the third time)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..model import Message


@dataclass(frozen=True)
class Slot:
    """A message's content (or name) in the rendered text; ``strip`` is how the template strips it."""

    msg: int
    kind: str  # "c" content, "n" name
    strip: str  # "", "l", "r" or "lr"



_STRIP: dict[str, Any] = {"": str, "l": str.lstrip, "r": str.rstrip, "lr": str.strip}
COMPILE_AFTER = 2  # calls a Joined answers by walking its parts before it compiles them (a one-off shape never does)
# a group of more parts is joined by str.join over a tuple, not by "+": Python's compiler recurses
# once per "+" of a chain, and a long chat's whole text (Llama 3.1's, 564 messages) is thousands
# of parts (RecursionError); a tuple of any length is flat
JOIN_OVER = 16


def value(part: str | Slot, m: Sequence[Message]) -> str:
    """What ``expr(part)`` evaluates to over the messages ``m``."""
    if isinstance(part, str):
        return part
    text = m[part.msg].content if part.kind == "c" else (m[part.msg].name or "")
    return _STRIP[part.strip](text)  # type: ignore[no-any-return]


class Joined:
    """``m → [''.join(parts) for parts in groups]`` over the messages ``m``. The first calls walk the
    parts; from the ``COMPILE_AFTER + 1``-th, one generated function does it (compiling costs about
    a millisecond a hundred parts, which a shape seen once or twice would never earn back). Both
    give the same strings."""

    def __init__(self, groups: list[list[str | Slot]]):
        self.groups = groups
        self.calls = 0
        self.fn: Any = None

    def __call__(self, m: Sequence[Message]) -> list[str]:
        if self.fn is None:
            self.calls += 1
            if self.calls <= COMPILE_AFTER:
                return ["".join([value(p, m) for p in group]) for group in self.groups]
            exprs = [" + ".join(map(expr, group)) if len(group) <= JOIN_OVER else f"''.join(({', '.join(map(expr, group))},))"
                     for group in self.groups]  # fmt: skip
            self.fn = eval(f"lambda m: [{', '.join(e or repr('') for e in exprs)}]")  # literals are repr()'d: nothing from a chat is code
        return self.fn(m)  # type: ignore[no-any-return]


def expr(part: str | Slot) -> str:
    """A run's part as a Python expression over ``m`` (the messages): a literal, or a content."""
    if isinstance(part, str):
        return repr(part)
    value = f"m[{part.msg}].content" if part.kind == "c" else f"(m[{part.msg}].name or '')"
    return value + {"": "", "l": ".lstrip()", "r": ".rstrip()", "lr": ".strip()"}[part.strip]
