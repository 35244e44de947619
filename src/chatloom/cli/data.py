"""``chatloom import`` and ``chatloom export``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from ..formats import get_format
from ..formats.export import export
from ..importing import FileResult, ImportOptions, ImportResult, Plan, import_paths
from ..sources import Source
from ..store import Store
from ..tokens.tokenizer import DEFAULT_TOKENIZER
from . import cli, console, dataset_option, err_console, fail, flag_names, json_option, print_json, progress_bar


def _shown(path: str) -> str:
    """A path as a person wants to read it: relative to here, or package:NAME/FILE for a corpus."""
    p = Path(path)
    if "site-packages" in p.parts:
        return f"package:{p.parent.name}/{p.name}"
    try:
        return str(p.resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def import_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The importer options as flags, given to the command as one ``options: ImportOptions``
    (checked when made: durations, the date order); their defaults are ``ImportOptions``'s."""
    default = ImportOptions()

    @functools.wraps(fn)
    def command(*args: Any, me: tuple[str, ...], merge_gap: str, session_gap: str, min_turns: int, date_format: str | None,
                no_attachments: bool, all_branches: bool, text_blocks: bool, **kwargs: Any) -> Any:  # fmt: skip
        kwargs["options"] = ImportOptions(me=me, merge_gap=merge_gap, session_gap=session_gap, min_turns=min_turns, date_format=date_format,
                                          attachments=not no_attachments, all_branches=all_branches, text_blocks=text_blocks)  # fmt: skip
        return fn(*args, **kwargs)

    for option in reversed([
        click.option("--me", multiple=True, help="Chat exports: your name there (repeatable, for aliases); your messages become the assistant's."),
        click.option("--merge-gap", default=default.merge_gap, show_default=True, help="Chat exports: one speaker's messages this close together are one turn."),
        click.option("--session-gap", default=default.session_gap, show_default=True, help="Chat exports: a silence this long starts a new conversation."),
        click.option("--min-turns", default=default.min_turns, show_default=True, type=click.IntRange(1), help="Chat exports: drop shorter conversations."),
        click.option("--date-format", default=default.date_format, help="Dates in TXT/CSV exports when the file cannot tell: dmy, mdy or ymd."),
        click.option("--no-attachments", is_flag=True, default=not default.attachments, help="Drop attachments, stickers and embeds instead of writing [attachment: NAME]."),
        click.option("--all-branches", is_flag=True, default=default.all_branches, help="ChatGPT: import every regenerated branch, not only the active one."),
        click.option("--text-blocks", is_flag=True, default=default.text_blocks, help="-f text: one conversation per blank-line block, not per file."),
    ]):  # fmt: skip
        command = option(command)
    return command


@cli.command("import")
@dataset_option
@click.option("-f", "--format", "fmt", default="auto", show_default=True, help="Input format; 'auto' detects it from the content.")
@click.option("--strict", is_flag=True, help="A bad record fails its whole file, and nothing of that file is written.")
@click.option("--tag", "tags", multiple=True, help="Tag every imported conversation (repeatable).")
@click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(1), help="Conversations per transaction.")
@import_options
@click.option("--dry-run", is_flag=True, help="Read and count (per speaker, per role, dropped and why); write nothing.")
@json_option
@click.argument("paths", nargs=-1, required=True)
def import_(
    dataset: str, fmt: str, strict: bool, tags: tuple[str, ...], batch_size: int, options: ImportOptions, dry_run: bool,
    as_json: bool, paths: tuple[str, ...],
) -> None:  # fmt: skip
    """Import conversations from files or folders into the dataset.

    Importing the same file again adds nothing; a newer export of the same chats adds only what
    changed. An import that was interrupted (Ctrl+C, a crash, a kill) resumes by running the same
    command again: what was committed is kept, and nothing is doubled.

    Records that cannot be read are skipped, counted and shown (the first few); with --strict
    the file fails instead. A file is imported whole or not at all: one that fails part-way
    (cut short, not UTF-8, a bad record under --strict) leaves the dataset as it was before it.
    Of several files, one that cannot be read is shown as an error and the others are still
    imported (exit code 2). Nothing is imported into a file SQLite finds damaged.

    \b
    Example usage:
        chatloom import chats.jsonl
        chatloom import -f chitchat package          # the chitchat-dataset corpus from PyPI
        chatloom import -f chatterbot package --tag chatterbot
        chatloom import exports/ --strict -d mine.db
        chatloom import general.json --dry-run                # who speaks, how much
        chatloom import general.json --me Adam --session-gap 2h
        chatloom import WhatsApp.txt --me "Ana" --me "Ana (work)"
        chatloom import chatgpt-export.zip

    'chatloom formats' lists the formats.
    """
    names = flag_names()
    failed: list[FileResult] = []  # of several files, those that could not be read; the others went on

    def skipped(files: Plan) -> None:
        for err in files.skipped:
            click.echo(f"warning: {err.file}: skipped: {err.text(names)}", err=True)

    try:
        with _progress_bars() as on_file:
            results = import_paths(dataset, paths, options, fmt=fmt, strict=strict, tags=tags, batch_size=batch_size, dry_run=dry_run,
                                   on_plan=skipped, on_file=on_file, on_error=failed.append)  # fmt: skip
        _report(results, dataset, dry_run, as_json, names)
    finally:
        for result in failed:  # after the report, or before the error that stopped everything
            click.echo(f"error: {result.failure.render(names)}", err=True)  # type: ignore[union-attr]
    if failed:
        if len(failed) == len(results):
            raise fail(f"none of the {len(results)} files could be read")
        raise fail(f"{len(failed)} of {len(results)} files could not be read; the others were {'read' if dry_run else 'imported'}")


