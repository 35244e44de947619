"""Trainer snippets beside an export, so LLaMA-Factory and axolotl read it as it is.

    -o chats.jsonl          → dataset_info.json (entry "chats", merged into the file if there is
                              one) and chats.axolotl.yml, in the same folder
    -o out --split 0.1      → out/dataset_info.json (entries "out_train" and "out_val") and
                              out/axolotl.yml (``datasets:`` and ``test_datasets:``)

LLaMA-Factory's ``file_name`` is relative to the folder of its ``dataset_info.json`` (its
``dataset_dir``); axolotl's ``path`` is absolute. A format that a trainer cannot read (its
``llamafactory`` / ``axolotl`` is None) gets no entry for it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..fileio import atomic_write
from .base import Format

LLAMAFACTORY_INFO = "dataset_info.json"
#: the file types LLaMA-Factory loads, by extension (its FILEEXT2TYPE), and axolotl's ds_type
LLAMAFACTORY_TYPES = {".arrow": "arrow", ".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
AXOLOTL_TYPES = {".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


@dataclass
class Snippets:
    written: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def write_snippets(fmt: Format, out: Path, files: Mapping[str, Path], *, split: bool) -> Snippets:
    """Write the snippets for an export of ``fmt`` to ``out``; ``files`` maps each part
    (``data``, or ``train`` and ``val``) to the file or ``datasets`` folder written."""
    done = Snippets()
    home = out if split else out.parent
    base = out.name if split or fmt.folder else out.stem
    names = {part: f"{base}_{part}" if split else base for part in files}
    if fmt.llamafactory is not None:
        entries = {}
        for part, path in files.items():
            data = _data_file(path) if fmt.folder else path
            if data is None or data.suffix not in LLAMAFACTORY_TYPES:
                done.warnings.append(f"{path}: LLaMA-Factory reads files by their extension "
                                     f"({', '.join(LLAMAFACTORY_TYPES)}); no dataset_info.json entry written")  # fmt: skip
                continue
            entries[names[part]] = {"file_name": os.path.relpath(data, home), **copy.deepcopy(fmt.llamafactory)}
        if entries:
            _merge_info(home / LLAMAFACTORY_INFO, entries, done)
    if fmt.axolotl is not None:
        target = home / ("axolotl.yml" if split else f"{base}.axolotl.yml")
        blocks: dict[str, list[dict[str, Any]]] = {}
        for part, path in files.items():
            blocks.setdefault("test_datasets" if part == "val" else "datasets", []).append(_axolotl_entry(fmt, path))
        _write_yaml(target, blocks, fmt)
        done.written.append(str(target))
    return done


def _data_file(folder: Path) -> Path | None:
    """The one Arrow shard of a ``datasets`` folder (LLaMA-Factory loads files, not folders)."""
    shards = sorted(folder.glob("*.arrow"))
    return shards[0] if len(shards) == 1 else None


def _merge_info(path: Path, entries: dict[str, Any], done: Snippets) -> None:
    info: Any = {}
    if path.exists():
        try:
            info = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError:
            info = None
        if not isinstance(info, dict):
            done.warnings.append(f"{path}: not a JSON object, left as it is; no LLaMA-Factory entry written")
            return
    info.update(entries)
    with atomic_write(path) as fp:
        fp.write(orjson.dumps(info, option=orjson.OPT_INDENT_2) + b"\n")
    done.written.append(str(path))


def _axolotl_entry(fmt: Format, path: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": str(path.resolve())}
    if not fmt.folder:  # a folder is a datasets folder: axolotl loads it with load_from_disk
        entry |= {"ds_type": AXOLOTL_TYPES[fmt.extension], "split": "train"}
    return entry | copy.deepcopy(fmt.axolotl or {})


def _write_yaml(path: Path, blocks: dict[str, Any], fmt: Format) -> None:
    import yaml

    head = (f"# axolotl: the datasets of a chatloom export (-f {fmt.label}); paste these keys into your config.\n"
            "# Paths are absolute: edit them if you move the files.\n")  # fmt: skip
    with atomic_write(path) as fp:
        fp.write((head + yaml.safe_dump(blocks, sort_keys=False, allow_unicode=True)).encode())
