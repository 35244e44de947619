"""The ``chatloom`` command line: a click group, shared option decorators, and the one place
where library errors become one line on stderr and exit code 2.

Commands live in one module per group — ``data`` (import, export), ``browse`` (ls, show, stats,
formats), ``edit`` (tag, rm, history, undo, settings, check), ``tokens`` (tokenize, inspect),
``pipeline`` (build), ``serve`` (chat, serve), ``train``, ``keys`` (keys, endpoints), ``generate``,
``studio``, ``sync`` (``COMMANDS``; a module is imported when one of its commands runs) — and stay
thin: they parse arguments into the library's typed options, call one library function, and
print; the library's errors become one line here (``ParamError``s name the flag the user typed).
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console

from ..errors import ChatloomError, ParamError

console = Console(highlight=False, soft_wrap=False)
err_console = Console(stderr=True, highlight=False)


def fail(message: str) -> click.exceptions.Exit:
    """Print ``error: MESSAGE`` and return the exit to raise (code 2)."""
    click.echo(f"error: {message}", err=True)
    return click.exceptions.Exit(2)


class ChatloomGroup(click.Group):
    """Turns library errors into ``error: …`` lines (exit 2); ``--debug`` shows the traceback."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        ctx.meta["chatloom.command"] = command, list(rest)  # the command that runs and its words: a ParamError names its flags
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(os.environ.get("CHATLOOM_DEBUG")) or bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except ParamError as err:
            if debug:
                raise
            raise fail(err.render(_flags(*ctx.meta.get("chatloom.command", (None, []))))) from None
        except ChatloomError as err:
            if debug:
                raise
            raise fail(str(err)) from None
        except sqlite3.Error as err:  # the store names its file in its own errors; this is the rest
            if debug:
                raise
            raise fail(f"{ctx.meta.get('chatloom.dataset', 'dataset')}: {err}") from None
        except BrokenPipeError:  # `chatloom ls | head`: the reader left; so do we, quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(0) from None
        except OSError as err:
            if debug:
                raise
            where = f"{err.filename}: " if getattr(err, "filename", None) else ""
            raise fail(f"{where}{err.strerror or err}") from None
        except KeyboardInterrupt:
            click.echo("interrupted: what was complete is kept and nothing is half-written; run the same command again to finish", err=True)
            raise click.exceptions.Exit(130) from None


def _flags(command: click.Command | None, words: list[str]) -> dict[str, str]:
    """The flag (or argument) of the running command for each library parameter: by the option's
    own name or its long flag's (``fmt`` and ``format`` for ``-f/--format``), spelled as the user
    typed it (``-f`` or ``--format``; one not typed, as the command declares it first); where the
    command passes it on under another name, as its ``param_flags`` say (``tokenize`` passes
    ``--val`` on as ``split``)."""
    names: dict[str, str] = {}
    if command is None:
        return names
    for param in command.params:
        if isinstance(param, click.Option) and param.name:
            typed = [o for o in param.opts if any(w == o or w.startswith(f"{o}=") for w in words)]
            flag = typed[0] if typed else param.opts[0]  # else as the command declares it first (-f)
            for long in (o for o in param.opts if o.startswith("--")):
                names[long[2:].replace("-", "_")] = flag
            names[param.name] = flag
        elif isinstance(param, click.Argument) and param.name:
            names[param.name] = param.human_readable_name
    names.update(getattr(command, "param_flags", {}))
    return names


def flag_names() -> dict[str, str]:
    """The running command's flag for each library parameter (``{"me": "--me", …}``): to show,
    in its own words, a library error or message that is not raised (``err.render(flag_names())``)."""
    ctx = click.get_current_context()
    _, words = ctx.meta.get("chatloom.command", (None, []))
    return _flags(ctx.command, words)


