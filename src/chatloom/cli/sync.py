"""Datasets that move: ``diff``, ``sync``, ``conflicts``, ``resolve``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import msgspec
from rich.text import Text

from ..errors import UsageError
from . import cli, console, dataset_option, json_option, print_json

ROLE = {"system": "magenta", "user": "cyan", "assistant": "green", "tool": "yellow"}


@cli.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--stat", is_flag=True, help="Counts only.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None, help="Write the diff as an HTML page.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(0),
              help="Show the turns of at most N changed conversations (0: all).")
@json_option
def diff_cmd(a: str, b: str, stat: bool, html_path: str | None, limit: int, as_json: bool) -> None:
    """What B added, removed and changed against A (datasets or export files).

    Conversations are compared by id and state (their messages' digest and their metadata), from
    the rows alone; a changed one is shown turn by turn. Exit code 1 when they differ.

    \b
    Example usage:
        chatloom diff laptop.db server.db --stat
        chatloom diff chats.db export/train.jsonl
        chatloom diff before.db after.db --json > changes.json
        chatloom diff before.db after.db --html diff.html
    """
    from ..sync.diff import diff, message_diff
    from ..sync.sides import read_sides

    sa, sb = read_sides([a, b])
    try:
        result = diff(sa, sb)
        shown = result.changed if limit == 0 else result.changed[:limit]
        details = {} if stat else {i: message_diff(sa.get(i), sb.get(i)) for i in shown}  # type: ignore[arg-type]
    finally:
        sa.close()
        sb.close()
    counts = {"added": len(result.added), "removed": len(result.removed), "changed": len(result.changed), "same": result.same}
    if html_path:
        from ..reports.pages import render

        Path(html_path).write_text(render("diff.html", a=a, b=b, counts=counts, result=result, details=details), encoding="utf-8")
    if as_json:
        print_json({"a": a, "b": b, **counts, **({} if stat else {"added_ids": result.added, "removed_ids": result.removed,
                                                                  "changed_ids": result.changed, "changes": details})})  # fmt: skip
    else:
        _print_diff(a, b, counts, result, details, stat)
    if not result.empty:
        raise SystemExit(1)


def _print_diff(a: str, b: str, counts: dict[str, int], result: Any, details: dict[str, Any], stat: bool) -> None:
    console.print(f"{a} → {b}: [green]{counts['added']:,} added[/], [red]{counts['removed']:,} removed[/], "
                  f"[yellow]{counts['changed']:,} changed[/], {counts['same']:,} the same")  # fmt: skip
    if stat:
        return
    for conv_id in result.added[:20]:
        console.print(Text(f"+ {conv_id}", style="green"))
    for conv_id in result.removed[:20]:
        console.print(Text(f"- {conv_id}", style="red"))
    for conv_id, d in details.items():
        console.print(Text(f"~ {conv_id}", style="yellow bold"))
        for field, (old, new) in d["meta"].items():
            console.print(Text(f"    {field}: {old!r} → {new!r}"))
        for t in d["turns"]:
            line = Text("    ")
            if t["op"] == "insert":
                line.append(f"+ [{t['to'] + 1}] {t['role']}: ", style="green")
                line.append(t["content"][:300], style="green")
            elif t["op"] == "delete":
                line.append(f"- [{t['at'] + 1}] {t['role']}: ", style="red")
                line.append(t["content"][:300], style="red")
            else:
                line.append(f"~ [{t['at'] + 1}→{t['to'] + 1}] {'/'.join(dict.fromkeys(t['role']))}: ", style="yellow")
                plain = not console.is_terminal  # no colors: git's --word-diff=plain marks
                for op, text in t["words"]:
                    if plain and op != "=":
                        text = f"[-{text}-]" if op == "-" else f"{{+{text}+}}"
                    line.append(text, style={"=": "", "-": "red strike", "+": "green underline"}[op])
            console.print(line)
    more = len(result.changed) - len(details)
    if more > 0:
        console.print(f"… and {more:,} more changed (--limit 0 shows all)")


@cli.command("sync")
@click.argument("a")
@click.argument("b")
@click.option("--dry-run", is_flag=True, help="Say what would move; write nothing.")
@json_option
def sync_cmd(a: str, b: str, dry_run: bool, as_json: bool) -> None:
    """Merge two datasets both ways, conversation by conversation.

    The base is what both held at their last sync (kept in each): a change on one side goes to the
    other, a deletion travels as a tombstone, and a change on both sides is a conflict: A keeps
    its version and holds B's beside it ('chatloom conflicts', 'chatloom resolve'). Run again
    after an interruption, it finishes the rest. Exit code 1 when conflicts are open.

    \b
    Example usage:
        chatloom sync laptop.db /mnt/server/chats.db --dry-run
        chatloom sync laptop.db /mnt/server/chats.db
        chatloom diff laptop.db /mnt/server/chats.db     # says nothing after a clean sync
    """
    from ..sync.merge import sync
    from ..sync.sides import read_sides

    sa, sb = read_sides([a, b])
    try:
        result = sync(sa, sb, dry_run=dry_run)
    finally:
        sa.close()
        sb.close()
    counts = result.counts()
    if as_json:
        print_json({"a": a, "b": b, "dry_run": dry_run, **counts, "conflict_ids": result.conflicts})
    else:
        verb = "would move" if dry_run else "moved"
        console.print(f"{verb}: {counts['to_b']:,} to {b}, {counts['to_a']:,} to {a}; deleted: {counts['deleted_in_b']:,} in {b}, "
                      f"{counts['deleted_in_a']:,} in {a}; {counts['same']:,} the same; {counts['conflicts']:,} conflicts")  # fmt: skip
        for conv_id in result.conflicts[:20]:
            console.print(Text(f"  conflict: {conv_id}", style="yellow"))
        if result.conflicts:
            console.print(f"resolve each with 'chatloom resolve -d {a} ID --ours|--theirs|--edit'")
    if result.conflicts:
        raise SystemExit(1)


@cli.command("conflicts")
@dataset_option
@json_option
def conflicts_cmd(dataset: str, as_json: bool) -> None:
    """The conversations a sync found changed on both sides, each with the other side's version.

    \b
    Example usage:
        chatloom conflicts -d laptop.db
        chatloom conflicts -d laptop.db --json
    """
    from ..store import Store

    with Store(dataset) as store:
        found = store.conflicts()
        ours = {c.id: store.entry(c.id) for c in found}
    if as_json:
        print_json([{"id": c.id, "remote": c.remote, "at": c.at, "ours_deleted": ours[c.id].deleted, "theirs_deleted": c.theirs is None,
                     "theirs": None if c.theirs is None else msgspec.to_builtins(c.theirs)} for c in found])  # fmt: skip
        return
    if not found:
        console.print("no conflicts")
        return
    for c in found:
        e = ours[c.id]
        what = "deleted here" if e.deleted else f"{len(e.conversation.messages)} messages here"
        theirs = "deleted there" if c.theirs is None else f"{len(c.theirs.messages)} messages there"
        console.print(Text(f"{c.id}: {what}, {theirs} ({c.remote}, {c.at[:19]})"))


@cli.command("resolve")
@dataset_option
@click.argument("conv_id")
@click.option("--ours", "how", flag_value="ours", help="Keep this dataset's version.")
@click.option("--theirs", "how", flag_value="theirs", help="Take the other side's version.")
@click.option("--edit", "how", flag_value="edit", help="Write your own from both (opens $EDITOR on JSON).")
def resolve_cmd(dataset: str, conv_id: str, how: str | None) -> None:
    """Settle a conflict; the next sync carries the result to the other side.

    \b
    Example usage:
        chatloom resolve -d laptop.db chat:42 --theirs
        chatloom resolve -d laptop.db chat:42 --edit
    """
    from ..model import Conversation
    from ..sync.merge import resolve
    from ..sync.sides import DatasetSide

    if how is None:
        raise UsageError("resolve: say how: --ours, --theirs or --edit")
    side = DatasetSide(dataset)
    try:
        edited = None
        if how == "edit":
            c = side.store.conflict(conv_id)
            if c is None:
                raise UsageError(f"{conv_id}: no conflict to resolve ('chatloom conflicts' lists them)")
            e = side.store.entry(conv_id)
            both = {"ours": None if e.deleted else msgspec.to_builtins(e.conversation),
                    "theirs": None if c.theirs is None else msgspec.to_builtins(c.theirs)}  # fmt: skip
            text = click.edit(msgspec.json.format(msgspec.json.encode(both)).decode() +
                              "\n// keep one object: the conversation as it should be (or edit 'ours'), and save\n", extension=".json")  # fmt: skip
            if text is None:
                raise UsageError("resolve --edit: nothing saved; the conflict stays")
            body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
            try:
                data = msgspec.json.decode(body)
                if isinstance(data, dict) and "ours" in data and "messages" not in data:
                    data = data["ours"]
                edited = msgspec.convert(data, Conversation)
            except (msgspec.DecodeError, msgspec.ValidationError) as err:
                raise UsageError(f"resolve --edit: not a conversation: {err}") from None
            edited.id = conv_id
        state = resolve(side, conv_id, how, edited)
    finally:
        side.close()
    click.echo(f"{conv_id}: resolved ({how}); the next sync carries it ({state[:8]})")
