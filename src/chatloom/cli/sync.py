"""Datasets that move: ``diff``, ``sync``, ``pull``, ``push``, ``remote``, ``conflicts``, ``resolve``."""

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
@click.option("--me", multiple=True, help="A chat export's side: your name in it (as for import).")
@json_option
def diff_cmd(a: str, b: str, stat: bool, html_path: str | None, limit: int, me: tuple[str, ...], as_json: bool) -> None:
    """What B added, removed and changed against A (datasets, export files, or a remote of A).

    Conversations are compared by id and state (their messages' digest and their metadata), from
    the rows alone; a changed one is shown turn by turn. Exit code 1 when they differ.

    \b
    Example usage:
        chatloom diff laptop.db server.db --stat
        chatloom diff chats.db export/train.jsonl
        chatloom diff before.db after.db --json > changes.json
        chatloom diff before.db after.db --html diff.html
        chatloom diff chats.db WhatsApp-Chat.txt --me Ana
        chatloom diff laptop.db server --stat            # a remote of laptop.db ('chatloom remote add')
    """
    from ..sources.options import ImportOptions
    from ..store import Store
    from ..sync.diff import diff, message_diff
    from ..sync.remotes import RemoteSide, remote_name
    from ..sync.sides import read_sides

    if remote_name(a, b):  # a dataset against one of its remotes, read whole, nothing written
        from ..sync.sides import open_side

        sa = open_side(a)
        store = Store(a)
        try:
            sb: Any = RemoteSide(store, b, _secret(store, b))
        except BaseException:
            store.close()
            sa.close()
            raise
    else:
        sa, sb = read_sides([a, b], ImportOptions(me=me) if me else None)
    for side in (sa, sb):  # what a file's reading skipped, said as an import says it
        for reader in getattr(side, "skipped", []):
            click.echo(f"warning: {reader.file}: {reader.bad_count:,} bad records skipped, not compared; "
                       f"first: {reader.examples[0]}", err=True)  # fmt: skip
    try:
        result = diff(sa, sb)
        shown = result.changed if limit == 0 else result.changed[:limit]
        details = {} if stat else {i: message_diff(sa.get(i), sb.get(i)) for i in shown}  # type: ignore[arg-type]
    finally:
        sa.close()
        sb.close()
    counts = {"added": len(result.added), "removed": len(result.removed), "changed": len(result.changed), "same": result.same}
    if html_path:
        from ..reports.pages import render_diff

        Path(html_path).write_text(render_diff(a, b, counts, result, details), encoding="utf-8")
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
@dataset_option
@click.argument("a")
@click.argument("b", required=False)
@click.option("--dry-run", is_flag=True, help="Say what would move; write nothing.")
@json_option
def sync_cmd(dataset: str, a: str, b: str | None, dry_run: bool, as_json: bool) -> None:
    """Merge two datasets both ways, or a dataset with a remote, conversation by conversation.

    The base is what both held at their last sync: a change on one side goes to the other, a
    deletion travels as a tombstone, and a change on both sides is a conflict: this side keeps
    its version and holds the other's beside it ('chatloom conflicts', 'chatloom resolve'). Run
    again after an interruption, it finishes the rest. Exit code 1 when conflicts are open.

    \b
    Example usage:
        chatloom sync laptop.db /mnt/server/chats.db --dry-run
        chatloom sync laptop.db /mnt/server/chats.db
        chatloom sync -d laptop.db server                # a remote ('chatloom remote add')
        chatloom diff laptop.db /mnt/server/chats.db     # says nothing after a clean sync
    """
    if b is None:
        _with_remote(dataset, a, pull=True, push=True, dry_run=dry_run, as_json=as_json)
        return
    from ..sync.merge import sync
    from ..sync.sides import read_sides

    sa, sb = read_sides([a, b])
    try:
        result = sync(sa, sb, dry_run=dry_run)
    finally:
        sa.close()
        sb.close()
    _report_sync(a, b, result, dry_run, as_json)