def param_flags(**flags: str) -> Callable[[click.Command], click.Command]:
    """Name the flags a command passes on to the library under another name, for its errors:
    ``@param_flags(split="--val")`` above ``@cli.command``."""

    def decorate(command: click.Command) -> click.Command:
        command.param_flags = flags  # type: ignore[attr-defined]
        return command

    return decorate


def dataset_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``-d/--dataset``: the path as given (the store says what is wrong with it, a folder included,
    in one line), remembered for the errors that name it."""

    def remember(ctx: click.Context, param: click.Parameter, value: str) -> str:
        ctx.meta["chatloom.dataset"] = value
        return value

    return click.option(
        "-d",
        "--dataset",
        type=click.Path(),
        envvar="CHATLOOM_DATASET",
        default="chatloom.db",
        show_default=True,
        callback=remember,
        help="The dataset file (SQLite); also $CHATLOOM_DATASET.",
    )(fn)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(fn)


def print_json(obj: Any) -> None:
    import orjson

    sys.stdout.buffer.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n")
    sys.stdout.flush()


@contextmanager
def progress_bar(description: str, total: int | None, *, thread: bool = True) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on a terminal (stderr); silent otherwise. Yields ``update(completed)``.
    ``thread=False``: redrawn at each update, not by a thread of its own (for work that forks its
    workers, which is safe only while the process runs no other thread)."""
    if not err_console.is_terminal:
        yield lambda completed: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err_console, transient=True, auto_refresh=thread,
    ) as progress:  # fmt: skip
        task = progress.add_task(description, total=total)
        yield lambda completed: progress.update(task, completed=completed, refresh=not thread)


#: the module of each built-in command (which registers itself on ``cli`` when its module is
#: imported): a command's module is imported when it runs, or all of them for ``--help``, so a
#: command does not pay for the others' imports (the store, the importers, the servers: 0.1 s
#: of every start)
COMMANDS = {
    "import": "data", "export": "data",
    "ls": "browse", "show": "browse", "stats": "browse", "formats": "browse",
    "tag": "edit", "rm": "edit", "history": "edit", "undo": "edit", "check": "edit", "settings": "edit",
    "generate": "generate", "keys": "keys", "endpoints": "keys", "build": "pipeline", "chat": "serve", "serve": "serve",
    "studio": "studio", "serve-dataset": "studio", "tokenize": "tokens", "inspect": "tokens", "train": "train",
    "diff": "sync", "sync": "sync", "pull": "sync", "push": "sync", "remote": "sync", "conflicts": "sync", "resolve": "sync",
}  # fmt: skip


class _Root(ChatloomGroup):
    """The ``chatloom`` group: a built-in command's module is imported when the command is asked for."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            module = COMMANDS.get(cmd_name)
            if module is not None:
                importlib.import_module(f"{__name__}.{module}")
            else:
                all_commands()  # an unknown name: click's "Did you mean …?" looks among them all
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="chatloom")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """chatloom: real conversations in, curated chat training data out.

    \b
    Example usage:
        chatloom import -f chitchat package      # a real corpus that ships on PyPI
        chatloom import chats.jsonl --tag mine   # format detected from the content
        chatloom ls --search "pizza"
        chatloom stats --plot tokens.png
        chatloom export -o out --split 0.1 --seed 0

    The dataset is ./chatloom.db unless -d PATH or $CHATLOOM_DATASET says otherwise.
    """


def all_commands() -> dict[str, click.Command]:
    """Every command, its module imported (for the docs and the tests that walk them)."""
    for module in sorted(set(COMMANDS.values())):
        importlib.import_module(f"{__name__}.{module}")
    return cli.commands


from ..plugins import any_others, load_plugins  # noqa: E402

if any_others() and load_plugins().hook.register_commands.get_hookimpls():  # a plugin's commands come after the built-ins, as they always did
    all_commands()
    load_plugins().hook.register_commands(cli=cli)

__all__ = ["COMMANDS", "all_commands", "cli"]
