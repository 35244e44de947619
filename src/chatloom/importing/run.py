"""Running an import: planned files into a store, each file journaled, its results counted.

    results = import_paths("chatloom.db", ["chats.jsonl"], ImportOptions(me=("Ana",)))
    for result in results:
        print(result.file, result.counts.added)

``import_paths`` is the whole way, as the command line takes it: plan the paths (``files.py``;
every path checked before the dataset is created or written), ask who ``me`` is in a chat
export given none, open (or create) the dataset, ``import_files``, and, when a first import
fails, remove the dataset it created rather than leave it empty. ``import_files`` reads each file
with its importer, in this process or (a large file) in a worker process (``worker.py``) while
this one writes, and journals it: begun, then done or failed, so an interrupted import resumes.

The rule for a file: it is imported whole, or not at all. A file that fails part-way (bad input
under ``strict``, a file cut short, a fault) has what its committed batches wrote taken back
(``Store.undo_import``): the dataset is as it was before that file. An import that is stopped
(Ctrl+C, a kill, a crash) keeps its committed batches, and running it again resumes it. Nothing
is committed into a dataset SQLite finds damaged (``Store.start_sound_check``, beside the first
batches).

Results, not prints: each file gets a ``FileResult``; of several files, one whose input is bad
gets its error there and the others go on; any other error is raised (typed, ``errors.py``).
"""

from __future__ import annotations

import sqlite3
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ChatloomError, ParamError, SourceError, StoreError
from ..sources import ImportOptions, Reader, Source
from ..sources.stream import ask_for_me, me_missing
from ..store import ImportCounts, SoundCheck, Store, fingerprint
from . import worker
from .files import Plan, plan


@dataclass
class FileResult:
    file: str
    format: str
    counts: ImportCounts
    bad: int = 0
    examples: list[str] = field(default_factory=list)
    detected: bool = False
    interrupted: dict[str, Any] | None = None  # what an earlier, unfinished run had committed
    speakers: dict[str, int] = field(default_factory=dict)  # posts per speaker (message streams)
    dropped: dict[str, int] = field(default_factory=dict)  # what was left out, by reason
    roles: dict[str, int] = field(default_factory=dict)  # messages per role (dry runs)
    dry_run: bool = False
    me_missing: ParamError | None = None  # "me 'X' is none of its speakers: …" (message streams)
    failure: ChatloomError | None = None  # the file could not be read ("FILE:LINE: what is wrong"); the other files went on
    taken_back: int = 0  # a failed file: the conversations its committed batches had written, taken back

    @property
    def error(self) -> str | None:
        """The failure's message, parameters named as the library names them."""
        return None if self.failure is None else str(self.failure)

    def to_dict(self, names: dict[str, str] | None = None) -> dict[str, Any]:
        """The result as JSON would hold it; ``names``: what to call the parameters messages name
        (the command line passes its flags)."""
        names = names or {}
        return {
            "file": self.file,
            "format": self.format,
            "detected": self.detected,
            **vars(self.counts),
            "bad": self.bad,
            "bad_examples": self.examples,
            "resumed": self.interrupted is not None,
            "speakers": self.speakers,
            "dropped": self.dropped,
            "me_missing": None if self.me_missing is None else self.me_missing.render(names),
            **({"error": self.failure.render(names), "taken_back": self.taken_back} if self.failure is not None else {}),
            **({"roles": self.roles, "dry_run": True} if self.dry_run else {}),
        }


class ImportResult(list[FileResult]):
    """Each file's ``FileResult``; ``conversations``: how many the dataset holds after it;
    ``skipped``: the text files of folders that no importer could read, each as its error."""

    conversations: int
    skipped: list[SourceError]

    def __init__(self, results: Sequence[FileResult] = (), conversations: int = 0, skipped: list[SourceError] | None = None):
        super().__init__(results)
        self.conversations = conversations
        self.skipped = skipped if skipped is not None else []


OnFile = Callable[[Path, Source, int], Callable[[int], None] | None]


