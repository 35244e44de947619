"""What an import reads: the paths resolved to files, each with its importer, checked up front.

    with plan(["exports/", "chatgpt-export.zip"], options=ImportOptions(me=("Ana",))) as files:
        for file, source, detected in files:
            print(files.display_name(file), source.name, detected)

A path is a file, a folder (every file in it some importer recognizes; the text files none does
are ``skipped``, with why) or a zip (read as the folder it holds). Some files are read through a
temporary copy: a zip's text members are unpacked, and a UTF-16 file (with its BOM) is converted
to UTF-8. Those copies live in the plan's ``Staging`` and are removed when the ``with`` block
ends, also on an error, so a process that imports many files (a server) keeps none of them; a
copy is named to the user as the file it stands for (``export.zip!conversations.json``).
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import ParamError, SourceError, SourceParamError
from ..sources import ImportOptions, Source, check_text, detect, get_source, read_head
from ..sources.options import options_of

_TEXT_ENDINGS = (".json", ".jsonl", ".ndjson", ".txt", ".csv", ".yml", ".yaml", ".md")

#: A zip's text members are judged by the sizes its table of contents declares before any is
#: unpacked (unpacking stops at the declared size: a member that lies fails its CRC check).
#: Chat exports pack 5 to 30 times; a zip bomb a thousand times.
ZIP_MAX_RATIO = 100  # a member may unpack to at most this many times its packed size…
ZIP_RATIO_FROM = 16 << 20  # …once it unpacks to more than this (a small member may pack as it likes)
ZIP_MAX_TOTAL = 8 << 30  # the text members of one zip, unpacked, together


class Staging:
    """The temporary files of one import, removed by ``close`` (or the end of a ``with`` block)."""

    def __init__(self) -> None:
        self.zips: dict[Path, Path] = {}  # extracted folder → the zip it came from
        self.copies: dict[Path, Path] = {}  # UTF-8 copy → the UTF-16 file it was made from
        self.folders: list[Path] = []  # every temporary folder made, to remove

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove every unpacked member and converted copy."""
        while self.folders:
            shutil.rmtree(self.folders.pop(), ignore_errors=True)

    def _folder(self, prefix: str) -> Path:
        folder = Path(tempfile.mkdtemp(prefix=prefix))
        self.folders.append(folder)
        return folder

    def display_name(self, file: Path) -> str:
        """How a file is named to the user and in the journal: a zip member as ``ZIP!MEMBER``, a
        UTF-8 copy as the file it was made from."""
        if file in self.copies:
            return self.display_name(self.copies[file])
        for folder, zip_path in self.zips.items():
            if file.is_relative_to(folder):
                return f"{zip_path}!{file.relative_to(folder)}"
        return str(file)

    def user_error(self, err: SourceError) -> SourceError:
        """``err`` naming the user's file, not chatloom's UTF-8 copy or unpacked member."""
        if err.file is not None:
            err.file = self.display_name(Path(err.file))
        return err

    def unzip(self, path: Path) -> Path:
        """A zip (ChatGPT's export comes as one) is read as the folder it holds: its text files
        only (an export's images and audio stay packed), copied out here."""
        folder = self._folder("chatloom-zip-")
        try:
            with zipfile.ZipFile(path) as z:
                members = [m for m in z.infolist() if not m.is_dir() and m.filename.lower().endswith(_TEXT_ENDINGS)]
                for member in members:
                    target = (folder / member.filename).resolve()
                    if not target.is_relative_to(folder.resolve()):  # no "../" escapes
                        raise SourceError(f"unsafe path in the zip: {member.filename}", file=str(path))
                _check_sizes(path, members, folder)
                z.extractall(folder, members)
        except (zipfile.BadZipFile, zlib.error, EOFError) as err:
            raise SourceError(f"not a readable zip file ({err})", file=str(path)) from None
        self.zips[folder] = path
        return folder

    def utf8(self, file: Path) -> Path:
        """A UTF-16 file (with its BOM, as Windows tools write) is read through a UTF-8 copy, made
        streaming, here; any other file is returned as it is."""
        with open(file, "rb") as f:
            bom = f.read(2)
        if bom not in (b"\xff\xfe", b"\xfe\xff"):
            return file
        copy = self._folder("chatloom-utf8-") / file.name
        try:
            with open(file, encoding="utf-16", newline="") as src, open(copy, "w", encoding="utf-8", newline="") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except UnicodeError as err:
            raise SourceError(f"starts with a UTF-16 mark but is not UTF-16 text ({err.reason})", file=str(file)) from None
        self.copies[copy] = file
        return copy


def _size(n: float) -> str:
    """``512 bytes``, ``3.1 MB``, ``3.0 GB``."""
    if n < 1000:
        return f"{n:,.0f} bytes"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            break
    return f"{n:,.1f} {unit}"