def _report_sync(a: str, b: str, result: Any, dry_run: bool, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    counts = result.counts()
    if as_json:
        print_json({"a": a, "b": b, "dry_run": dry_run, **counts, "conflict_ids": result.conflicts, **(extra or {})})
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


def _secret(store: Any, name: str) -> str | None:
    """Remote ``name``'s secret: the key store's, by the name its config keeps; else the environment's."""
    from ..sync.remotes import environment_secret, info_of

    info = info_of(store, name)
    if info.get("key"):
        from ..generate.settings import get_key

        return get_key(info["key"])
    return environment_secret(info)


def _with_remote(dataset: str, name: str, *, pull: bool, push: bool, dry_run: bool, as_json: bool) -> None:
    from ..store import Store
    from ..sync.remotes import run

    with Store(dataset) as store:
        result, extra = run(store, name, _secret(store, name), pull=pull, push=push, dry_run=dry_run)
    if not as_json:
        if extra.get("duplicates_kept"):
            console.print(f"{extra['duplicates_kept']:,} rows are exact copies of an earlier row: all kept (kajitool's download dropped them)")
        if extra.get("missing_history"):
            console.print(f"{extra['missing_history']:,} rows name a History message no row has: kept without it")
        for conv_id, why in list(extra.get("not_sent", {}).items())[:20]:
            console.print(Text(f"  not sent: {conv_id}: {why}", style="yellow"))
    _report_sync(dataset, name, result, dry_run, as_json, extra)


@cli.command("pull")
@dataset_option
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Say what would come; write nothing.")
@json_option
def pull_cmd(dataset: str, name: str, dry_run: bool, as_json: bool) -> None:
    """Take a remote's changes (conflicts are kept, as by sync).

    \b
    Example usage:
        chatloom pull -d laptop.db server
    """
    _with_remote(dataset, name, pull=True, push=False, dry_run=dry_run, as_json=as_json)


@cli.command("push")
@dataset_option
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Say what would go; write nothing.")
@json_option
def push_cmd(dataset: str, name: str, dry_run: bool, as_json: bool) -> None:
    """Give a remote this dataset's changes; a conversation changed there too is a conflict, never
    overwritten.

    \b
    Example usage:
        chatloom push -d laptop.db server
    """
    _with_remote(dataset, name, pull=False, push=True, dry_run=dry_run, as_json=as_json)


@cli.group("remote")
def remote_group() -> None:
    """The remotes a dataset syncs with: chatloom servers ('chatloom serve-dataset', 'chatloom studio'),
    Kajiwoto datasets, Hugging Face Hub datasets.

    \b
    Example usage:
        chatloom remote add server http://10.0.0.5:8765 --key server-token -d laptop.db
        chatloom remote ls -d laptop.db
    """


@remote_group.command("add")
@dataset_option
@click.argument("name")
@click.argument("url")
@click.option("--key", "key_name", default=None, help="The secret's name in the key store ('chatloom keys set NAME'): a server's "
              "token, a Kajiwoto session token (a password with --user), a Hub token.")
@click.option("--endpoint", default=None, help="Kajiwoto's GraphQL URL, or the Hub's (default: the public one).")
@click.option("--user", default=None, help="Kajiwoto: log in with this user name and the --key's password (default: the key is a session token).")
@click.option("--api", type=click.Choice(["auto", "v1", "v2"]), default=None,
              help="Kajiwoto: kajitool's API (v1: aiTrainedList, trainDataset), the newer SDK's (v2: datasetLines, addToDataset), or ask.")
@click.option("--throttle", type=click.FloatRange(0), default=None, help="Kajiwoto: seconds between requests (default 2, as kajitool).")
@click.option("--format", "fmt", type=click.Choice(["parquet", "jsonl"]), default=None, help="Hub: the shards' format (default parquet).")
@click.option("--shard-size", type=click.IntRange(1), default=None, help="Hub: conversations per shard.")
def remote_add(dataset: str, name: str, url: str, key_name: str | None, endpoint: str | None, user: str | None, api: str | None,
               throttle: float | None, fmt: str | None, shard_size: int | None) -> None:  # fmt: skip
    """Add a remote: a chatloom server's URL, kajiwoto://DATASET_ID or hf://datasets/OWNER/NAME
    (its secret stays in the key store, kept here by name only). The dataset is made when it does
    not exist yet: 'chatloom pull NAME' then fills it.

    \b
    Example usage:
        chatloom remote add server http://127.0.0.1:8765 -d laptop.db
        chatloom remote add kaji kajiwoto://AbC12 --key kaji-session -d kaji.db
        chatloom remote add hub hf://datasets/me/chats --key hf -d laptop.db
    """
    from ..generate.settings import shown_name
    from ..store import Store
    from ..sync.remotes import OPTIONS, check_endpoint, kind_of

    kind = kind_of(url)
    if endpoint is not None:
        check_endpoint(endpoint)
    if key_name is not None and shown_name(key_name) != key_name:
        raise UsageError(f"--key {shown_name(key_name)}: that looks like a token; give its name in the key store ('chatloom keys set NAME')")
    given = {"endpoint": endpoint, "user": user, "api": api, "throttle": throttle, "format": fmt, "shard_size": shard_size}
    wrong = [k for k, v in given.items() if v is not None and k not in OPTIONS[kind]]
    if wrong:
        raise UsageError(f"--{wrong[0].replace('_', '-')}: not an option of a {kind} remote")
    options = {k: v for k, v in given.items() if v is not None} | ({"key": key_name} if key_name else {})
    with Store(dataset, create=True) as store:  # a new dataset to pull a remote into
        if name in store.remotes():
            raise UsageError(f"{name}: a remote of that name exists ('chatloom remote rm {name}' first)")
        store.add_remote(name, url, kind, options)
    click.echo(f"remote {name}: {url}")


@remote_group.command("ls")
@dataset_option
@json_option
def remote_ls(dataset: str, as_json: bool) -> None:
    """The remotes, with what was seen of them at the last sync."""
    from ..store import Store

    with Store(dataset) as store:
        remotes = store.remotes()
        bases = {name: len(store.sync_base(name)) for name in remotes}
    if as_json:
        print_json([{"name": n, **{k: v for k, v in r.items() if k != "key"}, "key": r.get("key"), "synced": bases[n]}
                    for n, r in remotes.items()])  # fmt: skip
        return
    for n, r in remotes.items():
        click.echo(f"{n}\t{r['url']}\t{bases[n]:,} conversations synced" + (f"\tkey: {r['key']}" if r.get("key") else ""))


@remote_group.command("rm")
@dataset_option
@click.argument("name")
def remote_rm(dataset: str, name: str) -> None:
    """Forget a remote (its base and its open conflicts go with it)."""
    from ..store import Store

    with Store(dataset) as store:
        if not store.remove_remote(name):
            raise UsageError(f"{name}: no such remote")
    click.echo(f"removed remote {name}")


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
