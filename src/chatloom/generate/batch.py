"""Batch mode: a run's requests as OpenAI Batch API files (one ``{custom_id, method, url, body}``
line each, the format ``vllm run-batch -i`` reads too), submitted where the endpoint has
``/v1/batches``, and their results collected later into the journal.

    files = write_files(store, job, plan, folder)          # ≤ 50,000 lines and ≤ 200 MB each
    submitted = submit(store, job, plan.run, files)        # None: the endpoint has no batches
    collect(store, run)                                    # or collect(store, run, results=PATH)

A request's ``custom_id`` is its journal key, so the results go back to their rows whatever
order they come in. A line that failed stays ``failed`` with its error, a line missing from a
finished batch too: never an empty result. A batch is found again by its input file's hash
(in the batch's metadata) before another is made, so a submit killed half-way and run again
does not pay twice where the endpoint lists its batches.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..errors import ChatloomError
from ..fileio import atomic_write
from ..store import PlannedRequest, Store
from .api import Plan, rebuild
from .jobs import Job
from .runner import ItemFailed, choice_text
from .settings import Endpoint, scrub

MAX_LINES = 50_000
MAX_BYTES = 200 * 1000 * 1000
URL = "/v1/chat/completions"
TERMINAL = ("completed", "failed", "expired", "cancelled")


def write_files(job: Job, plan: Plan, folder: Path) -> list[Path]:
    """The batch files of ``plan.todo`` in ``folder`` (``RUN.batch.jsonl``, ``RUN.batch-2.jsonl``,
    …), each written whole."""
    if not job.batchable:
        raise ChatloomError(f"a {job.kind} run cannot be batched: each of its requests waits for the one before")
    chunks: list[list[bytes]] = [[]]
    size = 0
    for item in plan.todo:
        p = job.planned(item)
        line = orjson.dumps({"custom_id": p.key, "method": "POST", "url": URL, "body": p.request}) + b"\n"
        if len(chunks[-1]) >= MAX_LINES or (chunks[-1] and size + len(line) > MAX_BYTES):
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += len(line)
    paths = []
    for i, chunk in enumerate(c for c in chunks if c):
        path = folder / (f"{plan.run}.batch.jsonl" if i == 0 else f"{plan.run}.batch-{i + 1}.jsonl")
        with atomic_write(path) as f:
            f.writelines(chunk)
        paths.append(path)
    return paths


def _client(endpoint: Endpoint) -> tuple[Any, list[str]]:
    """A (synchronous) client of the endpoint, and the secrets its errors must not show."""
    import openai

    key = endpoint.api_key()
    return openai.OpenAI(base_url=endpoint.base_url, api_key=key or "none", max_retries=2, timeout=120), [key] if key else []


def _keys(path: Path) -> list[str]:
    with open(path, "rb") as f:
        return [orjson.loads(line)["custom_id"] for line in f if line.strip()]


def submit(store: Store, job: Job, run: str, files: list[Path]) -> list[str] | None:
    """Upload and start a batch per file; their ids, recorded on their rows (``submitted``).
    None when the endpoint has no batch API (404/405): the files are there to run elsewhere."""
    import openai

    client, secrets = _client(job.settings.endpoint)
    ids = []
    try:
        for path in files:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            batch_id = _existing(client, run, digest)
            if batch_id is None:
                with open(path, "rb") as f:
                    uploaded = client.files.create(file=(path.name, f), purpose="batch")
                batch = client.batches.create(input_file_id=uploaded.id, endpoint=URL, completion_window="24h",
                                              metadata={"chatloom_run": run, "chatloom_file": digest})  # fmt: skip
                batch_id = batch.id
            store.gen_submitted(run, _keys(path), batch_id)
            ids.append(batch_id)
    except openai.APIStatusError as err:
        if err.status_code in (404, 405) and not ids:
            return None
        raise ChatloomError(
            scrub(f"{job.settings.endpoint.base_url}: batch submit failed: HTTP {err.status_code}: {err.message}", secrets)
        ) from None
    except openai.APIConnectionError as err:
        raise ChatloomError(scrub(f"{job.settings.endpoint.base_url}: batch submit failed: {err}", secrets)) from None
    finally:
        client.close()
    return ids


def _existing(client: Any, run: str, digest: str) -> str | None:
    """A batch already made from the same file for this run (a submit killed before it recorded
    the id), where the endpoint lists batches."""
    try:
        for batch in client.batches.list(limit=100):
            meta = batch.metadata or {}
            # only one still under way: a finished one's lines were (or will be) collected, and a
            # retry of its failed lines can make a file of the same bytes
            under_way = batch.status not in (*TERMINAL, "cancelling")
            if meta.get("chatloom_run") == run and meta.get("chatloom_file") == digest and under_way:
                return str(batch.id)
    except Exception:  # noqa: BLE001 - listing is a courtesy: an endpoint without it just gets a new batch
        return None
    return None


@dataclass
class Collected:
    done: int = 0
    failed: int = 0
    waiting: dict[str, str] = field(default_factory=dict)  # batch id → its status


def _ok(line: dict[str, Any]) -> bool:
    response = line.get("response")
    return isinstance(response, dict) and response.get("status_code") == 200


def _lines(text: bytes, into: dict[str, dict[str, Any]]) -> None:
    """The result lines of ``text`` by custom_id, into ``into``; where an id comes twice (an
    output and an error file), the answered line wins."""
    for raw in text.splitlines():
        if raw.strip():
            line = orjson.loads(raw)
            if not isinstance(line, dict):
                raise orjson.JSONDecodeError("a JSON object per line is expected", raw.decode(errors="replace"), 0)
            key = str(line.get("custom_id"))
            if key not in into or not _ok(into[key]):
                into[key] = line


def collect(store: Store, run: str, *, results: Path | None = None) -> Collected:
    """Fetch the results of run ``run``'s batches (or read ``results``, e.g. ``vllm run-batch``'s
    output) into the journal: each line's completion is written as the run writes it; a failed
    line, or one a finished batch lacks, is ``failed`` with why."""
    import openai

    job = rebuild(store, run)
    items = {i.key: i for i in job.items()}
    out = Collected()
    lines: dict[str, dict[str, Any]] = {}
    finished: dict[str, str] = {}  # batch → why its missing lines are missing
    if results is not None:
        try:
            _lines(results.read_bytes(), lines)
        except OSError as err:
            raise ChatloomError(f"{results}: {err.strerror}") from None
        except orjson.JSONDecodeError as err:
            raise ChatloomError(f"{results}: not a batch output file ({err.msg})") from None
        rows = [r for r in store.gen_rows(run) if r.status != "done" and r.key in lines]
    else:
        rows = store.gen_rows(run, status="submitted")
        if not rows:
            raise ChatloomError(f"run {run} has no batch waiting: 'chatloom generate … --batch' submits one")
        client, secrets = _client(job.settings.endpoint)
        try:
            for batch_id in sorted({r.batch for r in rows if r.batch}):
                batch = client.batches.retrieve(batch_id)
                if batch.status not in TERMINAL:
                    out.waiting[batch_id] = batch.status
                    continue
                errors = (
                    [f"{e.code}: {e.message}" + (f" (line {e.line})" if e.line else "") for e in (batch.errors.data or [])]
                    if batch.errors
                    else []
                )
                finished[batch_id] = f"the batch {batch.status}" + (f": {'; '.join(errors)}" if errors else "")
                for file_id in (batch.output_file_id, batch.error_file_id):
                    if file_id:
                        _lines(client.files.content(file_id).read(), lines)
        except openai.APIError as err:
            raise ChatloomError(
                scrub(f"{job.settings.endpoint.base_url}: collecting run {run}: {type(err).__name__}: {err}", secrets)
            ) from None
        except orjson.JSONDecodeError as err:
            raise ChatloomError(
                f"{job.settings.endpoint.base_url}: a result file of run {run} is not JSONL ({err.msg})"
            ) from None
        finally:
            client.close()
        rows = [r for r in rows if r.batch in finished]
    for row in rows:
        line = lines.get(row.key)
        if line is None:
            store.gen_fail(run, row.key, f"missing from batch {row.batch}'s results ({finished.get(row.batch, 'the batch ended')})",
                           attempts=row.attempts + 1)  # fmt: skip
            out.failed += 1
            continue
        response = line.get("response") or {}
        body = response.get("body") if isinstance(response, dict) else None
        code = response.get("status_code") if isinstance(response, dict) else None
        if code != 200 or not isinstance(body, dict):
            err = line.get("error") or (body.get("error") if isinstance(body, dict) else None) or {}
            message = err.get("message") if isinstance(err, dict) else str(err)
            store.gen_fail(run, row.key, f"HTTP {code}: {message or 'failed in the batch'}", attempts=row.attempts + 1)
            out.failed += 1
            continue
        text, calls = choice_text(body)
        item = items.get(row.item)
        if not text.strip() and not calls:
            store.gen_fail(run, row.key, "the reply was empty", attempts=row.attempts + 1, response=body)
            out.failed += 1
        elif item is None:
            store.gen_fail(run, row.key, "its input is gone (the questions file or the conversation changed since the batch)",
                           attempts=row.attempts + 1, response=body)  # fmt: skip
            out.failed += 1
        else:
            planned = PlannedRequest(row.key, row.item, row.request_hash, row.request)
            write = job.write(item, planned)
            try:
                store.gen_done(
                    run, row.key, body, body.get("usage"), attempts=row.attempts + 1, write=lambda s, w=write, b=body: w(s, b)
                )  # type: ignore[misc]
                out.done += 1
            except ItemFailed as err:
                store.gen_fail(run, row.key, str(err), attempts=row.attempts + 1, response=body)
                out.failed += 1
    return out
