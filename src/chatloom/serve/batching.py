"""One worker thread runs the model; requests that wait together run as one batch.

    batcher = Batcher(gen)                      # gen: a Generator (model, tokenizer, eos, pad)
    job = Job(prompt_ids, sampling, rows=1, limit=64)
    batcher.submit(job); job.done.wait(); job.results

Each request is a ``Job`` of one or more rows (``n``, ``best_of``). The worker takes the oldest
job, and with it every waiting job that samples alike (the same temperature, top-p, top-k and
repetition penalty, and no seed), up to ``max_batch`` rows, and runs one left-padded ``generate``
for them all. A job with a seed runs alone, so that its reply does not depend on who else was
asking. Jobs that arrive while a batch runs wait for the next one (no continuous batching).

A ``_Rows`` hook, called by ``generate`` after every step, follows each row: it keeps the row's
tokens, streams its text to the job's queue, and ends the row at its end token, its stop string,
its own ``max_tokens`` or its cancel event (so rows with different limits and stops share a
batch, and a client that leaves ends only its own row). A job is done, and its stream ends, as
soon as its rows are; one that asked for log-probabilities waits for the batch's logits.
"""

from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .streaming import cut_at_stop

if TYPE_CHECKING:
    from .generation import Completion, Generator, Sampling

MAX_BATCH = 8


@dataclass(eq=False)
class Job:
    prompt_ids: list[int]
    sampling: Sampling
    rows: int  # n, or best_of's candidates
    limit: int  # new tokens at most
    scores: bool = False  # keep the logits (logprobs, best_of)
    cancel: threading.Event = field(default_factory=threading.Event)
    stream: queue.Queue[str | None] | None = None  # text pieces, then None
    results: list[Completion] = field(default_factory=list)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def key(self) -> tuple[float, ...] | None:
        """Jobs with the same key may share a batch; None: this one runs alone."""
        s = self.sampling
        if s.seed is not None:
            return None
        return (s.temperature, s.top_p, s.top_k, s.repetition_penalty)

    def finish(self, results: list[Completion] | None = None, error: BaseException | None = None) -> None:
        if self.done.is_set():
            return
        self.results, self.error = results or [], error
        if self.stream is not None:
            self.stream.put(None)
        self.done.set()


@dataclass(eq=False)
class _Row:
    job: Job
    ids: list[int] = field(default_factory=list)
    reason: str | None = None  # set when the row ends: stop | length | cancelled
    text: str = ""  # streamed (or checked for stops) so far
    cache: list[int] = field(default_factory=list)  # tokens since the last newline (decoded together)
    cache_sent: int = 0


