"""Importers: ``get_source(name)``, ``sources()`` and ``detect(path)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import SourceError, UsageError
from ..plugins import by_name, collect
from .base import Reader, Source, check_text, read_head

__all__ = ["Reader", "Source", "check_text", "detect", "get_source", "read_head", "sources"]

def sources() -> dict[str, type[Source]]:
    """Every registered importer, by name."""
    return collect("register_sources", by_name)


def get_source(name: str, **options: Any) -> Source:
    try:
        cls = sources()[name]
    except KeyError:
        raise UsageError(f"unknown format '{name}'; choose one of: {', '.join(sorted(sources()))}") from None
    return cls(**options)


def detect(path: Path, **options: Any) -> Source:
    """The importer whose ``detect`` accepts this file's first bytes."""
    head = read_head(path)
    check_text(path, head)
    for cls in sources().values():
        source = cls(**options)
        if source.detect(path, head):
            return source
    raise SourceError(f"cannot tell the format of this file; pass -f FORMAT ({', '.join(sorted(sources()))})", file=str(path))
