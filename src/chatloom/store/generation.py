"""The generation journal (tables ``gen_runs``, ``gen_requests``): one row per request that
``chatloom generate`` makes, so that a run stopped by Ctrl+C, a crash or ``kill -9`` and run
again sends only what is not done.

    store.gen_run("qa-1a2b3c4d", "qa", params)               # the run, made once
    store.gen_plan("qa-1a2b3c4d", [PlannedRequest(...), …])   # rows not there yet, pending
    for row in store.gen_todo("qa-1a2b3c4d"): …               # pending (and, asked, failed) rows
    store.gen_done(run, key, response, usage, attempts=1, write=lambda s: s.put(conv))
    store.gen_fail(run, key, "HTTP 400: context too long", attempts=1)

A request's completion and the conversation it makes are one transaction (``gen_done``): a
kill leaves the request pending and no conversation, or both done; never a conversation whose
request would be sent again, never a done request without its conversation. A failed request
stays ``failed`` with its error until it is retried: never an empty result. The rows hold the
request body as it was sent (messages, model, parameters), never a key: the key lives in
chatloom's key store and is handed to the client only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import ChatloomError, NotFoundError
from .edit import Edit
from .rows import now

STATUSES = ("pending", "submitted", "done", "failed")
_COLUMNS = "run, key, item, seq, request_hash, request, status, attempts, response, usage, error, batch, conv, updated_at"


@dataclass
class PlannedRequest:
    """A request a run is to make: its key (deterministic from the input), the item (the
    conversation) it serves, and its body."""

    key: str
    item: str
    request_hash: str
    request: dict[str, Any]


@dataclass
class GenRow:
    """One row of ``gen_requests``, JSON columns decoded."""

    run: str
    key: str
    item: str
    seq: int
    request_hash: str
    request: dict[str, Any]
    status: str
    attempts: int
    response: dict[str, Any] | None
    usage: dict[str, Any] | None
    error: str | None
    batch: str | None
    conv: str | None
    updated_at: str


@dataclass
class Completion:
    """A request's answer, to be recorded with what it writes (``gen_done_many``)."""

    key: str
    response: dict[str, Any]
    usage: dict[str, Any] | None
    attempts: int
    write: Callable[[Generations], str | None] | None = None


@dataclass
class PlanCounts:
    """What planning found: rows added, rows already done (not sent again), and done rows whose
    request is no longer what this run would send (a template or the input changed)."""

    added: int = 0
    done: int = 0
    stale_done: int = 0


def _row(values: Sequence[Any]) -> GenRow:
    (run, key, item, seq, request_hash, request, status, attempts, response, usage, error, batch, conv, at) = values
    return GenRow(run, key, item, seq, request_hash, orjson.loads(request), status, attempts,
                  orjson.loads(response) if response else None, orjson.loads(usage) if usage else None,
                  error, batch, conv, at)  # fmt: skip


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


