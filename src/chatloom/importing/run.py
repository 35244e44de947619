"""``import_paths``: read files with importers and upsert them into a store, journaled.

    with Store("chatloom.db", create=True) as store:
        for result in import_paths(store, ["chats.jsonl"]):
            print(result.file, result.counts.added)
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import shutil
import sqlite3
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ChatloomError, SourceError, UsageError
from ..sources import Reader, Source, check_text, detect, get_source, read_head
from ..sources.stream import ask_for_me, me_absent, speaker_list
from ..store import ImportCounts, Store, fingerprint
from . import worker


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
    me_missing: str | None = None  # "--me matched none of its speakers: …" (message streams)
    error: str | None = None  # the file could not be read ("FILE:LINE: what is wrong"); the other files went on

    def to_dict(self) -> dict[str, Any]:
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
            "me_missing": self.me_missing,
            **({"error": self.error} if self.error else {}),
            **({"roles": self.roles, "dry_run": True} if self.dry_run else {}),
        }


class Plan(list[tuple[Path, Source, bool]]):
    """The files to import, each with its importer and whether it was detected; ``skipped``: the
    text files of a folder that no importer could read, with why (media files are not listed)."""

    skipped: list[tuple[str, str]]

    def __init__(self, files: Iterable[tuple[Path, Source, bool]] = (), skipped: list[tuple[str, str]] | None = None):
        super().__init__(files)
        self.skipped = skipped if skipped is not None else []


def _detect_folder(folder: Path, options: dict[str, Any], skipped: list[tuple[str, str]]) -> list[tuple[Path, Source]]:
    """Every file in a folder that some importer recognizes; the text files none does go to
    ``skipped`` with the reason (an export's images and audio are passed over quietly)."""
    found = []
    for file in sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith(".")):
        try:
            file = _utf8(file)
            found.append((file, detect(file, **options)))
        except SourceError as err:
            if file.name.lower().endswith(_TEXT_ENDINGS):
                skipped.append((display_name(file), err.message))
            continue
    if not found:
        raise SourceError("no file in this folder is in a format chatloom reads; pass -f FORMAT", file=str(folder))
    return found


_ZIPS: dict[Path, Path] = {}  # extracted folder → the zip it came from
_COPIES: dict[Path, Path] = {}  # UTF-8 copy → the UTF-16 file it was made from


def display_name(file: Path) -> str:
    """How a file is named to the user and in the journal: a zip member as ``ZIP!MEMBER``."""
    if file in _COPIES:
        return display_name(_COPIES[file])
    for folder, zip_path in _ZIPS.items():
        if file.is_relative_to(folder):
            return f"{zip_path}!{file.relative_to(folder)}"
    return str(file)


def _as_source_error(err: Exception, file: Path | None = None) -> ChatloomError:
    """An error met while reading, as the user should see it: a ``SourceError`` naming the
    user's file (not chatloom's UTF-8 copy or unzipped member), and any other fault of a
    reader (a shape it did not expect, nesting too deep, a damaged zip member) as one line
    about the file instead of a traceback (``--debug`` shows it)."""
    if isinstance(err, SourceError):
        if err.file is not None:
            err.file = display_name(Path(err.file))
        return err
    if isinstance(err, ChatloomError):
        return err
    name = display_name(file) if file is not None else None
    if isinstance(err, RecursionError):
        return SourceError("nested too deeply to read", file=name)
    if isinstance(err, MemoryError):
        return SourceError("too large to read into memory", file=name)
    if isinstance(err, zlib.error):
        return SourceError(f"a damaged zip member ({err})", file=name)
    return SourceError(f"cannot read it: {type(err).__name__}: {err}", file=name)


def _keep_copy(into: list[ImportCounts], counts: ImportCounts) -> None:
    into[0] = dataclasses.replace(counts)


def _reraise(err: Exception, file: Path) -> None:
    """Raise what ``err``, met reading ``file``, should be to the user; return when it is fine as
    it is (the caller then re-raises it): the store's own errors, and clear ones."""
    if isinstance(err, sqlite3.Error):
        return
    mapped = _as_source_error(err, file)
    if mapped is not err:
        raise mapped from err


_TEXT_ENDINGS = (".json", ".jsonl", ".ndjson", ".txt", ".csv", ".yml", ".yaml", ".md")


