"""Running a recipe: inputs → tasks → filters → transforms → split → format, and the report.

    result = run_recipe(load_recipe("recipe.yaml"), "out/")

Conversations stream from step to step. A dataset-wide step (dedup) needs all of them first:
the stream is written to a temporary JSONL file there, the step sees it whole (``fit``), and the
stream goes on from the file — so memory holds the step's index, never the conversations.
Everything is in input order and every random choice is seeded per conversation, so the same
recipe, inputs and seed give byte-identical outputs.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import orjson
from pydantic import ValidationError

from .. import jsonl
from ..errors import UsageError
from ..fileio import atomic_write
from ..model import Conversation, ensure_id
from ..parallel import batched
from ..reports import render_build_report
from .base import Context, DatasetFilter, Filter, Step, Transform
from .recipe import Recipe, StepSpec
from .report import counted
from .transforms import Persona, SystemPrompt, Window


def _spec(spec: StepSpec) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, str):
        return spec, {}
    if len(spec) != 1:
        raise ValueError(f"a step is one 'name: {{params}}' mapping, got {len(spec)} keys")
    name, params = next(iter(spec.items()))
    return name, params or {}


def build_step(spec: StepSpec, context: Context, where: str) -> Step:
    from .registry import steps

    try:
        name, params = _spec(spec)
    except ValueError as err:
        raise UsageError(f"{where}: {err}") from None
    known = steps()
    if name not in known:
        raise UsageError(f"{where}: unknown step '{name}'; choose one of: {', '.join(sorted(known))}")
    cls = known[name]
    try:
        return cls(cls.Params.model_validate(params), context)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"{where}.{name}{'.' + key if key else ''}: {first['msg']}") from None


def resolve_steps(recipe: Recipe, source: str = "recipe") -> tuple[list[list[Step]], list[Step]]:
    """The steps of each task and the global ones (filters, then transforms), built and validated."""
    context = Context(seed=recipe.seed, tokenizer=recipe.tokenizer, max_tokens=recipe.max_tokens)
    tasks = []
    for t, task in enumerate(recipe.tasks):
        own: list[Step] = []
        if task.system_prompts:
            own.append(SystemPrompt(SystemPrompt.Params(prompts=task.system_prompts, mode=task.system_mode), context))
        if task.char is not None or task.user is not None:  # after the prompts: they may name {{char}}
            own.append(Persona(Persona.Params(char=task.char, user=task.user), context))
        own += [build_step(s, context, f"{source}: tasks[{t}].filters[{i}]") for i, s in enumerate(task.filters)]
        tasks.append(own)
    steps = [build_step(s, context, f"{source}: filters[{i}]") for i, s in enumerate(recipe.filters)]
    for i, s in enumerate(recipe.transforms):
        step = build_step(s, context, f"{source}: transforms[{i}]")
        if not isinstance(step, Transform):
            raise UsageError(f"{source}: transforms[{i}]: '{step.name}' is a filter; list it under filters")
        steps.append(step)
    return tasks, steps


# -- inputs ------------------------------------------------------------------------------------

def read_input(spec: Any, skipped: dict[str, dict[str, Any]] | None = None) -> Iterator[Conversation]:
    """The conversations of one input. Records a file's importer cannot read are skipped, as
    ``chatloom import`` skips them; ``skipped`` receives their count and first examples."""
    from ..importing import ImportOptions, plan
    from ..sources import Reader

    if spec.dataset is not None:
        from ..store import Store

        if not Path(spec.dataset).exists():
            raise UsageError(f"input {spec.name}: {spec.dataset}: no such dataset")
        with Store(spec.dataset) as store:
            yield from store.iter_conversations(tag=spec.tag)
        return
    if spec.corpus is not None:
        files = plan(["package"], spec.corpus)
    else:
        try:
            options = ImportOptions.from_mapping(spec.options)
        except UsageError as err:
            raise UsageError(f"input {spec.name}: options: {err}") from None
        files = plan([spec.file] if isinstance(spec.file, str) else list(spec.file), spec.format, options)
    with files:  # its unzipped members and UTF-8 copies go when the input is read (or its reading stops)
        for file, source, _ in files:
            if source.stream and not source.options.me:
                raise UsageError(f"input {spec.name}: {files.display_name(file)} is a chat export: give options: {{me: [YOUR NAME]}}")
            reader = Reader(files.display_name(file))
            yield from source.read(file, reader)
            if reader.bad_count and skipped is not None:
                entry = skipped.setdefault(str(spec.name), {"count": 0, "examples": []})
                entry["count"] += reader.bad_count
                entry["examples"] = (entry["examples"] + reader.examples)[:3]


# -- the run -----------------------------------------------------------------------------------

@dataclass
class StepReport:
    name: str
    where: str
    seen: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    stats: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    examples: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.name, "where": self.where, "seen": self.seen, "kept": self.kept,
                "dropped": dict(sorted(self.dropped.items())), "stats": dict(sorted(self.stats.items())),
                "seconds": round(self.seconds, 3), "examples": self.examples}


class _Run:
    def __init__(self, rejected: Any, scratch: Path, pool: Any = None, progress: Callable[[list[StepReport]], None] | None = None):
        self.pool = pool
        self.progress = progress
        self.rejected = rejected
        self.scratch = scratch
        self.reports: list[StepReport] = []
        self.examples: dict[tuple[str, str], list[Conversation]] = {}  # a few dropped ones, for report.html
        self._reject_files: dict[int, Any] = {}
        self._spill = 0

    def reject(self, conv: Conversation, report: StepReport, reason: str) -> None:
        report.dropped[reason] += 1
        ids = report.examples.setdefault(reason, [])
        if len(ids) < 3:
            ids.append(conv.id or "")
            self.examples.setdefault((report.where, reason), []).append(conv)
        fp = self._reject_files.get(id(report))
        if fp is None:  # one scratch file a step: joined in pipeline order at the end, so the order
            # of rejected.jsonl never depends on how the steps' work interleaved
            fp = self._reject_files[id(report)] = open(self.scratch / f"rejected-{len(self._reject_files)}.jsonl", "wb")
        fp.write(orjson.dumps({"id": conv.id, "step": report.name, "where": report.where, "reason": reason,
                               "conversation": msgspec.to_builtins(conv)}) + b"\n")

    def write_rejected(self, reports: list[StepReport]) -> None:
        for report in reports:
            fp = self._reject_files.pop(id(report), None)
            if fp is not None:
                fp.close()
                with open(fp.name, "rb") as part:
                    shutil.copyfileobj(part, self.rejected)

    def segment(self, convs: Iterable[Conversation], steps: list[tuple[Step, str, tuple[int, int]]]) -> Iterator[Conversation]:
        """Steps in order: runs of per-conversation steps go chunk by chunk (here, or in the worker
        processes), a dataset-wide step is a barrier. Rejects are written in input order either way,
        so the files are the same whatever the number of workers."""
        reports = []
        for step, where, _ in steps:
            reports.append(StepReport(step.name, where))
            self.reports.append(reports[-1])  # now, in pipeline order (the generators start later)
        stream: Iterable[Conversation] = convs
        i = 0
        while i < len(steps):
            if isinstance(steps[i][0], DatasetFilter):
                stream = self._dataset_step(stream, steps[i][0], reports[i])  # type: ignore[arg-type]
                i += 1
                continue
            j = i
            while j < len(steps) and not isinstance(steps[j][0], DatasetFilter):
                j += 1
            stream = self._chunked(stream, steps[i:j], reports[i:j])
            i = j
        return iter(stream)

    def _chunked(self, convs: Iterable[Conversation], steps: list[tuple[Step, str, tuple[int, int]]],
                 reports: list[StepReport]) -> Iterator[Conversation]:
        encode = msgspec.json.Encoder()
        keys = [key for _, _, key in steps]
        if isinstance(self.pool, RayExecutor):
            results: Iterator[_ChunkResult] = self.pool.map(keys, (encode.encode(chunk) for chunk in _chunks(convs)))
        elif self.pool is None:
            results = (apply_chunk([s for s, _, _ in steps], chunk) for chunk in _chunks(convs))
        else:
            results = _ordered_map(self.pool, _work, ((keys, encode.encode(chunk)) for chunk in _chunks(convs)))
        for result in results:
            for pos, reason, conv in result.rejects:
                self.reject(conv, reports[pos], reason)
            for report, (seen, kept, stats, seconds) in zip(reports, result.counts):
                report.seen += seen
                report.kept += kept
                report.stats.update(stats)
                report.seconds += seconds
            if self.progress is not None:
                self.progress(self.reports)
            yield from result.out

    def _dataset_step(self, convs: Iterable[Conversation], step: DatasetFilter, report: StepReport) -> Iterator[Conversation]:
        for conv in self._barrier(convs, step, report):
            report.seen += 1
            verdict = step.keep(conv)
            ok, reason = (verdict, "") if isinstance(verdict, bool) else verdict
            if not ok:
                self.reject(conv, report, reason)
                continue
            report.kept += 1
            yield conv

    def _barrier(self, convs: Iterable[Conversation], step: DatasetFilter, report: StepReport) -> Iterator[Conversation]:
        """Spill the stream to a scratch file, let the step see it whole, then stream it again."""
        self._spill += 1
        path = self.scratch / f"stage{self._spill}.jsonl"
        with open(path, "wb") as fp:
            jsonl.write(convs, fp)
        start = time.perf_counter()
        step.fit(jsonl.read_path(path))
        report.seconds += time.perf_counter() - start
        report.stats.update(step.stats)
        return jsonl.read_path(path)


CHUNK = 256  # conversations per task for a worker


@dataclass
class _ChunkResult:
    out: list[Conversation]
    rejects: list[tuple[int, str, Conversation]]  # (step position, reason, conversation), in input order
    counts: list[tuple[int, int, Counter[str], float]]  # per step: seen, kept, what it changed, seconds


def apply_chunk(steps: list[Step], convs: list[Conversation]) -> _ChunkResult:
    """Run per-conversation steps over a chunk, conversation by conversation."""
    counts = [[0, 0] for _ in steps]
    seconds = [0.0] * len(steps)
    for step in steps:
        step.stats = Counter()
    out: list[Conversation] = []
    rejects: list[tuple[int, str, Conversation]] = []
    for conv in convs:
        current = [conv]
        for pos, step in enumerate(steps):
            nxt: list[Conversation] = []
            for c in current:
                counts[pos][0] += 1
                start = time.perf_counter()
                if isinstance(step, Filter):
                    verdict = step.keep(c)
                    ok, reason = (verdict, "") if isinstance(verdict, bool) else verdict
                    results = [c] if ok else []
                else:
                    assert isinstance(step, Transform)
                    results = step.expand(c) if isinstance(step, Window) else [x for x in [step.apply(c)] if x is not None]
                    reason = step.drop_reason if not isinstance(step, Window) else "no assistant turn to window"
                seconds[pos] += time.perf_counter() - start
                if not results:
                    rejects.append((pos, reason, c))
                    continue
                counts[pos][1] += 1
                nxt.extend(results)
            current = nxt
        out.extend(current)
    return _ChunkResult(out, rejects, [(seen, kept, step.stats, secs) for (seen, kept), step, secs in zip(counts, steps, seconds)])


def _chunks(convs: Iterable[Conversation]) -> Iterator[list[Conversation]]:
    return batched(convs, CHUNK)


def _ordered_map(pool: Any, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[Any]:
    """``pool.imap``, but the jobs are drawn in this thread. imap draws them in the pool's own
    task thread, which deadlocks when drawing one needs the results of another imap on the same
    pool — as a segment after a segment does. A bounded window keeps memory flat."""
    pending: collections.deque[Any] = collections.deque()
    window = 2 * getattr(pool, "_processes", 2)
    for job in jobs:
        pending.append(pool.apply_async(fn, (job,)))
        if len(pending) >= window:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


class RayExecutor:
    """Per-conversation steps on Ray Data: each window of chunks is a dataset, mapped in order
    (``preserve_order``) by tasks that build the recipe's steps once per Ray worker process. Connects
    to ``RAY_ADDRESS`` when it is set, else starts a local Ray with ``workers`` CPUs. The chunks
    travel through Ray's object store, so the workers may be on other machines."""

    WINDOW = 64  # chunks per dataset: bounded memory, few dataset start-ups

    def __init__(self, recipe: dict[str, Any], workers: int):
        try:
            import ray
            import ray.data
        except ImportError:
            raise UsageError("--executor ray needs Ray: pip install 'chatloom[ray]'") from None
        import logging
        import os

        self.recipe = recipe
        self.started = not ray.is_initialized()
        if self.started:
            address = os.environ.get("RAY_ADDRESS")
            ray.init(address=address or None, num_cpus=None if address else workers, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)

    def map(self, keys: list[tuple[int, int]], jobs: Iterable[bytes]) -> Iterator[_ChunkResult]:
        import pickle

        import ray.data

        window: list[bytes] = []

        def run(payloads: list[bytes]) -> Iterator[_ChunkResult]:
            ds = ray.data.from_items([{"payload": p} for p in payloads], override_num_blocks=len(payloads))
            ds = ds.map_batches(_ray_apply, fn_kwargs={"recipe": self.recipe, "keys": keys}, batch_size=1)
            for row in ds.iter_rows():
                yield pickle.loads(row["result"])

        for job in jobs:
            window.append(job)
            if len(window) == self.WINDOW:
                yield from run(window)
                window = []
        if window:
            yield from run(window)

    def close(self) -> None:
        if self.started:
            import ray

            ray.shutdown()