class Generations(Edit):
    """The generation journal of ``Store``."""

    def gen_run(self, name: str, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run ``name``'s params: made now with ``params`` when new, else as first recorded (a run
        of another kind under the same name is refused)."""
        with self._write():
            found = self.db.execute("SELECT kind, params FROM gen_runs WHERE name = ?", (name,)).fetchone()
            if found is None:
                at = now()
                self.db.execute("INSERT INTO gen_runs VALUES (?, ?, ?, ?, ?)", (name, kind, _json(params), at, at))
                return params
            if found[0] != kind:
                raise ChatloomError(f"run {name} is a {found[0]} run, not {kind}; give another --run NAME")
            return orjson.loads(found[1])

    def gen_run_info(self, name: str) -> tuple[str, dict[str, Any]]:
        """(kind, params) of run ``name``."""
        found = self.db.execute("SELECT kind, params FROM gen_runs WHERE name = ?", (name,)).fetchone()
        if found is None:
            raise NotFoundError(f"no generation run {name} in {self.path}; 'chatloom generate status' lists them")
        return found[0], orjson.loads(found[1])

    def gen_runs(self) -> list[dict[str, Any]]:
        """Every run with its request counts by status, newest first."""
        with self._reading():
            runs = self.db.execute("SELECT name, kind, created_at, updated_at FROM gen_runs ORDER BY created_at DESC, name").fetchall()
            counts: dict[str, dict[str, int]] = {}
            for run, status, n in self.db.execute("SELECT run, status, count(*) FROM gen_requests GROUP BY run, status"):
                counts.setdefault(run, {})[status] = n
        return [{"run": name, "kind": kind, "created_at": c, "updated_at": u, **{s: counts.get(name, {}).get(s, 0) for s in STATUSES}}
                for name, kind, c, u in runs]  # fmt: skip

    def gen_plan(self, run: str, planned: Iterable[PlannedRequest]) -> PlanCounts:
        """Add the requests run ``run`` lacks (pending), in one transaction. A pending or failed
        row takes the body this run would send now; a done or submitted one is kept as it is."""
        counts = PlanCounts()
        at = now()
        with self._write():
            (seq,) = self.db.execute("SELECT coalesce(max(seq), -1) + 1 FROM gen_requests WHERE run = ?", (run,)).fetchone()
            for p in planned:
                found = self.db.execute("SELECT status, request_hash FROM gen_requests WHERE run = ? AND key = ?", (run, p.key)).fetchone()
                if found is None:
                    self.db.execute(
                        "INSERT INTO gen_requests (run, key, item, seq, request_hash, request, status, updated_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
                        (run, p.key, p.item, seq, p.request_hash, _json(p.request), at),
                    )
                    seq += 1
                    counts.added += 1
                elif found[0] in ("done", "submitted"):
                    counts.done += found[0] == "done"
                    counts.stale_done += found[0] == "done" and found[1] != p.request_hash
                elif found[1] != p.request_hash:
                    self.db.execute("UPDATE gen_requests SET request_hash = ?, request = ?, updated_at = ? WHERE run = ? AND key = ?",
                                    (p.request_hash, _json(p.request), at, run, p.key))  # fmt: skip
            self.db.execute("UPDATE gen_runs SET updated_at = ? WHERE name = ?", (at, run))
        return counts

    def gen_rows(self, run: str, *, status: str | None = None) -> list[GenRow]:
        """Run ``run``'s rows in planning order, of one status if asked."""
        sql, args = f"SELECT {_COLUMNS} FROM gen_requests WHERE run = ?", [run]
        if status is not None:
            sql, args = sql + " AND status = ?", [*args, status]
        return [_row(r) for r in self.db.execute(sql + " ORDER BY seq", args)]

    def gen_item_states(self, run: str) -> dict[str, str]:
        """Each item of run ``run`` and how it stands, from its requests' rows: ``done`` once one
        of them wrote its conversation, else ``failed`` if one failed, else ``submitted`` if one
        is in a batch, else ``pending``. Counted in SQL: no request or response is read."""
        states = {}
        for item, done, failed, submitted in self.db.execute(
            "SELECT item, max(conv IS NOT NULL), max(status = 'failed'), max(status = 'submitted') "
            "FROM gen_requests WHERE run = ? GROUP BY item",
            (run,),
        ):
            states[item] = "done" if done else "failed" if failed else "submitted" if submitted else "pending"
        return states

    def gen_row(self, run: str, key: str) -> GenRow | None:
        found = self.db.execute(f"SELECT {_COLUMNS} FROM gen_requests WHERE run = ? AND key = ?", (run, key)).fetchone()
        return None if found is None else _row(found)

    def gen_done(self, run: str, key: str, response: dict[str, Any], usage: dict[str, Any] | None, *, attempts: int,
                 write: Callable[[Generations], str | None] | None = None) -> str | None:  # fmt: skip
        """Record request ``key`` done and, in the same transaction, what its completion writes
        (``write(store)``: a conversation's ``put``; returns the conversation's id). A request
        already done is left as it is (its conversation id is returned)."""
        with self._write():
            found = self.db.execute("SELECT status, conv FROM gen_requests WHERE run = ? AND key = ?", (run, key)).fetchone()
            if found is None:
                raise NotFoundError(f"run {run} has no request {key}")
            if found[0] == "done":
                return found[1]
            conv = write(self) if write is not None else None
            self.db.execute(
                "UPDATE gen_requests SET status = 'done', attempts = ?, response = ?, usage = ?, error = NULL, conv = ?, "
                "updated_at = ? WHERE run = ? AND key = ?",
                (attempts, _json(response), _json(usage), conv, now(), run, key),
            )
            return conv

    def gen_done_many(self, run: str, completions: Sequence[Completion]) -> list[str | None | ChatloomError]:
        """Several ``gen_done`` in one transaction (one commit for all: the journal's cost at many
        requests in flight), each in a savepoint of its own: one whose write raises a
        ``ChatloomError`` is taken back alone, and its error is returned in its place."""
        out: list[str | None | ChatloomError] = []
        with self._write():
            for c in completions:
                self.db.execute("SAVEPOINT gen_done")
                try:
                    out.append(self.gen_done(run, c.key, c.response, c.usage, attempts=c.attempts, write=c.write))
                except ChatloomError as err:
                    self.db.execute("ROLLBACK TO gen_done")
                    out.append(err)
                self.db.execute("RELEASE gen_done")
        return out

    def gen_fail(self, run: str, key: str, error: str, *, attempts: int, response: dict[str, Any] | None = None) -> None:
        """Record request ``key`` failed with ``error`` (what the server or the check said)."""
        with self._write():
            self.db.execute(
                "UPDATE gen_requests SET status = 'failed', attempts = ?, error = ?, response = coalesce(?, response), "
                "updated_at = ? WHERE run = ? AND key = ? AND status != 'done'",
                (attempts, error, _json(response), now(), run, key),
            )

    def gen_submitted(self, run: str, keys: Sequence[str], batch: str) -> None:
        """Requests ``keys`` went to batch ``batch``: they wait for ``chatloom generate collect``."""
        with self._write():
            self.db.executemany(
                "UPDATE gen_requests SET status = 'submitted', batch = ?, error = NULL, updated_at = ? "
                "WHERE run = ? AND key = ? AND status != 'done'",
                [(batch, now(), run, k) for k in keys],
            )

    def gen_usage(self, run: str) -> dict[str, int]:
        """The tokens run ``run``'s done requests used, as their servers counted them."""
        prompt, completion = self.db.execute(
            "SELECT coalesce(sum(json_extract(usage, '$.prompt_tokens')), 0), "
            "coalesce(sum(json_extract(usage, '$.completion_tokens')), 0) FROM gen_requests WHERE run = ? AND status = 'done'",
            (run,),
        ).fetchone()
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def gen_counts(self, run: str) -> dict[str, int]:
        """Run ``run``'s requests by status."""
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self.db.execute("SELECT status, count(*) FROM gen_requests WHERE run = ? GROUP BY status", (run,)):
            counts[status] = n
        return counts