def _unzip(path: Path) -> Path:
    """A zip (ChatGPT's export comes as one) is read as the folder it holds: its text files only
    (an export's images and audio stay packed), copied out and removed when the process ends."""
    folder = Path(tempfile.mkdtemp(prefix="chatloom-zip-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    try:
        with zipfile.ZipFile(path) as z:
            members = [m for m in z.infolist() if not m.is_dir() and m.filename.lower().endswith(_TEXT_ENDINGS)]
            for member in members:
                target = (folder / member.filename).resolve()
                if not target.is_relative_to(folder.resolve()):  # no "../" escapes
                    raise SourceError(f"unsafe path in the zip: {member.filename}", file=str(path))
            z.extractall(folder, members)
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise SourceError(f"not a readable zip file ({err})", file=str(path)) from None
    _ZIPS[folder] = path
    return folder


def _utf8(file: Path) -> Path:
    """A UTF-16 file (with its BOM, as Windows tools write) is read through a UTF-8 copy, made
    streaming and removed when the process ends; any other file is returned as it is."""
    with open(file, "rb") as f:
        bom = f.read(2)
    if bom not in (b"\xff\xfe", b"\xfe\xff"):
        return file
    folder = Path(tempfile.mkdtemp(prefix="chatloom-utf8-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    copy = folder / file.name
    try:
        with open(file, encoding="utf-16", newline="") as src, open(copy, "w", encoding="utf-8", newline="") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except UnicodeError as err:
        raise SourceError(f"starts with a UTF-16 mark but is not UTF-16 text ({err.reason})", file=str(file)) from None
    _COPIES[copy] = file
    return copy


def _checked(file: Path, source: Source) -> Path:
    """``-f FORMAT`` on a file that is plainly another format is an error, not an empty import;
    a file no format recognizes from its head is read as ``FORMAT``, as the user says."""
    if not source.detectable:
        return file
    head = read_head(file)
    check_text(file, head)
    if not source.detect(file, head):
        try:
            other = detect(file).name
        except SourceError:  # no format claims it (a head that tells little): read it as the user says
            return file
        raise SourceError(f"this file is not in the {source.name} format; it looks like {other}", file=display_name(file))
    return file


def _files(paths: Sequence[str], fmt: str, options: dict[str, Any], skipped: list[tuple[str, str]]) -> Iterator[tuple[Path, Source, bool]]:
    for path in paths:
        p = Path(path)
        if p.is_file() and zipfile.is_zipfile(p):
            p = _unzip(p)
        elif p.is_file() and read_head(p).startswith(b"PK\x03\x04"):
            raise SourceError("a zip file that is cut short or damaged (no table of contents at its end)", file=str(p))
        if fmt == "auto":
            if path == "package":
                raise UsageError("PATH 'package' reads a packaged corpus: pass -f chitchat or -f chatterbot")
            if p.is_dir():
                for file, source in _detect_folder(p, options, skipped):
                    yield file, source, True
            else:
                file = _utf8(Source().resolve(str(p))[0])
                yield file, detect(file, **options), True
        else:
            source = get_source(fmt, **options)
            for file in source.resolve(str(p) if p.exists() else path):
                yield _checked(_utf8(file), source), source, False


def plan(paths: Sequence[str], fmt: str = "auto", **options: Any) -> Plan:
    """The files the paths name, each with its importer (and whether it was detected). Every
    path is checked here, before anything is written: a missing file or an unknown format
    fails the whole command up front. ``options`` go to the importers (``--me`` and others)."""
    skipped: list[tuple[str, str]] = []
    try:
        return Plan(_files(paths, fmt, options, skipped), skipped)
    except SourceError as err:
        raise _as_source_error(err) from None


def import_paths(store: Store, paths: Sequence[str], *, fmt: str = "auto", source_options: dict[str, Any] | None = None,
                 **options: Any) -> list[FileResult]:  # fmt: skip
    """Import every file the paths name (see ``import_files`` for the options)."""
    return import_files(store, plan(paths, fmt, **(source_options or {})), **options)


def import_files(
    store: Store,
    files: Sequence[tuple[Path, Source, bool]],
    *,
    strict: bool = False,
    tags: Sequence[str] = (),
    batch_size: int = 5000,
    dry_run: bool = False,
    on_file: Callable[[Path, Source, int], Callable[[int], None] | None] | None = None,
    on_error: Callable[[str], None] | None = None,
) -> list[FileResult]:
    """Import planned files (``plan``). Each file is journaled; ``strict`` makes each file all
    or nothing; ``dry_run`` reads and counts (against the store) but writes nothing.
    ``on_file(path, source, size)`` may return a progress callback (bytes read).

    A file that cannot be read raises its error; of several files, it gets a result with the
    ``error`` instead (``on_error`` hears it at once), with the counts of the batches it had
    committed, and the others are still imported. Anything but bad input (the dataset's errors,
    Ctrl+C, a fault of chatloom itself) stops everything."""
    results: list[FileResult] = []
    many = len(files) > 1

    def failed(err: Exception, file: Path, result: FileResult) -> None:
        """Of several files, one whose reader found it bad (a ``SourceError``) gets ``result``,
        with the error, and the others go on; anything else is raised as the user should see
        it: one file's error, the dataset's, a fault of chatloom itself (its traceback under
        ``--debug``)."""
        if not (many and isinstance(err, SourceError)):
            _reraise(err, file)
            raise err
        result.error = str(_as_source_error(err))
        results.append(result)
        if on_error is not None:
            on_error(result.error)

    for file, source, detected in files:
        progress = on_file(file, source, file.stat().st_size) if on_file else None
        reader = Reader(display_name(file), strict=strict, progress=progress)
        if dry_run:
            try:
                results.append(_preview(store, file, source, detected, reader))
            except Exception as err:
                failed(err, file, FileResult(display_name(file), source.name, ImportCounts(), reader.bad_count, reader.examples,
                                             detected, dry_run=True))  # fmt: skip
            continue
        if source.stream and not source.options.get("me"):
            check_me([(file, source, detected)])
        name = display_name(file)
        run, interrupted = store.journal_begin(name if "!" in name else str(file.resolve()), source.name, fingerprint(file))
        committed = [ImportCounts()]  # what the batches committed so far hold (none under --strict)
        on_batch = functools.partial(_keep_copy, committed)
        try:
            if worker.usable(file):  # parse on another core while this one writes
                with closing(worker.read_batches(source, file, reader, batch_size=batch_size)) as batches:
                    counts = store.import_batches(batches, tags=tags, atomic=strict, journal=run, on_batch=on_batch)
            else:
                counts = store.import_conversations(
                    source.read(file, reader), tags=tags, batch_size=batch_size, atomic=strict, journal=run, on_batch=on_batch
                )
        except Exception as err:
            store.journal_end(run, committed[0], status="failed", bad=reader.bad_count)
            failed(err, file, FileResult(name, source.name, committed[0], reader.bad_count, reader.examples, detected, interrupted))
            continue
        # On Ctrl+C the run stays 'running' in the journal, as after a kill: the next run of the
        # same file says it resumed it.
        store.journal_end(run, counts, status="done", bad=reader.bad_count)
        results.append(FileResult(name, source.name, counts, reader.bad_count, reader.examples, detected, interrupted,
                                  dict(reader.speakers), dict(reader.dropped), me_missing=_me_missing(source, reader)))  # fmt: skip
    # every file read a chat where --me is nobody (only chats have me_missing), and no failed file
    # kept a batch: nothing was written, a typo most likely
    read = [r for r in results if r.error is None]
    kept = any(r.counts.records for r in results if r.error is not None)
    if read and all(r.me_missing for r in read) and not kept:
        raise UsageError(f"{read[0].file}: {read[0].me_missing}; nothing was imported")
    return results


def _me_missing(source: Source, reader: Reader) -> str | None:
    if not (source.stream and me_absent(source.options, reader)):
        return None
    listing, example = speaker_list(reader)
    me = ", ".join(f"'{m}'" for m in source.options.get("me") or ())
    return f"--me {me} is none of its speakers: {listing}; pass --me '{example}' or another of them"


def check_me(files: Sequence[tuple[Path, Source, bool]]) -> None:
    """A chat export imported without ``--me``: read it, list its speakers and ask (UsageError).
    Nothing is written: call it before opening the dataset."""
    for file, source, _ in files:
        if source.stream and not source.options.get("me"):
            reader = Reader(display_name(file))
            try:
                for _ in source.read(file, reader):  # counts the speakers only
                    pass
            except Exception as err:
                _reraise(err, file)
                raise
            ask_for_me(reader)


def _preview(store: Store, file: Path, source: Source, detected: bool, reader: Reader) -> FileResult:
    """What importing ``file`` would do, without writing: added / updated / unchanged as the
    store stands, messages per role, speakers, and what would be dropped and why."""
    roles: Counter[str] = Counter()

    def counted() -> Iterator[Any]:
        for conv in source.read(file, reader):
            roles.update(m.role for m in conv.messages)
            yield conv

    counts = store.preview(counted(), tags=())  # errors: see import_files
    return FileResult(display_name(file), source.name, counts, reader.bad_count, reader.examples, detected, None,
                      dict(reader.speakers), dict(reader.dropped), dict(roles), dry_run=True)  # fmt: skip
