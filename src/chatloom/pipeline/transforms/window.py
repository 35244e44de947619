"""The window transform: one example per assistant turn. It emits several conversations for one,
so it runs its own loop (``run``) instead of ``apply``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from msgspec.structs import replace
from pydantic import Field

from ...model import Conversation
from ..base import Drop, Params, Transform


class WindowParams(Params):
    min_context: int = Field(1, ge=0)  # turns before the assistant turn


class Window(Transform[WindowParams]):
    """One example per assistant turn: the conversation up to and including it (for prompt /
    generation formats such as metharme)."""

    name = "window"
    summary = "one example per assistant turn (the conversation up to it)"
    drop_reason = "no assistant turn to window"

    def expand(self, conv: Conversation) -> list[Conversation]:
        out = []
        for k, m in enumerate(conv.messages):
            if m.role == "assistant" and sum(x.role != "system" for x in conv.messages[:k]) >= self.params.min_context:
                out.append(replace(conv, id=f"{conv.id}@{k}", messages=conv.messages[: k + 1]))
        self.stats["windows"] += len(out)
        return out

    def run(self, convs: Iterable[Conversation], drop: Drop) -> Iterator[Conversation]:
        for conv in convs:
            self.seen += 1
            start = time.perf_counter()
            windows = self.expand(conv)
            self.seconds += time.perf_counter() - start
            if not windows:
                drop(conv, self.drop_reason)
                continue
            self.kept += 1
            yield from windows
