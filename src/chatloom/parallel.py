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
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, wait
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
                 initargs: tuple[Any, ...] = ()) -> Iterator[ProcessPoolExecutor | None]:
    """``workers`` processes for :func:`ordered_map`, started now and ended when the block ends;
    None for one worker or fewer. ``context``: the start method (``"spawn"`` where the parent runs
    threads that ``fork`` would copy half-way, as tiktoken's do); ``initializer(*initargs)`` runs
    once in each."""
    if workers <= 1:
        yield None
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(context), initializer=_worker_start,
                               initargs=(os.getpid(), initializer, initargs))  # fmt: skip
    try:
        with _main_script_hidden():
            for _ in range(workers):  # start every worker now, while the caller prepares the first jobs
                pool.submit(int)  # (the executor starts one for each job submitted while none is idle)
        yield pool
    finally:
        # the results are in (ordered_map waits for a job that has started even when its result is
        # no longer wanted): end the workers at once, as Python 3.14's terminate_workers() does; a
        # spawned worker would spend ~0.1 s tearing down its interpreter
        for process in list((pool._processes or {}).values()):
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """While workers start: a spawned worker runs the parent's ``__main__`` script again before
    anything else (``python -m`` modules excepted), and the ``chatloom`` console script imports the
    whole CLI (0.2 s of every worker's start); the workers run only functions of chatloom's own
    modules, imported by name, so they are not shown the script."""
    import sys

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def _worker_start(parent: int, initializer: Callable[..., object] | None, initargs: tuple[Any, ...]) -> None:
    """A pool worker's start: it ends itself once the process that started it is gone (a chatloom
    that was killed must not leave its workers waiting for ever on a queue nobody feeds: they
    hold its other end themselves), then runs the caller's ``initializer``."""
    threading.Thread(target=_end_with, args=(parent,), name="chatloom-parent-watch", daemon=True).start()
    if initializer is not None:
        initializer(*initargs)


def _end_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def ordered_map(fn: Callable[[T], R], jobs: Iterable[T], pool: Executor | None = None, *,
                window: int | None = None) -> Iterator[R]:
    """``map(fn, jobs)`` on ``pool``, results in the jobs' order; without a pool, in this thread.

    At most ``window`` jobs are in flight (default: two per worker), so memory stays flat however
    long ``jobs`` is. The jobs are drawn in the caller's thread, one as each result is taken:
    ``multiprocessing.Pool.imap`` draws them in the pool's own task thread instead, which
    deadlocks when drawing a job needs the results of another map on the same pool (the pipeline
    chains a segment of steps after a segment, both on one pool). An exception raised by ``fn``
    is raised here, where its result would have been; the jobs not started yet are then
    cancelled, as they are when the caller stops early.
    """
    if pool is None:
        yield from map(fn, jobs)
        return
    if window is None:
        window = 2 * max(1, getattr(pool, "_max_workers", 1))
    pending: collections.deque[Future[R]] = collections.deque()
    try:
        for job in jobs:
            pending.append(pool.submit(fn, job))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        # Stopped early (an error, the caller gone): cancel what has not started, and wait for what
        # has, its result dropped, so that no worker is still sending a result when the pool ends
        # its workers (a worker killed half-way through sending a large result leaves the
        # executor waiting for the rest of it, for ever).
        for future in pending:
            future.cancel()
        wait(pending)
