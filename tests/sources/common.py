"""Helpers the importer tests share: read a file with an importer, check a one-line CLI error,
and show a library error as the command line does."""

import re
from contextlib import contextmanager

import pytest

from chatloom.sources import Reader, detect, get_source

#: the flags ``chatloom import`` shows for the parameters library messages name
CLI_FLAGS = {"me": "--me", "date_format": "--date-format", "strict": "--strict", "format": "-f"}


def read(path, fmt=None, **options):
    source = get_source(fmt, **options) if fmt else detect(path, **options)
    reader = Reader(str(path))
    return list(source.read(path, reader)), reader, source.name


def read_all(name, path, strict=False):
    reader = Reader(str(path), strict=strict)
    return list(get_source(name).read(path, reader)), reader


def one_error_line(result, name):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {name}"), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def as_cli_says(err):
    """A library error's message as ``chatloom import`` shows it (``me`` as ``--me``, …)."""
    return err.render(CLI_FLAGS)


@contextmanager
def raises_as_cli_says(kind, pattern):
    """``pytest.raises(kind, match=pattern)``, matched against the message as the command line
    shows it: the library's own names its parameters (``date_format``), the CLI its flags."""
    with pytest.raises(kind) as raised:
        yield raised
    assert re.search(pattern, as_cli_says(raised.value)), as_cli_says(raised.value)
