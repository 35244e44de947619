"""``import_paths``: read files with importers and upsert them into a store, journaled.

    with Store("chatloom.db", create=True) as store:
        for result in import_paths(store, ["chats.jsonl"]):
            print(result.file, result.counts.added)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SourceError, UsageError
from .sources import Reader, Source, detect, get_source
from .store import ImportCounts, Store, fingerprint


@dataclass
class FileResult:
    file: str
    format: str
    counts: ImportCounts
    bad: int = 0
    examples: list[str] = field(default_factory=list)
    detected: bool = False
    interrupted: dict[str, Any] | None = None  # what an earlier, unfinished run had committed

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "format": self.format,
            "detected": self.detected,
            **vars(self.counts),
            "bad": self.bad,
            "bad_examples": self.examples,
            "resumed": self.interrupted is not None,
        }


def _detect_folder(folder: Path) -> list[tuple[Path, Source]]:
    """Every file in a folder that some importer recognizes (others are skipped)."""
    found = []
    for file in sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith(".")):
        try:
            found.append((file, detect(file)))
        except SourceError:
            continue
    if not found:
        raise SourceError("no file in this folder is in a format chatloom reads; pass -f FORMAT", file=str(folder))
    return found


def _files(paths: Sequence[str], fmt: str) -> Iterator[tuple[Path, Source, bool]]:
    for path in paths:
        if fmt == "auto":
            if path == "package":
                raise UsageError("PATH 'package' reads a packaged corpus: pass -f chitchat or -f chatterbot")
            p = Path(path)
            if p.is_dir():
                for file, source in _detect_folder(p):
                    yield file, source, True
            else:
                file = Source().resolve(path)[0]
                yield file, detect(file), True
        else:
            source = get_source(fmt)
            for file in source.resolve(path):
                yield file, source, False


def plan(paths: Sequence[str], fmt: str = "auto") -> list[tuple[Path, Source, bool]]:
    """The files the paths name, each with its importer (and whether it was detected). Every
    path is checked here, before anything is written: a missing file or an unknown format
    fails the whole command up front."""
    return list(_files(paths, fmt))


def import_paths(store: Store, paths: Sequence[str], *, fmt: str = "auto", **options: Any) -> list[FileResult]:
    """Import every file the paths name (see ``import_files`` for the options)."""
    return import_files(store, plan(paths, fmt), **options)


def import_files(
    store: Store,
    files: Sequence[tuple[Path, Source, bool]],
    *,
    strict: bool = False,
    tags: Sequence[str] = (),
    batch_size: int = 5000,
    on_file: Callable[[Path, Source, int], Callable[[int], None] | None] | None = None,
) -> list[FileResult]:
    """Import planned files (``plan``). Each file is journaled; ``strict`` makes each file all
    or nothing. ``on_file(path, source, size)`` may return a progress callback (bytes read)."""
    results = []
    for file, source, detected in files:
        progress = on_file(file, source, file.stat().st_size) if on_file else None
        reader = Reader(str(file), strict=strict, progress=progress)
        run, interrupted = store.journal_begin(str(file.resolve()), source.name, fingerprint(file))
        counts = ImportCounts()
        try:
            counts = store.import_conversations(
                source.read(file, reader), tags=tags, batch_size=batch_size, atomic=strict, journal=run
            )
        except Exception:
            store.journal_end(run, counts, status="failed", bad=reader.bad_count)
            raise
        # On Ctrl+C the run stays 'running' in the journal, as after a kill: the next run of the
        # same file says it resumed it.
        store.journal_end(run, counts, status="done", bad=reader.bad_count)
        results.append(FileResult(str(file), source.name, counts, reader.bad_count, reader.examples, detected, interrupted))
    return results