def import_paths(
    dataset: str | Path | Store,
    paths: Sequence[str],
    options: ImportOptions | None = None,
    *,
    fmt: str = "auto",
    strict: bool = False,
    tags: Sequence[str] = (),
    batch_size: int = 5000,
    dry_run: bool = False,
    on_plan: Callable[[Plan], None] | None = None,
    on_file: OnFile | None = None,
    on_error: Callable[[FileResult], None] | None = None,
) -> ImportResult:
    """Import every file the paths name into ``dataset`` (a path, created if need be, or an
    open ``Store``), each file read with ``fmt`` (``auto``: detected) and ``options``.

    Every path is planned and checked before anything is written (``on_plan`` hears the plan:
    what a folder skipped); a chat export given no ``me`` is read for its speakers and the
    question raised (``ParamError``). A ``dry_run`` reads and counts against the dataset (an
    empty one if there is none) and writes nothing. A new dataset that ends empty because the
    import failed (an error, or a file that could not be read) is removed. For ``strict``,
    ``tags``, ``batch_size``, ``on_file`` and ``on_error`` see ``import_files``."""
    with plan(paths, fmt, options) as files:
        if on_plan is not None:
            on_plan(files)
        if not dry_run:
            check_me(files)
        kw: dict[str, Any] = dict(strict=strict, tags=tags, batch_size=batch_size, dry_run=dry_run, on_file=on_file, on_error=on_error)
        if isinstance(dataset, Store):
            results = import_files(dataset, files, **kw)
            return ImportResult(results, dataset.count(), files.skipped)
        path = Path(dataset)
        existed = path.exists()
        zero = existed and path.is_file() and path.stat().st_size == 0  # becomes a dataset (see Store)
        done = False
        try:
            with Store(":memory:" if dry_run and not existed else path, create=True) as store:
                results = import_files(store, files, **kw)
                total = store.count()
            done = not any(r.failure for r in results)
        finally:
            if not done and (not existed or zero) and not dry_run:
                _remove_if_empty(path, zero)  # a failed first import leaves no empty dataset behind
        return ImportResult(results, total, files.skipped)


def _remove_if_empty(path: Path, zero: bool) -> None:
    """Remove the dataset a failed first import made, if it holds nothing; ``zero``: it was a
    zero-byte file, which it is again."""
    try:
        with Store(path) as store:
            empty = store.is_empty()
    except Exception:
        return
    if empty:
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        if zero:
            path.write_bytes(b"")
        else:
            path.unlink(missing_ok=True)


def import_files(
    store: Store,
    files: Sequence[tuple[Path, Source, bool]],
    *,
    strict: bool = False,
    tags: Sequence[str] = (),
    batch_size: int = 5000,
    dry_run: bool = False,
    on_file: OnFile | None = None,
    on_error: Callable[[FileResult], None] | None = None,
) -> list[FileResult]:
    """Import planned files (``plan``). Each file is journaled, and imported whole or not at all
    (a file that fails has what it had committed taken back: see the module's docstring);
    ``strict`` makes a bad record fail its file; ``dry_run`` reads and counts (against the store)
    but writes nothing. ``on_file(path, source, size)`` may return a progress callback (bytes
    read). Nothing is committed before SQLite's quick check has found the file sound.

    A file that cannot be read raises its error; of several files, it gets a result with the
    ``failure`` instead (``on_error`` hears it at once), with nothing of it kept, and the others
    are still imported. Anything but bad input (the dataset's errors, Ctrl+C, a fault of
    chatloom itself) stops everything."""
    files = files if isinstance(files, Plan) else Plan(files)
    results: list[FileResult] = []
    many = len(files) > 1

    def failed(err: Exception, file: Path, result: FileResult) -> None:
        """Of several files, one whose reader found it bad (a ``SourceError``) gets ``result``,
        with the error, and the others go on; anything else is raised as the user should see
        it: one file's error, the dataset's, a fault of chatloom itself (its traceback under
        ``--debug``)."""
        if not (many and isinstance(err, SourceError)):
            _reraise(err, file, files)
            raise err
        result.failure = _as_source_error(err, files)
        results.append(result)
        if on_error is not None:
            on_error(result)

    sound = None if dry_run else store.start_sound_check()  # no import into a damaged file
    try:
        _import_each(store, files, results, failed, strict=strict, tags=tags, batch_size=batch_size, dry_run=dry_run,
                     on_file=on_file, sound=sound)  # fmt: skip
    finally:
        if sound is not None:
            sound.close()
    # nothing was imported (no file, read or failed, gave a conversation: a failed one is taken
    # back) and me is nobody in a chat read: a typo most likely, and the reason nothing came of
    # it. Only chats have me_missing.
    missing = next((r for r in results if r.failure is None and r.me_missing is not None), None)
    if missing is not None and not any(r.counts.records for r in results):
        assert missing.me_missing is not None
        nothing = "nothing would be imported" if dry_run else "nothing was imported"
        raise ParamError("{file}: " + missing.me_missing.template + "; " + nothing, file=missing.file, **missing.me_missing.values)
    return results