_ray_recipes: dict[str, dict[tuple[int, int], Step]] = {}


def _ray_apply(batch: dict[str, Any], recipe: dict[str, Any], keys: list[tuple[int, int]]) -> dict[str, Any]:
    import pickle

    import numpy as np

    key = orjson.dumps(recipe, option=orjson.OPT_SORT_KEYS).decode()
    steps = _ray_recipes.get(key)
    if steps is None:
        _init_worker(recipe)
        steps = _ray_recipes[key] = dict(_worker_steps)
    results = [pickle.dumps(apply_chunk([steps[tuple(k)] for k in keys], _decode.decode(bytes(p)))) for p in batch["payload"]]  # type: ignore[index]
    return {"result": np.array(results, dtype=object)}


_worker_steps: dict[tuple[int, int], Step] = {}
_decode = msgspec.json.Decoder(list[Conversation])


def _init_worker(recipe: dict[str, Any]) -> None:
    task_steps, steps = resolve_steps(Recipe.model_validate(recipe))
    _worker_steps.clear()
    for t, own in enumerate(task_steps):
        _worker_steps.update({(t, i): s for i, s in enumerate(own)})
    _worker_steps.update({(-1, i): s for i, s in enumerate(steps)})


def _work(job: tuple[list[tuple[int, int]], bytes]) -> _ChunkResult:
    keys, payload = job
    return apply_chunk([_worker_steps[tuple(k)] for k in keys], _decode.decode(payload))  # type: ignore[index]


