"""Looking at a dataset: ``ls``, ``show``, ``stats``, ``formats``."""

from __future__ import annotations

import click
import msgspec
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..store import Store
from . import cli, console, dataset_option, json_option, print_json, progress_bar

ROLE_STYLES = {"system": "magenta", "user": "cyan", "assistant": "green", "tool": "yellow"}


def _snippet(text: str) -> Text:
    """An FTS snippet (matches between \\x02 and \\x03) as rich Text, content never parsed as markup."""
    out = Text()
    for i, part in enumerate(text.replace("\x03", "\x02").split("\x02")):
        out.append(part, style="bold yellow" if i % 2 else "")
    return out


@cli.command("ls")
@dataset_option
@click.option("--tag", default=None, help="Only conversations with this tag.")
@click.option("--search", default=None, help="Full-text search: conversations containing every word.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(0), help="At most N rows (0: all).")
@json_option
def ls(dataset: str, tag: str | None, search: str | None, limit: int, as_json: bool) -> None:
    """List conversations.

    \b
    Example usage:
        chatloom ls
        chatloom ls --tag greetings --limit 0
        chatloom ls --search "pizza party" --json
    """
    with Store(dataset) as store:
        lim = limit or None
        rows = store.search(search, tag=tag, limit=lim) if search else store.summaries(tag=tag, limit=lim)
        total = store.count()
    if as_json:
        print_json([
            {"id": r.id, "title": r.title, "messages": r.n_messages, "tags": r.tags, "revision": r.revision,
             "modified_at": r.modified_at, "preview": r.preview, **({"snippet": r.snippet.replace("\x02", "").replace("\x03", "")} if r.snippet else {})}
            for r in rows
        ])  # fmt: skip
        return
    # Ids are never cut (a piped `ls` gives ids that `show` finds), nor counts: their columns are as
    # wide as their longest value. When a row does not fit, the tags and the text share what is
    # left (the text at least 12 wide); when it does, every column is as wide as its content.
    texts = [_snippet(r.snippet) if r.snippet else Text(r.title or r.preview) for r in rows]
    tags = [", ".join(r.tags) for r in rows]
    header = "match" if search else "first message"
    id_width = max([len(r.id) for r in rows] + [2])
    msgs_width = max([len(str(r.n_messages)) for r in rows] + [4])
    tags_width = max([len(t) for t in tags] + [4])
    text_width = max([t.cell_len for t in texts] + [len(header)])
    rest = console.width - id_width - msgs_width - 4 * 2  # each of the four columns has a space either side
    fits = tags_width + text_width <= rest
    if not fits:
        rest = max(rest, 4 + 12)
        tags_width = min(tags_width, 30, max(rest // 3, 4))
        text_width = rest - tags_width
    table = Table(box=None, header_style="bold")
    table.add_column("id", no_wrap=True, min_width=id_width)
    table.add_column("msgs", justify="right", no_wrap=True, min_width=msgs_width)
    table.add_column("tags", overflow="ellipsis", no_wrap=True, width=None if fits else tags_width)
    table.add_column(header, overflow="ellipsis", no_wrap=True, width=None if fits else text_width)
    for r, tag_text, text in zip(rows, tags, texts):
        table.add_row(r.id, str(r.n_messages), Text(tag_text), text)
    width = id_width + msgs_width + tags_width + text_width + 4 * 2
    out = console if console.width >= width else Console(width=width, highlight=False, soft_wrap=False)
    out.print(table)
    shown = f"{len(rows):,} match{'es' if len(rows) != 1 else ''}" if search else f"{len(rows):,} of {total:,}"
    more = " (--limit 0 for all)" if limit and len(rows) == limit else ""
    click.echo(f"{shown}{more}", err=True)


@cli.command("show")
@dataset_option
@json_option
@click.argument("conv_id", metavar="ID")
def show(dataset: str, as_json: bool, conv_id: str) -> None:
    """Show one conversation.

    \b
    Example usage:
        chatloom show chitchat:abc123
        chatloom show chitchat:abc123 --json      # the record, as export writes it, + revision
    """
    with Store(dataset) as store:
        store.get(conv_id)  # a deleted one is an error
        entry = store.entry(conv_id)
    conv = entry.conversation
    if as_json:
        print_json({"revision": entry.revision, **msgspec.to_builtins(conv)})
        return
    head = Text()
    head.append(conv.id or "", style="bold")
    if conv.title:
        head.append(f"  {conv.title}")
    head.append(f"\nrevision {entry.revision} · {len(conv.messages)} messages")
    for label, value in (("tags", ", ".join(conv.tags)), ("language", conv.language), ("source", " ".join(str(v) for v in conv.source.values()))):
        if value:
            head.append(f" · {label}: {value}")
    console.print(head)
    for m in conv.messages:
        title = Text(m.role, style=ROLE_STYLES.get(m.role, ""))
        if m.name:
            title.append(f" ({m.name})")
        if m.train is not None:
            title.append(f" train={str(m.train).lower()}", style="dim")
        body = Text(m.content)
        if m.tool_calls:
            for call in m.tool_calls:
                fn = call.get("function", {})
                body.append(f"\n→ {fn.get('name', '')}({fn.get('arguments', '')})", style="yellow")
        console.print(Panel(body, title=title, title_align="left", border_style=ROLE_STYLES.get(m.role, "white")))


@cli.command("stats")
@dataset_option
@click.option("--tokenizer", "tokenizer_name", default=None, help="Tokenizer for token counts (default: the dataset's setting, else gpt2-chatml).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="Write a token-length histogram (PNG).")
@json_option
def stats(dataset: str, tokenizer_name: str | None, plot_path: str | None, as_json: bool) -> None:
    """Counts, roles, tags, languages, sources and token lengths of a dataset.

    Token counts are of each conversation rendered as ChatML, and are cached in the dataset:
    a second run counts only what changed.

    \b
    Example usage:
        chatloom stats
        chatloom stats --tokenizer cl100k_base --plot tokens.png
        chatloom stats --json | jq .tokens.p95
    """
    from ..tokens.tokenizer import DEFAULT_TOKENIZER, get_tokenizer

    with Store(dataset) as store:
        tok = get_tokenizer(tokenizer_name or store.get_setting("tokenizer") or DEFAULT_TOKENIZER)
        with progress_bar("counting tokens", None) as update:
            result = store.stats(tok, progress=lambda done, total: update(done))
    counts = result.pop("_token_counts")
    if plot_path:
        from ..reports.plots import token_histogram

        token_histogram(counts, plot_path, title=f"{dataset}: tokens per conversation ({tok.name})")
    if as_json:
        if plot_path:
            result["plot"] = plot_path
        print_json(result)
        return
    overview = Table(box=None, show_header=False)
    overview.add_column(style="bold")
    overview.add_column(justify="right")
    overview.add_row("conversations", f"{result['conversations']:,}")
    overview.add_row("messages", f"{result['messages']:,}")
    overview.add_row("messages per conversation", f"{result['turns']['mean']:,}")
    if result["deleted"]:
        overview.add_row("deleted (tombstones)", f"{result['deleted']:,}")
    t = result["tokens"]
    overview.add_row(f"tokens ({t['tokenizer']})", f"{t['total']:,}")
    overview.add_row("tokens per conversation", f"mean {t['mean']:,} · p50 {t['p50']:,} · p95 {t['p95']:,} · max {t['max']:,}")
    console.print(overview)
    for key, label in (("by_role", "role"), ("by_language", "language"), ("by_source", "source"), ("by_tag", "tag")):
        if not result[key]:
            continue
        table = Table(label, "count", box=None, header_style="bold")
        for name, n in list(result[key].items())[:10]:
            table.add_row(Text(str(name)), f"{n:,}")
        if len(result[key]) > 10:
            table.add_row(f"… {len(result[key]) - 10} more", "")
        console.print(table)
    if plot_path:
        click.echo(f"histogram: {plot_path}")


@cli.command("formats")
@json_option
def formats_cmd(as_json: bool) -> None:
    """List the import formats, export formats and tokenizers chatloom knows (plugins included)."""
    from ..formats import formats
    from ..sources import sources
    from ..tokens.tokenizer import tokenizers

    listing = {
        "import": {n: c.summary for n, c in sorted(sources().items())},
        "export": {n: c.summary for n, c in sorted(formats().items())},
        "tokenizers": {n: s for n, (_, s) in tokenizers().items()},
    }
    if as_json:
        print_json(listing)
        return
    for section, items in listing.items():
        table = Table(section, "", box=None, header_style="bold")
        for name, summary in items.items():
            table.add_row(name, summary)
        console.print(table)
