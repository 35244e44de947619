"""Export formats: ``get_format(name, **options)`` and ``formats()``.

``NAME:VALUE`` sets the format's argument option: ``get_format("template:llama-3")``.
"""

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
    base, colon, value = name.partition(":")
    try:
        cls = formats()[base]
    except KeyError:
        raise UsageError(f"unknown format '{base}'; choose one of: {', '.join(sorted(formats()))}") from None
    if colon:
        if cls.argument is None:
            raise UsageError(f"format '{base}' takes no ':{value}'")
        if not value:
            raise UsageError(f"format '{base}' needs a value: {base}:VALUE")
        options[cls.argument] = value
    return cls(**options)
