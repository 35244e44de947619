"""chatloom's own files: atomic writes (a temp file or folder beside the target, renamed over it only
when complete), and chatloom's home folder (``$CHATLOOM_HOME``, else ``~/.chatloom``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .errors import ChatloomError


def home() -> Path:
    """Where chatloom keeps its own files: ``$CHATLOOM_HOME``, else ``~/.chatloom``."""
    return Path(os.environ.get("CHATLOOM_HOME") or Path.home() / ".chatloom")


def cache_dir(*parts: str) -> Path:
    path = home().joinpath("cache", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: int = 0o644) -> Iterator[IO[bytes]]:
    """Write ``path`` all at once: readers see the old file or the whole new one, never half."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as err:
        raise ChatloomError(f"{target}: cannot write: {err.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fp:
            yield fp
            fp.flush()
            os.fsync(fp.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Write folder ``path`` all at once: yields a path (not yet created) in a temp folder beside
    it, which replaces ``path`` only when the block completes; on failure nothing changes."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as err:
        raise ChatloomError(f"{target}: cannot write: {err.strerror}") from None
    try:
        yield tmp / target.name
        if target.exists():
            os.rename(target, tmp / ".replaced")  # removed with tmp below
        os.rename(tmp / target.name, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