@dataclass
class BuildResult:
    output: Path
    files: dict[str, int]
    report: dict[str, Any]


def _inputs(recipe: Recipe, counts: Counter[str], lengths: list[int] | None = None,
            skipped: dict[str, dict[str, Any]] | None = None) -> Iterator[tuple[str, Conversation]]:
    for spec in recipe.inputs:
        convs = read_input(spec, skipped)
        if lengths is not None:
            convs = counted(convs, recipe.tokenizer, lengths)
        for conv in convs:
            ensure_id(conv)
            counts[str(spec.name)] += 1
            yield str(spec.name), conv


def _tasked(recipe: Recipe, run: _Run, task_steps: list[list[Step]], counts: Counter[str], lengths: list[int],
            skipped: dict[str, dict[str, Any]]) -> Iterator[Conversation]:
    if not recipe.tasks:
        for _, conv in _inputs(recipe, counts, lengths, skipped):
            yield conv
        return
    first = True
    for t, (task, steps) in enumerate(zip(recipe.tasks, task_steps)):
        wanted = set(task.inputs) if task.inputs is not None else None

        def members(task_name: str = task.name, wanted: set[str] | None = wanted, measure: bool = first) -> Iterator[Conversation]:
            for name, conv in _inputs(recipe, counts if measure else Counter(), lengths if measure else None,
                                      skipped if measure else None):
                if wanted is None or name in wanted:
                    yield msgspec.structs.replace(conv, id=f"{task_name}:{conv.id}", meta={**conv.meta, "task": task_name})

        first = False  # the inputs are counted (and measured) once, on the first task's pass
        yield from run.segment(members(), [(step, f"tasks[{task.name}][{i}]", (t, i)) for i, step in enumerate(steps)])