@contextmanager
def _progress_bars() -> Iterator[Callable[[Path, Source, int], Callable[[int], None] | None] | None]:
    """``on_file`` for an import: a progress bar per file on a terminal (the last one stopped when
    the next starts, and all when the import ends); None elsewhere."""
    if not err_console.is_terminal:
        yield None
        return
    bars: list[Any] = []

    def on_file(path: Path, source: Source, size: int) -> Callable[[int], None]:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        progress = Progress(
            TextColumn(f"{path.name} ({source.name})"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            console=err_console, transient=True,
        )  # fmt: skip
        task = progress.add_task("", total=size)
        progress.start()
        if bars:
            bars.pop().stop()
        bars.append(progress)
        return lambda done: progress.update(task, completed=done)

    try:
        yield on_file
    finally:
        for bar in bars:
            bar.stop()


def _report(results: ImportResult, dataset: str, dry_run: bool, as_json: bool, names: dict[str, str]) -> None:
    total = results.conversations
    if as_json:
        print_json({"dataset": dataset, "files": [r.to_dict(names) for r in results], "conversations": total})
        return
    if dry_run:
        _print_dry_run(results, dataset, names)
        return
    table = Table(title=f"import into {dataset}", title_justify="left")
    table.add_column("file", overflow="fold")
    table.add_column("format", no_wrap=True)
    for col in ("read", "added", "updated", "unchanged", "bad"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in results:
        c = r.counts
        fmt_cell = r.format + (" (detected)" if r.detected else "")
        bad = "failed" if r.error else f"{r.bad:,}"  # the file: its error comes at the end
        table.add_row(_shown(r.file), fmt_cell, f"{c.records:,}", f"{c.added:,}", f"{c.updated:,}", f"{c.unchanged:,}", bad)
    console.print(table)
    for r in results:
        if r.interrupted is not None:
            click.echo(f"note: {r.file}: resumed an interrupted import ({r.interrupted['added']:,} added before it stopped)")
        if r.counts.deleted:
            click.echo(f"note: {r.file}: {r.counts.deleted:,} conversations were deleted in the dataset and were not re-imported")
        if r.bad:
            for example in r.examples:
                click.echo(f"warning: {example}", err=True)
            click.echo(f"warning: {r.file}: {r.bad:,} bad records skipped (first {len(r.examples)} shown; --strict to fail instead)", err=True)
        for reason, n in r.dropped.items():
            click.echo(f"note: {_shown(r.file)}: dropped {n:,} × {reason}")
        if r.error and r.taken_back:
            click.echo(f"note: {r.file}: nothing of it was imported (the {r.taken_back:,} conversations written before its "
                       "error were taken back); fix the file and run the same command again", err=True)  # fmt: skip
        if r.me_missing:
            click.echo(f"warning: {r.file}: {r.me_missing.render(names)}", err=True)
    click.echo(f"{total:,} conversations in {dataset}")


def _print_dry_run(results, dataset: str, names: dict[str, str]) -> None:
    for r in results:
        c = r.counts
        if r.error:
            click.echo(f"{_shown(r.file)} ({r.format}{', detected' if r.detected else ''}): cannot be read (below)")
            continue
        click.echo(f"{_shown(r.file)} ({r.format}{', detected' if r.detected else ''}): {c.records:,} conversations, "
                   f"{sum(r.roles.values()):,} messages; into {dataset}: {c.added:,} new, {c.updated:,} changed, "
                   f"{c.unchanged:,} unchanged")  # fmt: skip
        for title, counter in (("speaker", r.speakers), ("role", r.roles), ("dropped", r.dropped)):
            if counter:
                table = Table(title, "count", box=None, header_style="bold")
                for name, n in sorted(counter.items(), key=lambda kv: -kv[1])[:20]:
                    table.add_row(Text(str(name)), f"{n:,}")
                console.print(table)
        for example in r.examples:
            click.echo(f"warning: {example}", err=True)
        if r.bad:
            click.echo(f"warning: {r.file}: {r.bad:,} bad records would be skipped", err=True)
        if r.me_missing:
            click.echo(f"warning: {r.file}: {r.me_missing.render(names)}", err=True)
    click.echo("dry run: nothing was written")


@cli.command("export")
@dataset_option
@click.option("-f", "--format", "fmt", default="openai", show_default=True,
              help="Output format ('chatloom formats' lists them); template:NAME renders a chat template.")
@click.option("-o", "--output", "out", required=True, help="Output file ('-' for stdout); with --split or -f hf, a folder.")
@click.option("--split", type=float, default=None, help="Validation share: a ratio (0.1) or a count (500). Writes OUT/train and OUT/val.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split.")
@click.option("--tag", default=None, help="Only conversations with this tag.")
@click.option("--no-meta", is_flag=True, help="openai, parquet, hf: only messages and tools, no id, title, tags, source or meta.")
@click.option("--legacy-functions", is_flag=True, help="openai: write tool calls in OpenAI's old function_call shape.")
@click.option("--char", default=None, help="pygmalion: the character's name where an assistant message has none.  [default: Assistant]")
@click.option("--user", default=None, help="pygmalion: the user's name where a user message has none.  [default: You]")
@click.option("--tokenizer", default=None, help=f"template:NAME: render with this tokenizer's special tokens (bos, eos); default: NAME's own folder, a built-in's model family's, else {DEFAULT_TOKENIZER}'s.")
@click.option("--no-snippets", is_flag=True, help="Write no LLaMA-Factory dataset_info.json entry and no axolotl YAML beside the export.")
@json_option
def export_(
    dataset: str, fmt: str, out: str, split: float | None, seed: int, tag: str | None, no_meta: bool, legacy_functions: bool,
    char: str | None, user: str | None, tokenizer: str | None, no_snippets: bool, as_json: bool,
) -> None:  # fmt: skip
    """Export the dataset to a training format.

    Files are written whole or not at all (a temp file renamed into place). With --split the
    validation set is chosen by conversation, seeded: the same dataset and seed give the same
    files. What a format cannot hold (names in Alpaca, tool calls in text formats, a
    conversation without a reply, ...) is dropped and counted in a warning.

    Beside the export, LLaMA-Factory's dataset_info.json (merged into one already there) and an
    axolotl datasets: block (NAME.axolotl.yml, or axolotl.yml in a split folder) read it as is.

    \b
    Example usage:
        chatloom export -o chats.jsonl
        chatloom export -o out --split 0.1 --seed 0      # out/train.jsonl, out/val.jsonl
        chatloom export -f sharegpt -o chats.sharegpt.jsonl
        chatloom export -f template:llama-3 -o text.jsonl
        chatloom export -f hf -o chats_hf --split 0.05
        chatloom export -f pygmalion --char Aqua -o aqua.jsonl
        chatloom export -o - --no-meta --tag mine | head
    """
    options = {"meta": not no_meta, "legacy_functions": legacy_functions, "char": char, "user": user, "tokenizer": tokenizer}
    get_format(fmt, **options)  # an unknown format or template fails before anything is read
    with Store(dataset) as store:
        passes = 1 if split is None else 2  # a split reads the dataset once per file
        with progress_bar("exporting", None if tag else store.count() * passes) as update:
            result = export(store, out, fmt=fmt, split=split, seed=seed, tag=tag, progress=update, snippets=not no_snippets, **options)
    if as_json:
        print_json({"files": result.files, "dropped": dict(result.dropped), "snippets": result.snippets, "warnings": result.warnings})
        return
    for what, n in result.dropped.items():
        click.echo(f"warning: dropped {n:,} × {what}", err=True)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if out == "-":
        return
    for path, n in result.files.items():
        click.echo(f"wrote {n:,} conversations to {path}")
    if result.snippets:
        click.echo(f"trainer snippets: {', '.join(result.snippets)}")
