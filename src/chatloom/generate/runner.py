"""Running a generation job: its items through ``concurrency`` workers, each request journaled.

A job gives items (one conversation each) and, for each item, a coroutine that makes its requests
through ``Context.call``. ``call`` is where the journal and the endpoint meet:

- a request already done in the journal is not sent again: its stored response is returned;
- otherwise it is sent (``Client.complete``: rate limits, retries) and its completion recorded
  together with what it writes (``write(store, response)``), in one transaction;
- a request that failed for good is recorded ``failed`` with its error, and the item stops there;
- an empty reply (no text, no tool call) is a failure, never an empty result.

Stopping (``install_stop``): the first Ctrl+C sets ``Context.stop``, so the requests in flight
finish and no more start; the second cancels them, their rows staying ``pending``. ``kill -9``
leaves the same: a request is done with its conversation or pending without one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import ChatloomError
from ..store import Completion, PlannedRequest, Store
from .client import BudgetReached, Client

#: ``write(store, response)``: what a completion writes, in its transaction; the conversation's id
Write = Callable[[Store, dict[str, Any]], str | None]


class Stopped(Exception):
    """The run is stopping (Ctrl+C): no new request is sent."""


class ItemFailed(ChatloomError):
    """Raised by a write when the completion cannot be used (the conversation changed since the
    request was planned, the reply does not fit): the request is recorded failed with this text."""


@dataclass
class Item:
    """One conversation to make or change: its key (deterministic from the input) and what the
    job makes it from."""

    key: str
    data: Any = None


class Job(Protocol):
    kind: str

    async def run_item(self, item: Item, ctx: Context) -> None: ...


@dataclass
class Stats:
    """What a run has done so far (the progress bar's fields and the summary)."""

    done: int = 0
    failed: int = 0
    left: int = 0
    requests: int = 0
    retries: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    stopped: str | None = None  # why the run stopped before its end: "interrupted", "budget"

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


def choice_text(response: dict[str, Any], i: int = 0) -> tuple[str, list[dict[str, Any]] | None]:
    """(text, tool calls) of choice ``i``."""
    choices = response.get("choices") or []
    if i >= len(choices):
        return "", None
    message = choices[i].get("message") or {}
    return str(message.get("content") or ""), message.get("tool_calls") or None


class Committer:
    """Records completions a few at a time: the completions that come in during one turn of the
    event loop are committed together at the next (``loop.call_soon``), in one transaction
    (``gen_done_many``), each still atomic with its conversation. ``done`` returns once its own
    is committed, so nothing changes for the caller but the cost: one commit for many, where at
    dozens of requests in flight a commit each made the journal a fifth of the run
    (bench/generate.py). (Waiting a few milliseconds for more made batches larger and the run
    slower: every item waited too.)"""

    def __init__(self, store: Store, run: str):
        self.store, self.run = store, run
        self.queue: list[tuple[Completion, asyncio.Future[str | None | ChatloomError]]] = []
        self.scheduled = False

    async def done(self, completion: Completion) -> str | None | ChatloomError:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str | None | ChatloomError] = loop.create_future()
        self.queue.append((completion, future))
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self.flush)
        return await asyncio.shield(future)  # a cancelled caller leaves its completion to be recorded

    def flush(self) -> None:
        """Commit what is queued now (also at the end of a run, however it ends)."""
        self.scheduled = False
        batch, self.queue = self.queue, []
        if not batch:
            return
        try:
            results: list[str | None | ChatloomError] = self.store.gen_done_many(self.run, [c for c, _ in batch])
        except Exception as err:  # noqa: BLE001 - every waiter hears it (a StoreError: the disk, the file)
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def close(self) -> None:
        self.flush()