def _check_sizes(path: Path, members: list[zipfile.ZipInfo], folder: Path) -> None:
    """Refuse a zip bomb before unpacking anything: a member that would unpack to more than
    ``ZIP_MAX_RATIO`` times its packed size, text members that would unpack to more than
    ``ZIP_MAX_TOTAL`` together, or to more than the temporary folder has room for."""
    for m in members:
        if m.file_size > ZIP_RATIO_FROM and m.file_size > ZIP_MAX_RATIO * max(m.compress_size, 1):
            raise SourceError(
                f"would unpack to {_size(m.file_size)} from {_size(m.compress_size)} ({m.file_size // max(m.compress_size, 1):,} times "
                f"as large); refused as a zip bomb (a member may unpack to {ZIP_MAX_RATIO}× its size); unzip it yourself if you trust it",
                file=f"{path}!{m.filename}",
            )  # fmt: skip
    total = sum(m.file_size for m in members)
    free = shutil.disk_usage(folder).free
    if total > min(ZIP_MAX_TOTAL, free):
        room = f"the {_size(ZIP_MAX_TOTAL)} chatloom unpacks at most" if total > ZIP_MAX_TOTAL else f"the {_size(free)} free in {folder.parent}"
        big = max(members, key=lambda m: m.file_size)
        raise SourceError(f"its text files would unpack to {_size(total)}, more than {room}; unzip it yourself "
                          "and import the folder", file=f"{path}!{big.filename}")  # fmt: skip


class Plan(list[tuple[Path, Source, bool]]):
    """The files to import, each with its importer and whether it was detected; ``skipped``: the
    text files of a folder that no importer could read, each as its error (media files are not
    listed). A context manager: its ``stage``'s temporary files go when the block ends."""

    skipped: list[SourceError]
    stage: Staging

    def __init__(self, files: Iterable[tuple[Path, Source, bool]] = (), skipped: list[SourceError] | None = None,
                 stage: Staging | None = None):  # fmt: skip
        super().__init__(files)
        self.skipped = skipped if skipped is not None else []
        self.stage = stage if stage is not None else Staging()

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.stage.close()

    def display_name(self, file: Path) -> str:
        """How ``file`` is named to the user (``Staging.display_name``)."""
        return self.stage.display_name(file)


def plan(paths: Sequence[str], fmt: str = "auto", options: ImportOptions | None = None, *, stage: Staging | None = None,
         **changes: Any) -> Plan:  # fmt: skip
    """The files the paths name, each with its importer (and whether it was detected). Every
    path is checked here, before anything is written: a missing file or an unknown format
    fails the whole import up front. ``options`` (with ``changes``, ``me=["Ana"]``…) go to the
    importers. Use the plan as a context manager: its temporary files (in ``stage``, a new
    ``Staging`` unless given) are removed when the block ends; they are at once if this fails."""
    options = options_of(options, **changes)
    stage = stage if stage is not None else Staging()
    skipped: list[SourceError] = []
    try:
        return Plan(_files(paths, fmt, options, stage, skipped), skipped, stage)
    except SourceError as err:
        stage.close()
        raise stage.user_error(err) from None
    except BaseException:
        stage.close()
        raise


def _files(paths: Sequence[str], fmt: str, options: ImportOptions, stage: Staging,
           skipped: list[SourceError]) -> Iterator[tuple[Path, Source, bool]]:  # fmt: skip
    for path in paths:
        p = Path(path)
        if p.is_file() and zipfile.is_zipfile(p):
            p = stage.unzip(p)
        elif p.is_file() and read_head(p).startswith(b"PK\x03\x04"):
            raise SourceError("a zip file that is cut short or damaged (no table of contents at its end)", file=str(p))
        if fmt == "auto":
            if path == "package":
                raise ParamError("PATH 'package' reads a packaged corpus: pass {format} chitchat or {format} chatterbot")
            if p.is_dir():
                for file, source in _detect_folder(p, options, stage, skipped):
                    yield file, source, True
            else:
                file = stage.utf8(Source().resolve(str(p))[0])
                yield file, detect(file, options), True
        else:
            source = get_source(fmt, options)
            for file in source.resolve(str(p) if p.exists() else path):
                yield _checked(stage.utf8(file), source, stage), source, False


def _detect_folder(folder: Path, options: ImportOptions, stage: Staging,
                   skipped: list[SourceError]) -> list[tuple[Path, Source]]:  # fmt: skip
    """Every file in a folder that some importer recognizes; the text files none does go to
    ``skipped`` with the reason (an export's images and audio are passed over quietly)."""
    found = []
    for file in sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith(".")):
        try:
            file = stage.utf8(file)
            found.append((file, detect(file, options)))
        except SourceError as err:
            if file.name.lower().endswith(_TEXT_ENDINGS):
                err.file = stage.display_name(file)
                skipped.append(err)
            continue
    if not found:
        raise SourceParamError("no file in this folder is in a format chatloom reads; pass {format} FORMAT", file=str(folder))
    return found


def _checked(file: Path, source: Source, stage: Staging) -> Path:
    """A format given (``fmt``) on a file that is plainly another format is an error, not an
    empty import; a file no format recognizes from its head is read as that format, as the user
    says."""
    if not source.detectable:
        return file
    head = read_head(file)
    check_text(file, head)
    if not source.detect(file, head):
        try:
            other = detect(file).name
        except SourceError:  # no format claims it (a head that tells little): read it as the user says
            return file
        raise SourceError(f"this file is not in the {source.name} format; it looks like {other}", file=stage.display_name(file))
    return file
