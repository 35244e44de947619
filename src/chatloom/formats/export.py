"""``export``: write a dataset in a format, to one file or to a train/validation folder.

    export(store, "out.jsonl", fmt="openai")
    export(store, "out/", fmt="openai", split=0.1, seed=0)   # out/train.jsonl, out/val.jsonl
    export(store, "out", fmt="hf", split=0.1)                # a DatasetDict: out/train, out/validation

Beside a file or folder (not standard output), the trainer snippets are written too: LLaMA-Factory's
``dataset_info.json`` and an axolotl ``datasets:`` block (``chatloom.formats.snippets``).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ParamError
from ..fileio import atomic_folder, atomic_write
from ..model import Conversation
from ..store import Store
from . import Format, get_format
from .snippets import write_snippets
from .split import validation_ids


@dataclass
class ExportResult:
    files: dict[str, int] = field(default_factory=dict)  # path → conversations written
    dropped: Counter[str] = field(default_factory=Counter)
    snippets: list[str] = field(default_factory=list)  # trainer snippets written
    warnings: list[str] = field(default_factory=list)


def export(
    store: Store,
    out: str,
    *,
    fmt: str = "openai",
    split: float | None = None,
    seed: int = 0,
    tag: str | None = None,
    progress: Callable[[int], None] | None = None,
    snippets: bool = True,
    **options: Any,
) -> ExportResult:
    """Write the live conversations (optionally one tag) to ``out``; ``-`` is standard output.

    With ``split``, ``out`` is a folder holding ``train`` and ``val`` files, split by
    conversation (see ``chatloom.formats.split``). Every file (and a ``datasets`` folder) is written
    atomically. Without ``snippets``, no trainer snippets are written.
    """
    writer = get_format(fmt, **options)
    if out == "-" and (split is not None or writer.folder):
        with_split = " with {split}" if split is not None else ""
        raise ParamError("{format} {label}" + with_split + " writes a folder: give {out} a folder, not '-'", label=writer.label)
    result = ExportResult()
    done = 0

    def counted(convs: Iterator[Conversation]) -> Iterator[Conversation]:
        nonlocal done
        for conv in convs:
            yield conv
            done += 1
            if progress is not None and done % 256 == 0:
                progress(done)

    if split is None:
        parts: dict[str, Iterable[Conversation]] = {"data": counted(store.iter_conversations(tag=tag))}
    else:
        val = validation_ids(store.ids(tag=tag), split, seed)
        # one pass over the store per part keeps memory flat whatever the size of the dataset
        parts = {name: _only(counted(store.iter_conversations(tag=tag)), val, name == "val") for name in ("train", "val")}
    return _write_parts(writer, out, parts, split, snippets, result)


def export_conversations(read: Callable[[], Iterator[Conversation]], out: str, *, fmt: str = "openai", split: float | None = None,
                         seed: int = 0, ids: list[str] | None = None, snippets: bool = True, **options: Any) -> ExportResult:
    """``export`` of conversations that are not in a dataset (the build step's output).

    :param read: returns a fresh iterator over the conversations (called once per part).
    :param ids: their ids in order, for ``split`` (read once more when not given).
    """
    writer = get_format(fmt, **options)
    if split is None:
        parts: dict[str, Iterable[Conversation]] = {"data": read()}
    else:
        val = validation_ids(ids if ids is not None else [c.id or "" for c in read()], split, seed)
        parts = {name: _only(read(), val, name == "val") for name in ("train", "val")}
    return _write_parts(writer, out, parts, split, snippets, ExportResult())


def _write_parts(writer: Format, out: str, parts: dict[str, Iterable[Conversation]], split: float | None, snippets: bool,
                 result: ExportResult) -> ExportResult:
    if out == "-":
        report = writer.write(parts["data"], sys.stdout.buffer)
        result.files[out] = report.written
        result.dropped += report.dropped
        return result

    target = Path(out)
    if writer.folder:
        files = _write_folder(writer, target, parts, result)
    else:
        files = {}
        for name, convs in parts.items():
            path = target if split is None else target / f"{name}{writer.extension}"
            with atomic_write(path) as fp:
                report = writer.write(convs, fp)
            result.files[str(path)] = report.written
            result.dropped += report.dropped
            files[name] = path
    if snippets:
        written = write_snippets(writer, target, files, split=split is not None)
        result.snippets, result.warnings = written.written, written.warnings
    return result


def _only(convs: Iterator[Conversation], val: set[str], in_val: bool) -> Iterator[Conversation]:
    for conv in convs:
        if (conv.id in val) == in_val:
            yield conv


def _write_folder(writer: Format, target: Path, parts: dict[str, Iterable[Conversation]], result: ExportResult) -> dict[str, Path]:
    """A folder format (``hf``): the whole folder is built aside and renamed into place."""
    if target.is_file() or (target.is_dir() and any(target.iterdir()) and not _is_datasets_folder(target)):
        raise ParamError("{target} exists and is not a datasets folder: give {out} a new folder (it is replaced as a whole)", target=str(target))
    with atomic_folder(target) as folder:
        reports = writer.write_folder(parts, folder)
    files = {}
    for name, report in reports.items():
        path = writer.part_path(target, name)
        result.files[str(path)] = report.written
        result.dropped += report.dropped
        files[name] = path
    return files


def _is_datasets_folder(path: Path) -> bool:
    return (path / "dataset_dict.json").exists() or (path / "state.json").exists()