class Context:
    """What an item's coroutine uses: ``call`` a request, the store and the run."""

    def __init__(self, store: Store, run: str, client: Client | None, stats: Stats, *, budget_tokens: int | None,
                 retry_failed: bool, on_update: Callable[[Stats], None]):  # fmt: skip
        self.stop = asyncio.Event()
        self.store = store
        self.run = run
        self.client = client
        self.stats = stats
        self.budget_tokens = budget_tokens
        self.retry_failed = retry_failed
        self.on_update = on_update
        self.used_tokens = store.gen_usage(run)["total_tokens"]
        self.committer = Committer(store, run)
        self.finished: dict[str, str] = {}  # item → "done" (its conversation written) or "failed"

    async def call(self, planned: PlannedRequest, write: Write | None = None) -> dict[str, Any] | None:
        """The response to ``planned``: from the journal when done, else from the endpoint
        (recorded with ``write``'s change). None when it failed (recorded ``failed``)."""
        store = self.store
        row = store.gen_row(self.run, planned.key)
        if row is None:
            store.gen_plan(self.run, [planned])
        elif row.status == "done":
            assert row.response is not None
            return row.response
        elif row.status == "failed" and not self.retry_failed:
            return None
        elif row.status == "submitted":  # in a batch: 'generate collect' fetches it
            return None
        if self.stop.is_set():
            raise Stopped
        if self.budget_tokens is not None and self.used_tokens >= self.budget_tokens:
            raise BudgetReached
        assert self.client is not None
        outcome = await self.client.complete(planned.request)
        if outcome.stopped:
            raise Stopped
        self.stats.requests += 1
        if outcome.response is None:
            return self._failed(planned, outcome.error or "failed", outcome.attempts)
        tokens = int((outcome.usage or {}).get("total_tokens") or 0)
        self.used_tokens += tokens
        self.stats.tokens += tokens
        text, calls = choice_text(outcome.response)
        if not text.strip() and not calls:
            return self._failed(planned, "the reply was empty", outcome.attempts, outcome.response)
        response = outcome.response
        done = Completion(planned.key, response, outcome.usage, outcome.attempts,
                          None if write is None else lambda s: write(s, response))  # fmt: skip
        result = await self.committer.done(done)
        if isinstance(result, ChatloomError):  # the write refused it (ItemFailed): taken back alone
            return self._failed(planned, str(result), outcome.attempts, response)
        if result is not None:
            self.finished[planned.item] = "done"
        return response

    def _failed(self, planned: PlannedRequest, error: str, attempts: int, response: dict[str, Any] | None = None) -> None:
        self.store.gen_fail(self.run, planned.key, error, attempts=attempts, response=response)
        self.finished[planned.item] = "failed"


async def run_items(job: Job, items: Sequence[Item], ctx: Context, concurrency: int) -> None:
    """Run ``items`` through ``concurrency`` workers until all are through or ``stop`` is set
    (what is in flight finishes; nothing new starts). A ``Fatal`` error cancels the rest and is
    raised; so is a cancellation (the rows in flight stay pending)."""
    queue: asyncio.Queue[Item] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    stats, stop = ctx.stats, ctx.stop

    async def worker() -> None:
        while not stop.is_set():
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                await job.run_item(item, ctx)
            except BudgetReached:
                stats.stopped = "budget"
                stop.set()
                return
            except Stopped:
                return
            state = ctx.finished.pop(item.key, None)  # what this run's requests did to it
            if state == "failed":
                stats.failed += 1
            elif state == "done":
                stats.done += 1
            stats.left -= 1
            ctx.on_update(stats)

    tasks = [asyncio.create_task(worker()) for _ in range(max(1, min(concurrency, len(items))))]
    try:
        await _gather_or_fail(tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _gather_or_fail(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for all; the first exception (a Fatal) cancels the others and is raised."""
    pending: set[asyncio.Task[None]] = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]


def install_stop(stop: asyncio.Event, main: asyncio.Task[Any], stats: Stats) -> Callable[[], None]:
    """SIGINT: the first stops starting new requests (those in flight finish), the second cancels
    them. Returns the function that removes the handler."""
    import signal

    loop = asyncio.get_running_loop()

    def on_sigint() -> None:
        stats.stopped = "interrupted"
        if stop.is_set():
            main.cancel()
        stop.set()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
        return lambda: None
    return lambda: loop.remove_signal_handler(signal.SIGINT)


async def run_job(job: Job, items: Sequence[Item], ctx: Context, concurrency: int) -> Stats:
    """Run ``items`` with Ctrl+C handled (see ``install_stop``); the client is closed at the end."""
    main = asyncio.current_task()
    assert main is not None
    remove = install_stop(ctx.stop, main, ctx.stats)
    try:
        await run_items(job, items, ctx, concurrency)
    except asyncio.CancelledError:
        ctx.stats.stopped = "interrupted"
    finally:
        remove()
        await ctx.committer.close()  # what was answered is recorded, however the run ends
        if ctx.client is not None:
            await ctx.client.close()
    return ctx.stats
