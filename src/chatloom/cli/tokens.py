"""Token files: ``tokenize`` and ``inspect``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import click
from rich.text import Text

from .. import jsonl
from ..errors import UsageError
from ..model import Conversation
from . import cli, console, dataset_option, json_option, param_flags, print_json, progress_bar

TOKENIZER_HELP = "gpt2-chatml, gpt2, cl100k_base, o200k_base, or a local Hugging Face tokenizer folder."
TEMPLATE_HELP = ("Chat template: chatml, llama-3, mistral, gemma, phi-3, alpaca, vicuna, metharme, a .jinja file or a "
                 "tokenizer folder (default: the tokenizer folder's own template, else chatml).")


# Each worker builds its own layouts, and a spawned one starts a fresh interpreter (0.4 s more than
# a fork): two workers beat one (whose tokenizer already uses every core) from about 1,000 chitchat
# conversations, 4 MB of JSONL, where they are forked, and from 4,000, 16 MB, where they are
# spawned (measured on 2 cores; docs/tokenize.md, Speed). By start method: (conversations, bytes).
LARGE = {"fork": (1000, 4 << 20), "spawn": (4000, 16 << 20)}


def default_workers(*, conversations: int | None = None, size: int | None = None) -> int:
    """``--workers 0``: one per core for a large input (``conversations`` in a dataset, or a file's
    ``size`` in bytes), else one."""
    from ..tokens.writer import start_method

    count, nbytes = LARGE[start_method()]
    large = (conversations is not None and conversations >= count) or (size is not None and size >= nbytes)
    return (os.cpu_count() or 1) if large else 1


def _template_name(template: str | None, tokenizer: str) -> str | None:
    if template is None and Path(tokenizer).is_dir():
        from ..tokens.chat_templates import folder_template

        if folder_template(Path(tokenizer)) is not None:
            return tokenizer
    return template


@param_flags(split="--val")
@cli.command("tokenize")
@dataset_option
@click.argument("input_path", metavar="[INPUT]", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--tokenizer", default="gpt2-chatml", show_default=True, help=TOKENIZER_HELP)
@click.option("--template", default=None, help=TEMPLATE_HELP)
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--val", type=float, default=None, help="Validation share: a ratio (0.05) or a count (500); writes val.* too.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split.")
@click.option("--tag", default=None, help="Only conversations with this tag (from a dataset).")
@click.option("--max-tokens", type=click.IntRange(1), default=None, help="Longer conversations are dropped (or cut, with --truncate); counted.")
@click.option("--truncate", is_flag=True, help="With --max-tokens: drop the oldest whole turns (the system prompt stays) instead of the conversation.")
@click.option("--fix", is_flag=True, help="Repair what the checks find (roles, missing end token, doubled BOS) instead of failing; counted.")
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True,
              help="Processes; 0: one per core for a large input, else 1. The files are the same whatever the number.")
@json_option
def tokenize_(dataset: str, input_path: str | None, tokenizer: str, template: str | None, out: str, val: float | None, seed: int,
              tag: str | None, max_tokens: int | None, truncate: bool, fix: bool, workers: int, as_json: bool) -> None:
    """Tokenize conversations into nanoGPT-style token files with loss masks.

    Writes OUT/train.bin (token ids: uint16, or uint32 for a vocabulary over 65,536), train.idx
    (uint64 conversation starts), train.loss (1 byte a token: 1 on assistant turns and their
    end-of-turn token), the same for val with --val, and meta.json. Reads the dataset, or INPUT
    (a JSONL file as `chatloom export` writes it).

    The mask comes from rendering the template's prefixes, so it is right for any template. A
    template that refuses the roles, an assistant turn without its end token, a doubled BOS or a
    conversation with nothing to train on is an error; --fix repairs or drops it, counted. An input
    with no conversation, or whose every conversation is dropped, is an error too: nothing is written.

    \b
    Example usage:
        chatloom tokenize -o tokens --val 0.05                  # gpt2-chatml, ChatML
        chatloom tokenize chats.jsonl -o tokens --tokenizer cl100k_base --max-tokens 2048 --truncate
        chatloom tokenize -o tokens --tokenizer ./my-model --template llama-3 --fix
        python -c "import numpy as np; print(np.memmap('tokens/train.bin', dtype=np.uint16)[:20])"
    """
    from ..fileio import output_folder
    from ..formats.split import validation_ids
    from ..tokens import tokenize
    from ..tokens.writer import NothingKept

    if truncate and max_tokens is None:
        raise UsageError("--truncate needs --max-tokens N")
    template = _template_name(template, tokenizer)
    source = input_path or dataset
    if input_path is not None:
        total = None
        default = default_workers(size=os.path.getsize(input_path))
        ids = list(jsonl.read_ids(input_path)) if val is not None else None

        def convs() -> Iterator[Conversation]:
            return jsonl.read_path(input_path)
    else:
        from ..store import Store

        if not os.path.exists(dataset):
            raise UsageError(f"{dataset}: no such dataset; import something first, or give an INPUT file")
        store = Store(dataset)
        total = store.count()
        default = default_workers(conversations=total)
        ids = store.ids(tag=tag) if val is not None else None

        def convs() -> Iterator[Conversation]:
            return store.iter_conversations(tag=tag)
    if _is_empty(convs()):
        holds = f"has no conversation tagged '{tag}'" if tag and input_path is None else "holds no conversation"
        raise UsageError(f"{source}: nothing to tokenize: the {'file' if input_path else 'dataset'} {holds}")
    val_ids = validation_ids(ids, val, seed) if ids is not None else None
    if workers == 0:
        workers = default
    try:
        # a failed run leaves no folder it made; the bar runs no thread, so the workers can be forked
        with output_folder(out), progress_bar("tokenizing", total, thread=False) as update:
            stream = jsonl.RawLines(input_path) if input_path is not None else convs()  # a file's lines: the workers parse them
            meta = tokenize(stream, out, tokenizer=tokenizer, template=template, val_ids=val_ids, fix=fix,
                            max_tokens=max_tokens, truncate=truncate, workers=workers, progress=update,
                            extra_meta={"val": val, "seed": seed})
    except NothingKept as err:
        reasons = "; ".join(f"{n:,} × {reason}" for reason, n in err.report["dropped"].items())
        raise UsageError(f"{source}: nothing to tokenize: all {err.seen:,} conversations were dropped ({reasons}); "
                         "nothing written") from None
    if as_json:
        print_json(meta)
        return
    for name, counts in meta["splits"].items():
        click.echo(f"{name}: {counts['conversations']:,} conversations, {counts['tokens']:,} tokens "
                   f"({counts['trained_tokens']:,} trained) → {Path(out) / name}.bin")
    report = meta["report"]
    for kind in ("fixed", "dropped"):
        for reason, n in report[kind].items():
            examples = ", ".join(report["examples"].get(reason, []))
            click.echo(f"{kind}: {n:,} × {reason}" + (f" (e.g. {examples})" if examples else ""), err=True)
    if report["truncated"]:
        click.echo(f"truncated: {report['truncated']:,} conversations ({report['turns_cut']:,} turns cut)", err=True)
    click.echo(f"dtype {meta['dtype']}, vocabulary {meta['vocab_size']:,}; {Path(out) / 'meta.json'}")


def _is_empty(convs: Iterator[Conversation]) -> bool:
    """Whether ``convs`` holds no conversation (it reads the first, then closes the stream)."""
    try:
        return next(convs, None) is None
    finally:
        close = getattr(convs, "close", None)
        if close is not None:
            close()


def _token_texts(tok, ids: list[int]) -> list[str]:  # type: ignore[no-untyped-def]
    """Each token's own text (a byte-level piece of a character shows as U+FFFD)."""
    return [tok.decode([i]) for i in ids]


