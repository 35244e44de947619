"""Export formats: ``get_format(name, **options)`` and ``formats()``."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..plugins import load_plugins
from .base import Format, WriteReport

__all__ = ["Format", "WriteReport", "formats", "get_format"]

_registry: dict[str, type[Format]] | None = None


def formats() -> dict[str, type[Format]]:
    global _registry
    if _registry is None:
        found: dict[str, type[Format]] = {}
        load_plugins().hook.register_formats(register=lambda cls: found.setdefault(cls.name, cls))
        _registry = found
    return _registry


def get_format(name: str, **options: Any) -> Format:
    try:
        return formats()[name](**options)
    except KeyError:
        raise UsageError(f"unknown format '{name}'; choose one of: {', '.join(sorted(formats()))}") from None
