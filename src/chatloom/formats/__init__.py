"""Export formats: ``get_format(name, **options)`` and ``formats()``."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..plugins import by_name, collect
from .base import Format, WriteReport

__all__ = ["Format", "WriteReport", "formats", "get_format"]

def formats() -> dict[str, type[Format]]:
    """Every registered export format, by name."""
    return collect("register_formats", by_name)


def get_format(name: str, **options: Any) -> Format:
    try:
        return formats()[name](**options)
    except KeyError:
        raise UsageError(f"unknown format '{name}'; choose one of: {', '.join(sorted(formats()))}") from None
