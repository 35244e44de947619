"""Fine-tuning: ``train`` (and ``train merge``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
from ..train.models import MODEL_HELP
from . import cli, err_console, json_option, print_json


class _TrainGroup(click.Group):
    """``chatloom train [CONFIG] [flags]`` runs a training; ``chatloom train merge RUN`` is the
    one subcommand (a first word that names no subcommand goes to the hidden ``run``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


class _Default(click.Command):
    """The hidden ``run``: its usage reads ``chatloom train [OPTIONS] [CONFIG]``, as typed."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        path = ctx.parent.command_path if ctx.parent is not None else ctx.command_path
        formatter.write_usage(path, " ".join(self.collect_usage_pieces(ctx)))


@cli.group("train", cls=_TrainGroup)
def train_group() -> None:
    """Fine-tune a model on token files (LoRA, QLoRA or full); `chatloom train --help` for the options."""


@contextlib.contextmanager
def _bar() -> Iterator[Callable[[dict[str, Any]], None]]:
    """Steps with the loss, tokens/s and the time left, on a terminal (stderr); silent otherwise."""
    if not err_console.is_terminal:
        yield lambda info: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                  TextColumn("{task.fields[rate]} tok/s"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=err_console, transient=True) as progress:
        task = progress.add_task("train", total=None, loss="…", rate="…")

        def update(info: dict[str, Any]) -> None:
            progress.update(task, completed=info["step"], total=info["max_steps"], loss=f"{info['loss']:.4f}",
                            rate=f"{info['tokens_per_s']:,.0f}")

        yield update


@train_group.command("run", cls=_Default, hidden=True)
@click.argument("config_file", metavar="[CONFIG]", required=False, type=click.Path(dir_okay=False))
@click.option("--model", help=MODEL_HELP)
@click.option("--data", help="`chatloom tokenize` output, or a dataset / JSONL export / build output (tokenized on the fly).")
@click.option("-o", "--output", help="The run folder.")
@click.option("--method", type=click.Choice(["lora", "qlora", "full"]), help="lora (default), qlora (CUDA only) or full.")
@click.option("--max-steps", type=click.IntRange(1), help="Stop after this many optimizer steps.")
@click.option("--epochs", type=float, help="Passes over the data (default 1).")
@click.option("--eval-every", type=click.IntRange(1), help="Steps between validation runs and checkpoints (default 50).")
@click.option("--eval-limit", type=click.IntRange(1), help="Validation conversations evaluated (the first ones; default 500).")
@click.option("--patience", type=click.IntRange(1), help="Stop after this many evaluations without a better validation loss.")
@click.option("--seed", type=int, help="Seed of the data order, dropout and initialization (default 0).")
@click.option("--lr", type=float, help="Peak learning rate (default 2e-4).")
@click.option("--batch-size", type=click.IntRange(1), help="Packed rows per step (default 4).")
@click.option("--max-length", type=click.IntRange(8), help="Tokens per packed row (default 1024).")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp16", "fp32"]), help="Compute precision (default auto).")
@click.option("--samples", type=click.IntRange(0), help="Held-out prompts answered by the base and the tuned model in report.html (default 3).")
@click.option("--lora-r", type=click.IntRange(1), help="LoRA rank (default 16).")
@click.option("--resume", "resume_run", type=click.Path(file_okay=False), help="Go on with this run from its last checkpoint.")
@click.option("--example", is_flag=True, help="Print a commented run.yaml and exit.")
@json_option
def train_run(config_file: str | None, resume_run: str | None, example: bool, as_json: bool, **flags: Any) -> None:
    """Fine-tune a model on chatloom's token files, with their loss masks.

    Settings come from CONFIG (a YAML file; `--example` prints one with every key) with the flags
    over it. The run folder gets run.yaml (all the settings), metrics.jsonl, loss.png,
    report.html (curves, and held-out prompts answered by the base and the tuned model),
    best/ (lowest validation loss) and final/ (last weights), and checkpoints/. `--resume RUN`
    goes on after Ctrl+C, a crash or kill -9 with the same steps, data order and optimizer.
    `chatloom train merge RUN` folds a LoRA run into a full model folder.

    \b
    Example usage:
        chatloom train --model tiny:gpt2 --data tokens -o run --max-steps 30
        chatloom train --model smollm2 --data chitchat.db -o runs/smol --max-steps 100 --eval-every 20
        chatloom train --example > run.yaml && chatloom train run.yaml --max-steps 10
        chatloom train --resume runs/smol
        accelerate launch -m chatloom train run.yaml        # several GPUs: DDP, FSDP, DeepSpeed
    """
    from ..train.config import EXAMPLE, load_config

    if example:
        click.echo(EXAMPLE, nl=False)
        return
    overrides = {k: v for k, v in flags.items() if v is not None}
    if resume_run is not None:
        saved = Path(resume_run) / "run.yaml"
        if not saved.exists():
            raise UsageError(f"{resume_run}: not a training run (no run.yaml)")
        if config_file is not None:
            raise UsageError("--resume takes its settings from the run's run.yaml; give flags to change them, not a CONFIG")
        config_file = str(saved)
        overrides["output"] = resume_run
    config = load_config(config_file, overrides)
    from ..train.run import train

    stages = (lambda s: err_console.print(f"[dim]{s}…[/dim]")) if err_console.is_terminal else None
    try:
        with _bar() as update:
            result = train(config, resume=resume_run is not None, progress=update, on_stage=stages)
    except KeyboardInterrupt:
        click.echo(f"interrupted: the last whole checkpoint is kept; `chatloom train --resume {config.output}` goes on from it",
                   err=True)
        raise click.exceptions.Exit(130) from None
    figures = result.figures
    if as_json:
        print_json({"run": str(result.run), "steps": result.steps, "best_eval_loss": result.best_eval_loss,
                    "final_loss": result.final_loss, "stopped_early": result.stopped_early, **figures})
        return
    run = result.run
    click.echo(f"{run}: {result.steps:,} steps" + (" (stopped early: no better validation loss)" if result.stopped_early else ""))
    if figures.get("first_loss") is not None:
        click.echo(f"  training loss   {figures['first_loss']:.4f} → {figures['last_loss']:.4f}")
    if figures.get("best_eval_loss") is not None:
        click.echo(f"  validation loss {figures['first_eval_loss']:.4f} → best {figures['best_eval_loss']:.4f} (step {figures['best_step']})")
    click.echo(f"  {figures.get('tokens') or 0:,} tokens, {figures.get('tokens_per_s') or 0:,.0f} tokens/s; "
               f"packing fills {100 * figures['packing_fill']:.1f} % of the rows, no padding computed")
    if figures.get("skipped_longer"):
        click.echo(f"  {figures['skipped_longer']:,} conversations longer than max_length were left out "
                   "(tokenize with --max-tokens N --truncate to keep them)", err=True)
    click.echo(f"  best: {run / 'best'}  final: {run / 'final'}  report: {run / 'report.html'}")
    click.echo(f"  try: chatloom chat {run} --prompt 'Hello!'")


@train_group.command("merge")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--which", type=click.Choice(["best", "final"]), default="best", show_default=True)
@click.option("-o", "--output", help="The merged model folder (default RUN/merged-WHICH).")
def train_merge(run: str, which: str, output: str | None) -> None:
    """Fold a LoRA run's adapter into its base: a full model folder that transformers, vLLM and
    llama.cpp's convert_hf_to_gguf.py read.

    \b
    Example usage:
        chatloom train merge runs/smol
        chatloom train merge runs/smol --which final -o smol-merged
    """
    from ..train.merge import merge

    dest = merge(run, which=which, output=output)
    click.echo(f"{dest}: the merged model ({which}/ of {run})")
