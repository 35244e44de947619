"""chatloom's own files: atomic writes (a temp file or folder beside the target, renamed over it only
when complete), scratch folders, the clean-up of what a killed run left, and chatloom's home folder
(``$CHATLOOM_HOME``, else ``~/.chatloom``).

Every temporary name says it is chatloom's and which process made it: ``.NAME.PID.XXXXXXXX.tmp``
beside a target ``NAME`` (``atomic_write``, ``atomic_folder``) and ``.chatloom-KIND-PID-XXXXXXXX``
(``scratch_folder``). A run that ends, or stops on Ctrl+C or an error, removes its own (their
``with`` blocks); one that was killed cannot, so the next run in the same folder removes those
whose process no longer runs (``remove_stale``), and never a file of another name. An output
folder a run makes (``output_folder``) is taken back when the run fails and it is still empty.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import ChatloomError

_RANDOM = "[a-z0-9_]{8}"  # the part tempfile.mkstemp / mkdtemp make up
_TEMPORARY = re.compile(rf"\.(?P<target>.+)\.(?P<pid>[0-9]+)\.{_RANDOM}\.tmp")
_SCRATCH = re.compile(rf"\.chatloom-[a-z]+-(?P<pid>[0-9]+)-{_RANDOM}")
#: what chatloom made before a name held its process: ``.NAME.XXXXXXXX.tmp``, ``.chatloom-build-XXXXXXXX``
_OLD_TEMPORARY = re.compile(rf"\.(?P<target>.+)\.{_RANDOM}\.tmp")
_OLD_SCRATCH = re.compile(rf"\.chatloom-build-{_RANDOM}")


def home() -> Path:
    """Where chatloom keeps its own files: ``$CHATLOOM_HOME``, else ``~/.chatloom``."""
    return Path(os.environ.get("CHATLOOM_HOME") or Path.home() / ".chatloom")


def cache_dir(*parts: str) -> Path:
    path = home().joinpath("cache", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_cached(kind: str, name: str) -> Any:
    """A value ``write_cached`` kept in chatloom's cache (``cache/KIND/NAME``), marked as used now
    (its mtime); None where there is none, or none that reads back whole: the file is the sha256
    of its content, then the content (``marshal``: builtin types only, no code), so one cut short
    or changed is as good as none, and so is a cache that cannot be read."""
    import hashlib
    import marshal

    try:
        path = cache_dir(kind) / name
        data = path.read_bytes()
        if hashlib.sha256(data[32:]).digest() != data[:32]:
            return None
        value = marshal.loads(data[32:])
    except (OSError, EOFError, ValueError, TypeError):
        return None
    try:
        os.utime(path)
    except OSError:  # (a cache that can be read, not touched: used all the same)
        pass
    return value


def write_cached(kind: str, name: str, value: Any) -> bool:
    """Keep ``value`` in chatloom's cache for ``read_cached``, written whole or not at all; False
    where the cache cannot be written (the value is then made again next time)."""
    import hashlib
    import marshal

    payload = marshal.dumps(value)
    try:
        with atomic_write(cache_dir(kind) / name) as f:
            f.write(hashlib.sha256(payload).digest() + payload)
    except (OSError, ChatloomError):  # (atomic_write says it cannot in a ChatloomError)
        return False
    return True


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: int = 0o644) -> Iterator[IO[bytes]]:
    """Write ``path`` all at once: readers see the old file or the whole new one, never half."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
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
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent))
    except OSError as err:
        raise ChatloomError(f"{target}: cannot write: {err.strerror}") from None
    try:
        yield tmp / target.name
        if target.exists():
            os.rename(target, tmp / ".replaced")  # removed with tmp below
        os.rename(tmp / target.name, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def output_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """``path``, made (with its parents) for a run's outputs; when the run fails, the folders this
    made are removed again if they are still empty, so that a failed run leaves nothing behind."""
    target = Path(path)
    made = [p for p in (target, *target.parents) if not p.exists()]  # those below the first that is
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ChatloomError(f"{target}: cannot make the output folder: {err.strerror}") from None
    try:
        yield target
    except BaseException:
        for folder in made:  # the deepest first
            try:
                folder.rmdir()
            except OSError:  # not empty (a file of another run), or gone
                break
        raise


@contextmanager
def scratch_folder(parent: str | os.PathLike[str], kind: str) -> Iterator[Path]:
    """A scratch folder ``.chatloom-KIND-PID-XXXXXXXX`` in ``parent``, removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix=f".chatloom-{kind}-{os.getpid()}-", dir=parent) as path:
        yield Path(path)


def remove_stale(folder: str | os.PathLike[str], targets: Iterable[str] = ()) -> list[Path]:
    """Remove from ``folder`` the temporary files and folders that chatloom runs which were killed
    left there: those named as chatloom names them (see the module's docstring) by a process that
    no longer runs, and, for the ``targets`` this run is about to write, those chatloom named
    before names held a process. Returns what was removed; nothing else is touched."""
    folder = Path(folder)
    targets = set(targets)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for path in entries:
        name = path.name
        found = _TEMPORARY.fullmatch(name) or _SCRATCH.fullmatch(name)
        if found is not None:
            stale = not _running(int(found["pid"]))
        else:
            old = _OLD_TEMPORARY.fullmatch(name)
            stale = (old is not None and old["target"] in targets) or _OLD_SCRATCH.fullmatch(name) is not None
        if not stale:
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            pass  # another run removed it first
        except OSError:
            continue
        removed.append(path)
    return removed


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs (this one does; one of another user counts as running; on
    Windows every one does: there ``os.kill`` would end it)."""
    if pid == os.getpid() or os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
