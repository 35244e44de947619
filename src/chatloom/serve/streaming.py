"""Streaming a reply: the text the worker thread queues for it as it generates (``batching``),
cut at stop strings, joined into pieces of at most every 20 ms.

    stream = gen.stream(prompt_ids, Sampling(seed=1))
    for piece in stream: print(piece, end="")   # the first piece at once, then what came each 20 ms
    stream.result                               # the whole Completion, once the loop ends
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .batching import Job
    from .generation import Completion

# A stream sends what came in this long as one piece: one server-sent event a token cost
# tiny:llama 40% of its speed through the server (bench/serve.py), and a person sees no difference.
INTERVAL = 0.02


def cut_at_stop(text: str, stops: list[str]) -> str | None:
    """``text`` up to its earliest stop string, or None when it holds none."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[: min(found)] if found else None


class StopCutter:
    """Cuts streamed text at the first stop string, holding back what could be the start of one."""

    def __init__(self, stops: list[str]):
        self.stops = stops
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.buffer = ""
        self.done = False

    def feed(self, text: str) -> str:
        if self.done:
            return ""
        self.buffer += text
        cut = cut_at_stop(self.buffer, self.stops)
        if cut is not None:
            self.done = True
            out, self.buffer = cut, ""
            return out
        if len(self.buffer) <= self.hold:
            return ""
        keep = len(self.buffer) - self.hold
        out, self.buffer = self.buffer[:keep], self.buffer[keep:]
        return out

    def flush(self) -> str:
        out, self.buffer = ("" if self.done else self.buffer), ""
        return out


class Stream:
    """Iterates a reply's text while the worker generates it (``batching``); ``.result`` holds the
    whole ``Completion`` once the loop ends. Closing the iterator early (or setting the job's
    ``cancel``) stops the reply at its next token."""

    def __init__(self, job: Job):
        self.job = job
        self.cancel = job.cancel
        self.result: Completion | None = None

    def _pieces(self) -> Iterator[str]:
        """The job's text: the first piece at once, then what queued up in each ``INTERVAL``
        joined into one piece. A fast model's reader (a server writing an event a piece) then does
        a few dozen writes a second instead of one a token, and is not woken by every token; a slow
        model's tokens still go one by one."""
        q = self.job.stream
        assert q is not None
        due = 0.0  # when the next piece may go: the first goes at once
        while True:
            piece = q.get()
            if piece is None:
                return
            time.sleep(max(due - time.monotonic(), 0.0))
            parts, ended = [piece], False
            while not ended:
                try:
                    more = q.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    ended = True
                else:
                    parts.append(more)
            yield "".join(parts)
            if ended:
                return
            due = time.monotonic() + INTERVAL

    def __iter__(self) -> Iterator[str]:
        cutter = StopCutter(self.job.sampling.stop)
        sent = ""
        try:
            for piece in self._pieces():
                out = cutter.feed(piece)
                if out:
                    sent += out
                    yield out
            self.job.done.wait()
            if self.job.error is not None:
                raise self.job.error
            [self.result] = self.job.results
            rest = self.result.text[len(sent):] if self.result.text.startswith(sent) else cutter.flush()
            if rest:
                yield rest
        finally:
            if not self.job.done.is_set():  # the reader left early: the reply stops at its next token
                self.cancel.set()
