"""Importers: ``get_source(name)``, ``sources()`` and ``detect(path)``; ``ImportOptions``, what
they may be told.

    source = get_source("whatsapp", ImportOptions(me=("Ana",)))   # or get_source("whatsapp", me=["Ana"])
    for conv in source.read(path, Reader(str(path))): ...
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

from ..errors import SourceParamError, UsageError
from ..plugins import by_name, collect
from . import whatsapp
from .base import BOM, Reader, Source, check_json_end, check_text, json_error, read_head
from .options import ImportOptions, options_of

__all__ = ["ImportOptions", "Reader", "Source", "check_text", "detect", "get_source", "read_head", "sources"]


def sources() -> dict[str, type[Source]]:
    """Every registered importer, by name."""
    return collect("register_sources", by_name)


def get_source(name: str, options: ImportOptions | None = None, **changes: Any) -> Source:
    """The importer ``name``, told ``options`` (with ``changes``: ``me=["Ana"]``, …)."""
    try:
        cls = sources()[name]
    except KeyError:
        raise UsageError(f"unknown format '{name}'; choose one of: {', '.join(sorted(sources()))}") from None
    return cls(options_of(options, **changes))


def detect(path: Path, options: ImportOptions | None = None, **changes: Any) -> Source:
    """The importer whose ``detect`` accepts this file's first bytes, told ``options``."""
    head = read_head(path)
    check_text(path, head)
    options = options_of(options, **changes)
    for cls in sources().values():
        source = cls(options)
        if source.detect(path, head):
            return source
    text = head.removeprefix(BOM).lstrip()
    first = text.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip()
    if whatsapp.resembles(first):  # "[12/07/2017 à 22:35] …" is no JSON, though it starts with "["
        raise SourceParamError(
            "cannot tell the format of this file: it starts like a WhatsApp export ('{line}'), but too few of its lines "
            "are message headers in a layout chatloom reads; pass {format} whatsapp to read it as one",
            file=str(path), line=first[:60],
        )  # fmt: skip
    if text[:1] in (b"{", b"["):
        _raise_json_fault(path, head)
    raise SourceParamError("cannot tell the format of this file; pass {format} FORMAT ({formats})", file=str(path),
                           formats=", ".join(sorted(sources())))  # fmt: skip


def _raise_json_fault(path: Path, head: bytes) -> None:
    """A JSON file no importer recognizes is often one cut short, or broken: say that instead."""
    first = head.removeprefix(BOM).lstrip().split(b"\n", 1)[0]
    try:
        orjson.loads(first)
        return  # a whole first line: JSONL of a layout no importer knows
    except orjson.JSONDecodeError:
        pass
    if path.stat().st_size <= 64 << 20:
        data = path.read_bytes().removeprefix(BOM)
        try:
            orjson.loads(data)
        except orjson.JSONDecodeError as err:
            raise json_error(data, err, path) from None
    else:
        check_json_end(path, re.compile(rb"[\]}]\s*\Z"))