def _import_each(
    store: Store, files: Plan, results: list[FileResult], failed: Callable[[Exception, Path, FileResult], None], *,
    strict: bool, tags: Sequence[str], batch_size: int, dry_run: bool, on_file: OnFile | None, sound: SoundCheck | None,
) -> None:  # fmt: skip
    """``import_files``' loop: each file read, written and journaled, its result in ``results``."""
    name_of = files.display_name
    for file, source, detected in files:
        progress = on_file(file, source, file.stat().st_size) if on_file else None
        name = name_of(file)
        reader = Reader(name, strict=strict, progress=progress)
        if dry_run:
            try:
                results.append(_preview(store, file, source, detected, reader, name))
            except Exception as err:
                failed(err, file, FileResult(name, source.name, ImportCounts(), reader.bad_count, reader.examples, detected, dry_run=True))
            continue
        if source.stream and not source.options.me:
            check_me(Plan([(file, source, detected)], stage=files.stage))
        run = store.journal_begin(name if "!" in name else str(file.resolve()), source.name, fingerprint(file))
        try:
            if worker.usable(file):  # parse on another core while this one writes
                with closing(worker.read_batches(source, file, reader, batch_size=batch_size)) as batches:
                    counts = store.import_batches(batches, tags=tags, atomic=strict, journal=run, sound=sound)
            else:
                counts = store.import_conversations(
                    source.read(file, reader), tags=tags, batch_size=batch_size, atomic=strict, journal=run, sound=sound
                )
            if (all_bad := reader.all_bad(counts.records)) is not None:
                raise all_bad
        except Exception as err:
            try:
                taken, _ = store.undo_import(run, bad=reader.bad_count)  # the file whole or not at all
            except ChatloomError as undo_err:
                raise StoreError(f"{_as_source_error(err, files, file)}; what it had written could not be taken back: {undo_err}") from err
            failed(err, file, FileResult(name, source.name, ImportCounts(), reader.bad_count, reader.examples, detected,
                                         run.interrupted, taken_back=taken))  # fmt: skip
            continue
        # On Ctrl+C the run stays 'running' in the journal, as after a kill: what it committed is
        # kept, and the next run of the same file says it resumed it.
        store.journal_end(run, counts, status="done", bad=reader.bad_count)
        missing = me_missing(source.options, reader) if source.stream else None
        results.append(FileResult(name, source.name, counts, reader.bad_count, reader.examples, detected, run.interrupted,
                                  dict(reader.speakers), dict(reader.dropped), me_missing=missing))  # fmt: skip


def check_me(files: Plan) -> None:
    """A chat export imported without ``me``: read it, list its speakers and ask (``ParamError``).
    Nothing is written: call it before opening the dataset."""
    for file, source, _ in files:
        if source.stream and not source.options.me:
            reader = Reader(files.display_name(file))
            try:
                for _ in source.read(file, reader):  # counts the speakers only
                    pass
                if (all_bad := reader.all_bad(0)) is not None:  # no speaker to ask about
                    raise all_bad
            except Exception as err:
                _reraise(err, file, files)
                raise
            ask_for_me(reader)


def _preview(store: Store, file: Path, source: Source, detected: bool, reader: Reader, name: str) -> FileResult:
    """What importing ``file`` would do, without writing: added / updated / unchanged as the
    store stands, messages per role, speakers, and what would be dropped and why."""
    roles: Counter[str] = Counter()

    def counted() -> Iterator[Any]:
        for conv in source.read(file, reader):
            roles.update(m.role for m in conv.messages)
            yield conv

    counts = store.preview(counted(), tags=())  # errors: see import_files
    if (all_bad := reader.all_bad(counts.records)) is not None:
        raise all_bad
    missing = me_missing(source.options, reader) if source.stream else None
    return FileResult(name, source.name, counts, reader.bad_count, reader.examples, detected, None,
                      dict(reader.speakers), dict(reader.dropped), dict(roles), dry_run=True, me_missing=missing)  # fmt: skip


def _as_source_error(err: Exception, files: Plan, file: Path | None = None) -> ChatloomError:
    """An error met while reading, as the user should see it: a ``SourceError`` naming the
    user's file (not chatloom's UTF-8 copy or unzipped member), and any other fault of a
    reader (a shape it did not expect, nesting too deep, a damaged zip member) as one line
    about the file instead of a traceback (``--debug`` shows it)."""
    if isinstance(err, SourceError):
        return files.stage.user_error(err)
    if isinstance(err, ChatloomError):
        return err
    name = files.display_name(file) if file is not None else None
    if isinstance(err, RecursionError):
        return SourceError("nested too deeply to read", file=name)
    if isinstance(err, MemoryError):
        return SourceError("too large to read into memory", file=name)
    if isinstance(err, zlib.error):
        return SourceError(f"a damaged zip member ({err})", file=name)
    return SourceError(f"cannot read it: {type(err).__name__}: {err}", file=name)


def _reraise(err: Exception, file: Path, files: Plan) -> None:
    """Raise what ``err``, met reading ``file``, should be to the user; return when it is fine as
    it is (the caller then re-raises it): the store's own errors, and clear ones."""
    if isinstance(err, sqlite3.Error):
        return
    mapped = _as_source_error(err, files, file)
    if mapped is not err:
        raise mapped from err