class _Rows:
    """A stopping criterion that follows each row after each step (see the module's docstring)."""

    def __init__(self, gen: Generator, rows: list[_Row]):
        self.gen, self.rows = gen, rows

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        last = input_ids[:, -1].tolist()
        for row, token in zip(self.rows, last):
            if row.reason is None:
                self._step(row, token)
        return torch.tensor([row.reason is not None for row in self.rows], dtype=torch.bool, device=input_ids.device)

    def _step(self, row: _Row, token: int) -> None:
        job = row.job
        row.ids.append(token)
        if token in self.gen.eos:
            self._end(row, "stop")
            return
        if job.stream is not None or job.sampling.stop:
            self._follow_text(row, token)
            if job.sampling.stop and cut_at_stop(row.text, job.sampling.stop) is not None:
                self._end(row, "stop")
                return
        if job.cancel.is_set():
            self._end(row, "cancelled")
        elif len(row.ids) >= job.limit:
            self._end(row, "length")

    def _follow_text(self, row: _Row, token: int) -> None:
        """The row's new text, decoded as transformers' TextIteratorStreamer does (the tokens since
        the last newline together; nothing while a character is incomplete)."""
        row.cache.append(token)
        text = self.gen.tok.decode(row.cache, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return
        new = text[row.cache_sent:]
        if text.endswith("\n"):
            row.cache, row.cache_sent = [], 0
        else:
            row.cache_sent = len(text)
        if new:
            row.text += new
            if row.job.stream is not None:
                row.job.stream.put(new)

    def _end(self, row: _Row, reason: str) -> None:
        row.reason = reason
        job = row.job
        mine = [r for r in self.rows if r.job is job]
        if not job.scores and all(r.reason is not None for r in mine):
            job.finish([self.gen.completion(r.ids, r.reason, job) for r in mine])


class Batcher:
    """The worker thread and its queue of jobs."""

    def __init__(self, gen: Generator, max_batch: int = MAX_BATCH):
        self.gen, self.max_batch = gen, max_batch
        self.pending: list[Job] = []
        self.cond = threading.Condition()
        self.running = 0  # jobs in the batch that runs now
        self.current: list[Job] = []
        self.closing = False
        self.cancelled = 0  # jobs ended by their cancel event, since the start
        self.batches = 0
        self._thread: threading.Thread | None = None

    def submit(self, job: Job) -> Job:
        with self.cond:
            if self.closing:
                job.cancel.set()
            self.pending.append(job)
            if self._thread is None:
                # not a daemon: at exit the interpreter waits for the batch that runs (cancelled jobs end at
                # their next token), rather than tearing torch down under it
                self._thread = threading.Thread(target=self._loop, daemon=False, name="chatloom-generate")
                self._thread.start()
        return job

    def cancel_all(self) -> None:
        """Stop every job, running or waiting, and those submitted from now on (the server is
        shutting down)."""
        with self.cond:
            self.closing = True
            for job in self.current + self.pending:
                job.cancel.set()

    @property
    def waiting(self) -> int:
        return len(self.pending)

    def _loop(self) -> None:
        """Run batches while jobs wait, then end: no thread that ran torch outlives its work (one
        left idle at the interpreter's exit can abort it: "terminate called without an active
        exception"); the next job starts a new one."""
        while True:
            with self.cond:
                if not self.pending:
                    self._thread = None
                    return
                batch = self._take()
                self.running, self.current = len(batch), batch
            try:
                if batch:
                    self._run(batch)
            finally:
                with self.cond:
                    self.running, self.current = 0, []

    def _take(self) -> list[Job]:
        """The oldest live job and the waiting jobs that can join it (called under the lock)."""
        while self.pending:
            first = self.pending.pop(0)
            if first.cancel.is_set():
                first.finish([self.gen.completion([], "cancelled", first) for _ in range(first.rows)])
                self.cancelled += 1
                continue
            batch, rows = [first], first.rows
            width, limit = len(first.prompt_ids), first.limit
            if first.key() is not None:
                for job in list(self.pending):
                    w, lim = max(width, len(job.prompt_ids)), max(limit, job.limit)
                    if (job.key() == first.key() and not job.cancel.is_set() and rows + job.rows <= self.max_batch
                            and w + lim <= self.gen.context):  # a padded row's positions run to width + limit
                        batch.append(job)
                        self.pending.remove(job)
                        rows, width, limit = rows + job.rows, w, lim
            return batch
        return []

    def _run(self, batch: list[Job]) -> None:
        import torch

        rows = [_Row(job) for job in batch for _ in range(job.rows)]
        try:
            prompts = [r.job.prompt_ids for r in rows]
            width = max(len(p) for p in prompts)
            device = self.gen.model.device
            x = torch.full((len(rows), width), self.gen.pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, p in enumerate(prompts):  # left-padded: every row's next token is at the same place
                x[i, width - len(p):] = torch.tensor(p)
                mask[i, width - len(p):] = 1
            first = batch[0].sampling
            if first.seed is not None:
                torch.manual_seed(first.seed)
            scores = any(job.scores for job in batch)
            kw = self.gen.generate_kwargs(first, max(job.limit for job in batch), scores, _Rows(self.gen, rows))
            with torch.inference_mode():
                out = self.gen.model.generate(x.to(device), attention_mask=mask.to(device), **kw)
            self.batches += 1
            for job in batch:
                mine = [(i, r) for i, r in enumerate(rows) if r.job is job]
                if not job.done.is_set():  # a job with scores, or rows generate ended (its own max length)
                    done = [self.gen.completion(r.ids, r.reason or "length", job) for _, r in mine]
                    if scores and out.logits is not None:
                        for (i, _), c in zip(mine, done):
                            self.gen.score(c, out.logits, i, job.sampling)
                    job.finish(done)
                if any(r.reason == "cancelled" for _, r in mine):
                    self.cancelled += 1
        except BaseException as err:  # every job of the batch gets the error (the worker goes on)
            for job in batch:
                job.finish(error=err)


def best(completions: list[Completion], n: int) -> list[Completion]:
    """The ``n`` with the highest mean log-probability per token."""
    return sorted(completions, key=lambda c: -(c.mean_logprob if c.mean_logprob is not None else -math.inf))[:n]
