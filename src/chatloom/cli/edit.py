"""Changing a dataset: ``tag``, ``rm``, ``history``, ``undo``, ``check``, ``settings``."""

from __future__ import annotations

import click
from rich.table import Table

from ..errors import UsageError
from ..store import Store
from . import cli, console, dataset_option, json_option, print_json


@cli.command("tag")
@dataset_option
@click.option("--add", "add", multiple=True, help="Tag to add (repeatable).")
@click.option("--remove", "remove", multiple=True, help="Tag to remove (repeatable).")
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
def tag(dataset: str, add: tuple[str, ...], remove: tuple[str, ...], ids: tuple[str, ...]) -> None:
    """Add or remove tags. Each change is a revision (see 'history'; 'undo' reverts it).

    \b
    Example usage:
        chatloom tag chitchat:abc --add keep --add funny
        chatloom tag chitchat:abc chitchat:def --remove funny
    """
    if not add and not remove:
        raise UsageError("give --add TAG or --remove TAG")
    with Store(dataset) as store:
        changed = store.tag(ids, add=add, remove=remove)
    click.echo(f"tagged {changed:,} of {len(ids):,} conversations")


@cli.command("rm")
@dataset_option
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
def rm(dataset: str, ids: tuple[str, ...]) -> None:
    """Delete conversations. They leave listings and exports; a tombstone and their history stay,
    so 'chatloom undo ID' brings one back.

    \b
    Example usage:
        chatloom rm chitchat:abc chitchat:def
    """
    with Store(dataset) as store:
        n = store.delete(ids)
    click.echo(f"deleted {n:,} conversations")


@cli.command("history")
@dataset_option
@json_option
@click.argument("conv_id", metavar="ID")
def history(dataset: str, as_json: bool, conv_id: str) -> None:
    """The revisions of one conversation, oldest first.

    \b
    Example usage:
        chatloom history chitchat:abc
    """
    with Store(dataset) as store:
        revs = store.history(conv_id)
    if as_json:
        print_json([vars(r) for r in revs])
        return
    table = Table("revision", "change", "at", "digest", "", box=None, header_style="bold")
    for r in revs:
        table.add_row(str(r.revision), r.op, r.at, (r.digest or "—")[:12], "undone" if r.undone else "")
    console.print(table)


@cli.command("undo")
@dataset_option
@click.argument("conv_id", metavar="ID")
def undo(dataset: str, conv_id: str) -> None:
    """Undo the latest change to a conversation; run again to go further back.

    \b
    Example usage:
        chatloom undo chitchat:abc
    """
    with Store(dataset) as store:
        undone, new = store.undo(conv_id)
        op = next(r.op for r in store.history(conv_id) if r.revision == undone)
    click.echo(f"undid revision {undone} ({op}) of {conv_id}; it is now at revision {new}")


@cli.command("check")
@dataset_option
@click.option("--repair", is_flag=True, help="Rebuild the full-text index first.")
@json_option
def check(dataset: str, repair: bool, as_json: bool) -> None:
    """Check the dataset's integrity: the SQLite file, the full-text index, message ranges, digests,
    tags and revision numbers. Exits 1 when it finds a problem.

    A damaged SQLite file (SQLite's own check fails) is not repaired: SQLite's recovery copies
    what can still be read into a new file (sqlite3 DATASET .recover | sqlite3 NEW.db), which
    'chatloom check -d NEW.db --repair' then checks.

    \b
    Example usage:
        chatloom check
        chatloom check --repair        # rebuild the full-text index, then check
    """
    with Store(dataset) as store:
        if repair:
            store.repair_fts()
        result = store.check()
    if as_json:
        print_json({"ok": result.ok, "damaged": result.damaged, "problems": result.problems, "notes": result.notes,
                    "conversations": result.conversations, "messages": result.messages})  # fmt: skip
        raise click.exceptions.Exit(0 if result.ok else 1)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if result.ok:
        click.echo(f"ok: {result.conversations:,} conversations, {result.messages:,} messages")
    else:
        for problem in result.problems:
            click.echo(f"problem: {problem}", err=True)
        if result.damaged:
            click.echo(f"{dataset}: the SQLite file is damaged ({len(result.problems)} problems); "
                       f"'sqlite3 {dataset} .recover | sqlite3 NEW.db' copies what can still be read into NEW.db, "
                       "then 'chatloom check -d NEW.db --repair' checks it", err=True)  # fmt: skip
        else:
            click.echo(f"{len(result.problems)} problems in {dataset}", err=True)
    if not result.ok:
        raise click.exceptions.Exit(1)


SETTINGS = {
    "languages": "the dataset's languages, comma-separated (e.g. en,de)",
    "tags": "the tags vocabulary, comma-separated",
    "tokenizer": "the default tokenizer (gpt2-chatml, gpt2, cl100k_base, o200k_base or a folder)",
}


@cli.command("settings")
@dataset_option
@click.option("--unset", is_flag=True, help="Remove KEY.")
@json_option
@click.argument("key", required=False, type=click.Choice(sorted(SETTINGS)))
@click.argument("value", required=False)
def settings(dataset: str, unset: bool, as_json: bool, key: str | None, value: str | None) -> None:
    """Show or change the dataset's settings: languages, tags vocabulary, tokenizer.

    \b
    Example usage:
        chatloom settings
        chatloom settings languages en,de
        chatloom settings tokenizer cl100k_base
        chatloom settings tokenizer --unset
    """
    with Store(dataset) as store:
        if key and (value is not None or unset):
            if key == "tokenizer" and not unset:
                from ..tokens.tokenizer import get_tokenizer

                get_tokenizer(value)  # refuse a tokenizer that cannot load
            parsed = None if unset else ([v.strip() for v in value.split(",") if v.strip()] if key != "tokenizer" else value)
            store.set_setting(key, parsed)
        current = store.settings()
    if as_json:
        print_json(current if not key else {key: current.get(key)})
        return
    for name, help_text in SETTINGS.items():
        if key and name != key:
            continue
        shown = current.get(name)
        shown = ", ".join(shown) if isinstance(shown, list) else shown
        click.echo(f"{name:<10} {shown if shown is not None else '(not set)':<30}  # {help_text}")
