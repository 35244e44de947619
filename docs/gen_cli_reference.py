"""Write docs/cli-reference.md from the CLI's own --help texts (``make docs``).

tests/test_docs.py fails when the file is out of date or a command is missing from it.

    .venv/bin/python docs/gen_cli_reference.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from click.testing import CliRunner

from chatloom.cli import all_commands, cli

TARGET = Path(__file__).with_name("cli-reference.md")


def render() -> str:
    runner = CliRunner()
    parts = [
        "# CLI reference",
        "",
        "Generated from `--help` by `docs/gen_cli_reference.py` (`make docs`); do not edit by hand.",
        "",
        "## chatloom",
        "",
        "```",
        runner.invoke(cli, ["--help"], prog_name="chatloom", terminal_width=100).output.rstrip(),
        "```",
    ]
    for words in _commands():
        help_text = runner.invoke(cli, [*words, "--help"], prog_name="chatloom", terminal_width=100).output.rstrip()
        parts += ["", f"## chatloom {' '.join(words)}", "", "```", help_text, "```"]
    return "\n".join(parts) + "\n"


def _commands() -> list[list[str]]:
    """Every command's words: ``["ls"]``, and a group's visible subcommands (``["train", "merge"]``)."""
    import click

    found = []
    for name in sorted(all_commands()):
        found.append([name])
        command = cli.commands[name]
        if isinstance(command, click.Group):
            found += [[name, sub] for sub in sorted(command.commands) if not command.commands[sub].hidden]
    return found


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET}", file=sys.stderr)