def run_recipe(recipe: Recipe, out: str | None = None, *, workers: int = 1, executor: str = "local",
               progress: Callable[[list[StepReport]], None] | None = None) -> BuildResult:
    """Run ``recipe`` into ``out`` (default: the recipe's ``output``): the data in its format
    (a train/val folder with ``split``), ``rejected.jsonl``, ``report.json`` and ``report.html``.

    :param workers: processes for the per-conversation steps; the outputs are the same whatever
        the number (dataset-wide steps such as dedup run in this process, over everything).
    :param executor: ``local`` (this machine; ``workers`` processes) or ``ray`` (Ray Data: the
        cluster at ``$RAY_ADDRESS``, else a local Ray with ``workers`` CPUs). Same outputs.
    :param progress: called with the steps' reports as they advance (after each chunk).
    """
    from ..formats.export import export_conversations

    task_steps, steps = resolve_steps(recipe)
    target = Path(out or recipe.output)
    target.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    counts: Counter[str] = Counter()
    skipped: dict[str, dict[str, Any]] = {}  # records the importers could not read, per input
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix=".chatloom-build-", dir=target))
        rejected = stack.enter_context(atomic_write(target / "rejected.jsonl"))
        pool: Any = None
        if executor == "ray":
            pool = RayExecutor(recipe.model_dump(), workers)
            stack.callback(pool.close)
        elif executor != "local":
            raise UsageError(f"unknown executor '{executor}'; choose local or ray")
        elif workers > 1:
            ctx = multiprocessing.get_context("spawn")
            pool = stack.enter_context(ctx.Pool(workers, initializer=_init_worker, initargs=(recipe.model_dump(),)))
        run = _Run(rejected, Path(scratch), pool, progress)
        before: list[int] = []
        after: list[int] = []
        stream: Iterable[Conversation] = _tasked(recipe, run, task_steps, counts, before, skipped)
        stream = run.segment(stream, [(step, f"{'filters' if i < len(recipe.filters) else 'transforms'}[{i if i < len(recipe.filters) else i - len(recipe.filters)}]",
                                       (-1, i)) for i, step in enumerate(steps)])
        final = Path(scratch) / "final.jsonl"
        ids: list[str] = []
        with open(final, "wb") as fp:
            for n, conv in enumerate(counted(stream, recipe.tokenizer, after), 1):
                ids.append(conv.id or "")
                fp.write(jsonl.dumps(conv))
                if progress is not None and n % 256 == 0:
                    progress(run.reports)
        data = target / ("data" if recipe.split is not None else f"data{_extension(recipe.format)}")
        exported = export_conversations(lambda: jsonl.read_path(final), str(data), fmt=recipe.format, split=recipe.split,
                                        seed=recipe.seed, ids=ids)
        ordered = [r for r in run.reports if r.where.startswith("tasks")] + [r for r in run.reports if not r.where.startswith("tasks")]
        run.write_rejected(ordered)
    report = {
        "inputs": dict(counts),
        "skipped_records": skipped,
        "steps": [r.as_dict() for r in ordered],
        "output": {"conversations": len(ids), "files": {str(Path(k).relative_to(target)): v for k, v in exported.files.items()},
                   "format": recipe.format, "dropped_by_format": dict(exported.dropped)},
        "dropped": sum(sum(r.dropped.values()) for r in run.reports),
        "seed": recipe.seed,
    }
    report["tokens"] = {"inputs": sum(before), "output": sum(after)}
    with atomic_write(target / "report.json") as fp:
        fp.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    with atomic_write(target / "report.html") as fp:
        fp.write(render_build_report(report, before, after, recipe.tokenizer, run.examples).encode())
    report["seconds"] = round(time.perf_counter() - started, 3)  # not in the file: outputs stay byte-identical
    return BuildResult(target, exported.files, report)


def _extension(fmt: str) -> str:
    from ..formats import get_format

    writer = get_format(fmt)
    return "" if writer.folder else writer.extension