def _visible(text: str) -> str:
    return text.replace(" ", "·").replace("\n", "⏎").replace("\t", "→")


@cli.command("inspect")
@dataset_option
@click.argument("conv_id", metavar="ID")
@click.option("--tokenizer", default="gpt2-chatml", show_default=True, help=TOKENIZER_HELP)
@click.option("--template", default=None, help=TEMPLATE_HELP)
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None, help="Also write a self-contained HTML page.")
@json_option
def inspect_(dataset: str, conv_id: str, tokenizer: str, template: str | None, html_path: str | None, as_json: bool) -> None:
    """Show one conversation's tokens with their ids, colored by the loss mask.

    Green tokens train (the loss counts there), grey ones are context; special tokens are bold.
    What `tokenize` would repair (roles, a missing end token) is repaired here and said.

    \b
    Example usage:
        chatloom inspect chitchat:abc123
        chatloom inspect chitchat:abc123 --template llama-3 --tokenizer ./Llama-3-tokenizer
        chatloom inspect chitchat:abc123 --html tokens.html
    """
    from ..fileio import atomic_write
    from ..reports import render_inspect
    from ..store import Store
    from ..tokens import Encoder
    from ..tokens.tokenizer import get_tokenizer

    with Store(dataset) as store:
        conv = store.get(conv_id)
    tok = get_tokenizer(tokenizer)
    encoder = Encoder(tok, _template_name(template, tokenizer), fix=True)
    ids, mask = encoder.tokens(conv)
    report = encoder.report
    specials = set(tok.special_tokens.values())
    rows = [(i, text, m, i in specials) for i, text, m in zip(ids, _token_texts(tok, ids), mask)]
    title = f"{conv_id} · {tok.name} · template {encoder.template.name} · {len(ids):,} tokens, {sum(mask):,} trained"
    if html_path:
        with atomic_write(html_path) as fp:
            fp.write(render_inspect(rows, title).encode())
    if as_json:
        print_json({"id": conv_id, "tokenizer": tok.name, "template": encoder.template.name, "ids": ids,
                    "loss": list(mask), "fixed": dict(report.fixed)})
        return
    text = Text()
    for i, (token_id, piece, trained, special) in enumerate(rows):
        style = ("bold magenta" if special else "") + (" on dark_green" if trained else (" on grey23" if i % 2 else " on grey15"))
        text.append(_visible(piece), style=style.strip())
        text.append(f"{token_id}", style="dim")
        text.append("\n" if "\n" in piece else " ")
    console.print(text)
    console.print(Text(title, style="bold"))
    for reason, n in report.fixed.items():
        click.echo(f"fixed: {n} × {reason}", err=True)
    if 1 not in mask:
        click.echo("warning: no token trains here (no assistant turn?); tokenize would refuse it, or drop it with --fix", err=True)
    if html_path:
        click.echo(f"wrote {html_path}", err=True)
