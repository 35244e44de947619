"""Running a recipe: inputs → tasks → filters → transforms → split → format, and the report.

    result = run_recipe(load_recipe("recipe.yaml"), "out/")

Conversations stream from step to step. The steps are run in segments: a run of per-conversation
steps goes chunk by chunk through an executor (``executors/``: this process, a pool of processes,
or Ray), each step running its own loop; a dataset-wide step (dedup, a ``barrier``) needs all of
the conversations first: the stream is written to a temporary JSONL file there, the step sees it
whole (``fit``), and the stream goes on from the file — so memory holds the step's index, never
the conversations. Everything is in input order and every random choice is seeded per
conversation, so the same recipe, inputs and seed give byte-identical outputs, whatever executes
the steps.

This file holds the run and its report data (what each step saw, kept, dropped and why, changed,
and its time); the HTML page is ``report.py``'s.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import orjson

from .. import jsonl
from ..errors import ParamError, UsageError
from ..fileio import atomic_write, output_folder, remove_stale, scratch_folder
from ..model import Conversation, ensure_id
from ..parallel import batched
from ..reports import render_build_report
from .base import Step
from .executors import ChunkResult, Executor, StepKey, get_executor, keyed, run_chunk
from .inputs import check_inputs, read_input, read_input_at
from .recipe import Recipe, RecipeError, resolve_steps
from .report import counted

__all__ = ["BuildResult", "StepReport", "read_input", "run_recipe"]

CHUNK = 256  # conversations per chunk: per task for a worker


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


Segment = list[tuple[Step[Any], str, StepKey]]  # the steps, where each is in the recipe, its key


class _Run:
    def __init__(self, rejected: Any, scratch: Path, executor: Executor, progress: Callable[[list[StepReport]], None] | None = None):
        self.executor = executor
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

    def segment(self, convs: Iterable[Conversation], steps: Segment) -> Iterator[Conversation]:
        """Steps in order: runs of per-conversation steps go chunk by chunk through the executor, a
        dataset-wide step (``barrier``) spills the stream first. Rejects are written in input order
        either way, so the files are the same whatever executes the steps."""
        reports = []
        for step, where, _ in steps:
            reports.append(StepReport(step.name, where))
            self.reports.append(reports[-1])  # now, in pipeline order (the generators start later)
        stream: Iterable[Conversation] = convs
        i = 0
        while i < len(steps):
            j = i + 1
            if steps[i][0].barrier:
                stream = self._barrier(stream, steps[i][0], reports[i])
            else:
                while j < len(steps) and not steps[j][0].barrier:
                    j += 1
                stream = self._tally(self.executor.map([key for _, _, key in steps[i:j]], _chunks(stream)), reports[i:j])
            i = j
        return iter(stream)

    def _barrier(self, convs: Iterable[Conversation], step: Step[Any], report: StepReport) -> Iterator[Conversation]:
        """Spill the stream to a scratch file, let the step see it whole, then stream it again
        through the step, here (its index is in this process)."""
        self._spill += 1
        path = self.scratch / f"stage{self._spill}.jsonl"
        with open(path, "wb") as fp:
            jsonl.write(convs, fp)
        start = time.perf_counter()
        step.fit(jsonl.read_path(path))
        report.seconds += time.perf_counter() - start
        report.stats.update(step.stats)
        yield from self._tally((run_chunk([step], chunk) for chunk in _chunks(jsonl.read_path(path))), [report])

    def _tally(self, results: Iterable[ChunkResult], reports: list[StepReport]) -> Iterator[Conversation]:
        """The chunks' conversations, in order, as their counts and rejects go into the reports."""
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


def _chunks(convs: Iterable[Conversation]) -> Iterator[list[Conversation]]:
    return batched(convs, CHUNK)


@dataclass
class BuildResult:
    output: Path
    files: dict[str, int]
    report: dict[str, Any]


def _inputs(recipe: Recipe, counts: Counter[str], lengths: list[int] | None = None,
            skipped: dict[str, dict[str, Any]] | None = None) -> Iterator[tuple[str, Conversation]]:
    for i, spec in enumerate(recipe.inputs):
        convs = read_input_at(i, spec, skipped)
        if lengths is not None:
            convs = counted(convs, recipe.tokenizer, lengths)
        for conv in convs:
            ensure_id(conv)
            counts[str(spec.name)] += 1
            yield str(spec.name), conv


def _tasked(recipe: Recipe, run: _Run, task_steps: list[list[Step[Any]]], counts: Counter[str], lengths: list[int],
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
    try:
        check_inputs(recipe.inputs)  # before anything is made
        target = Path(out or recipe.output)
        if target.exists() and not target.is_dir():
            if out is not None:
                raise UsageError(f"{target}: a file, not an output folder")
            raise RecipeError(("output",), f"{target}: a file, not an output folder")
        with output_folder(target):  # made here, and taken back if the build fails
            return _run(recipe, target, workers, executor, progress)
    except RecipeError as err:
        raise recipe.error(err) from None


def _run(recipe: Recipe, target: Path, workers: int, executor: str,
         progress: Callable[[list[StepReport]], None] | None) -> BuildResult:
    from ..formats.export import export_conversations
    from ..formats.split import validation_size

    task_steps, steps = resolve_steps(recipe)
    data_name = "data" if recipe.split is not None else f"data{_extension(recipe.format)}"
    remove_stale(target, ["rejected.jsonl", "report.json", "report.html", data_name])  # what a killed build left
    started = time.perf_counter()
    counts: Counter[str] = Counter()
    skipped: dict[str, dict[str, Any]] = {}  # records the importers could not read, per input
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(scratch_folder(target, "build"))
        rejected = stack.enter_context(atomic_write(target / "rejected.jsonl"))
        engine = stack.enter_context(get_executor(executor, recipe.model_dump(), keyed(task_steps, steps), workers))
        run = _Run(rejected, Path(scratch), engine, progress)
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
        if recipe.split is not None:
            try:
                validation_size(len(ids), recipe.split)
            except ParamError as err:
                raise RecipeError(("split",), err.render({"split": "a count of"}) + " after the steps") from None
        data = target / data_name
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
