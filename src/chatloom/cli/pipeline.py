"""``chatloom build``: run a recipe."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
from . import cli, err_console, json_option, print_json


@contextmanager
def step_progress() -> Iterator[Callable[[list[Any]], None]]:
    """One line a step on a terminal: conversations seen, kept, dropped; silent otherwise."""
    if not err_console.is_terminal:
        yield lambda reports: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=err_console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(reports: list[Any]) -> None:
            for r in reports:
                if r.where not in tasks:
                    tasks[r.where] = bar.add_task("", total=None)
                dropped = sum(r.dropped.values())
                bar.update(tasks[r.where], description=f"{r.where:<18} {r.name:<13} seen {r.seen:>9,}  kept {r.kept:>9,}  dropped {dropped:>7,}")

        yield update


@cli.command("build")
@click.argument("recipe_path", metavar="RECIPE", required=False)
@click.option("-o", "--output", "out", default=None, type=click.Path(file_okay=False), help="Output folder (default: the recipe's output).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this machine; ray: Ray Data, on $RAY_ADDRESS or a local Ray. Same outputs.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Processes (local) or CPUs of a local Ray for the per-conversation steps; the outputs are the same whatever the number.")
@click.option("--dry-run", is_flag=True, help="Validate the recipe and count the inputs; write nothing.")
@click.option("--example", is_flag=True, help="Print a commented recipe that uses every step.")
@json_option
def build_(recipe_path: str | None, out: str | None, executor: str, workers: int, dry_run: bool, example: bool, as_json: bool) -> None:
    """Build training data from a recipe: inputs, tasks, filters, transforms, split, format.

    Writes OUT/data.jsonl (or OUT/data/train + val with a split, in the recipe's format),
    OUT/rejected.jsonl (every dropped conversation with its step and reason), OUT/report.json
    (each step's kept, dropped by reason, what it changed, its time) and OUT/report.html (the
    same with token-length histograms and examples). The same recipe, inputs and seed give
    byte-identical data.

    \b
    Example usage:
        chatloom build --example > recipe.yaml
        chatloom build recipe.yaml --dry-run
        chatloom build recipe.yaml -o out --workers 4
        RAY_ADDRESS=ray://head:10001 chatloom build recipe.yaml --executor ray
    """
    from ..pipeline.inputs import count_inputs
    from ..pipeline.recipe import load_recipe
    from ..pipeline.runner import run_recipe

    if example:
        click.echo(resources.files("chatloom.pipeline").joinpath("example.yaml").read_text(encoding="utf-8"), nl=False)
        return
    if recipe_path is None:
        raise UsageError("give a RECIPE file (chatloom build --example prints one)")
    recipe = load_recipe(recipe_path)
    if dry_run:
        counts = count_inputs(recipe)
        if as_json:
            print_json({"recipe": recipe_path, "valid": True, "inputs": counts})
            return
        click.echo(f"{recipe_path}: valid; {len(recipe.filters)} filters, {len(recipe.transforms)} transforms, {len(recipe.tasks)} tasks")
        for name, n in counts.items():
            click.echo(f"input {name}: {n:,} conversations")
        return
    with step_progress() as update:
        result = run_recipe(recipe, out, workers=workers, executor=executor, progress=update)
    if as_json:
        print_json(result.report)
        return
    report = result.report
    for name, entry in report["skipped_records"].items():
        click.echo(f"warning: input {name}: {entry['count']:,} records could not be read and were skipped, e.g. "
                   + "; ".join(entry["examples"]), err=True)
    click.echo("inputs: " + ", ".join(f"{k} {v:,}" for k, v in report["inputs"].items()))
    for step in report["steps"]:
        dropped = ", ".join(f"{n:,} {reason}" for reason, n in step["dropped"].items())
        changed = ", ".join(f"{n:,} {what}" for what, n in step["stats"].items())
        click.echo(f"  {step['where']:<16} {step['step']:<12} kept {step['kept']:>8,}" + (f"  dropped: {dropped}" if dropped else "")
                   + (f"  ({changed})" if changed else ""))
    for path, n in result.files.items():
        click.echo(f"wrote {n:,} conversations to {path}")
    click.echo(f"report: {Path(result.output) / 'report.html'} (and report.json); rejected: {Path(result.output) / 'rejected.jsonl'}")
