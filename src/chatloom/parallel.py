"""Iterating in parallel, with bounded memory: one place for what the import, the pipeline and
tokenize each need.

- ``batched(items, n)``: an iterable in lists of ``n`` (itertools.batched is Python 3.12+).
- ``prefetch(items, depth)``: run an iterator one step ahead in a thread, with a bounded queue.
- ``ordered_map(fn, jobs, pool)``: ``map`` on a pool of processes, results in the jobs' order,
  with a bounded number of jobs in flight; ``process_pool(workers)`` opens the pool (None for one
  worker: the map then runs in the caller's thread). The pipeline, MinHash and tokenize use it.

Bulk import parses and digests the next batch while SQLite writes the current one: sqlite3
releases the GIL while it steps, so on two cores the two overlap. The queue is bounded, so memory
stays flat; an exception in the producer is raised in the consumer, at the same place in the
sequence; a consumer that stops early stops the producer.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.pool import AsyncResult, Pool
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
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


@contextlib.contextmanager
def process_pool(workers: int, *, context: str | None = None, initializer: Callable[..., object] | None = None,
                 initargs: tuple[Any, ...] = ()) -> Iterator[Pool | None]:
    """``workers`` processes for :func:`ordered_map`, started now and ended when the block ends;
    None for one worker or fewer. ``context``: the start method (``"spawn"`` where the parent runs
    threads that ``fork`` would copy half-way, as tiktoken's do); ``initializer(*initargs)`` runs
    once in each. (A ``multiprocessing`` pool rather than a ``ProcessPoolExecutor``: it ends its
    workers at once, where the executor waits for each to finish tearing down its interpreter.)"""
    if workers <= 1:
        yield None
        return
    with multiprocessing.get_context(context).Pool(workers, initializer=initializer, initargs=initargs) as pool:
        yield pool


def ordered_map(fn: Callable[[T], R], jobs: Iterable[T], pool: Pool | None = None, *,
                window: int | None = None) -> Iterator[R]:
    """``map(fn, jobs)`` on ``pool``, results in the jobs' order; without a pool, in this thread.

    At most ``window`` jobs are in flight (default: two per worker), so memory stays flat however
    long ``jobs`` is. The jobs are drawn in the caller's thread, one as each result is taken:
    ``Pool.imap`` draws them in the pool's own task thread instead, which deadlocks when drawing a
    job needs the results of another map on the same pool (the pipeline chains a segment of steps
    after a segment, both on one pool). An exception raised by ``fn`` is raised here, where its
    result would have been.
    """
    if pool is None:
        yield from map(fn, jobs)
        return
    if window is None:
        window = 2 * max(1, getattr(pool, "_processes", 1))
    pending: collections.deque[AsyncResult[R]] = collections.deque()
    for job in jobs:
        pending.append(pool.apply_async(fn, (job,)))
        if len(pending) >= window:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()
