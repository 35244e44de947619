"""What every malformed input must end in: a clean error, or a partial result that says so.

``outcome(run, args, file=…, dataset=…)`` runs the CLI in-process (a traceback fails the test, as
``catch_exceptions=False``) and checks one of the two endings the README promises:

- **error**: exit 2, stderr is one line ``error: …`` that names the file (and the dataset file,
  if there is one, is byte for byte as it was);
- **partial**: exit 0, and stderr counts what was skipped with the file's name in it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

from click.testing import Result


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def outcome(run: Callable[..., Result], args: Sequence[str], *, file: Path | str, dataset: Path | None = None,
            partial_ok: bool = False) -> str:
    """``"error"`` or ``"partial"``; fails the test on anything else."""
    before = digest(dataset) if dataset is not None else None
    result = run(*args)
    name = Path(file).name
    err = result.stderr.strip()
    if result.exit_code == 2:
        lines = err.splitlines()
        assert len(lines) == 1, f"{args}: error is {len(lines)} lines:\n{err}"
        assert lines[0].startswith("error: "), f"{args}: {lines[0]!r}"
        assert name in lines[0], f"{args}: the error does not name {name}: {lines[0]!r}"
        assert "Traceback" not in err
        if dataset is not None:
            assert digest(dataset) == before, f"{args}: the dataset changed on an error"
        return "error"
    assert partial_ok, f"{args}: exit {result.exit_code}, expected a clean error (exit 2)\n{result.output}\n{err}"
    assert result.exit_code == 0, f"{args}: exit {result.exit_code}\n{err}"
    assert name in err and "skipped" in err.lower(), f"{args}: a partial result must say what was skipped, in {name}:\n{err}"
    return "partial"
