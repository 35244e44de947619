"""Iterating in parallel, with bounded memory: one place for what the import, the pipeline and
tokenize each need.

- ``batched(items, n)``: an iterable in lists of ``n`` (itertools.batched is Python 3.12+).
- ``prefetch(items, depth)``: run an iterator one step ahead in a thread, with a bounded queue.

Bulk import parses and digests the next batch while SQLite writes the current one: sqlite3
releases the GIL while it steps, so on two cores the two overlap. The queue is bounded, so memory
stays flat; an exception in the producer is raised in the consumer, at the same place in the
sequence; a consumer that stops early stops the producer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def batched(items: Iterable[T], n: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                q.put(item)  # blocks while the queue is full: no polling, no GIL taken
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as exc:  # handed to the consumer
            q.put(_Raised(exc))

    thread = threading.Thread(target=produce, name="chatloom-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()
