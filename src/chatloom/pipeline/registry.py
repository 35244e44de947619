"""Steps by name: the built-ins and whatever plugins register (``register_steps`` hook)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..hookspecs import hookimpl
from ..plugins import by_name, collect

if TYPE_CHECKING:  # the steps (and pydantic) load when a recipe asks for them, not with every plugin
    from .base import Step


def steps() -> dict[str, type[Step]]:
    return collect("register_steps", by_name)


@hookimpl
def register_steps(register):  # type: ignore[no-untyped-def]
    from . import filters, text_filters, transforms

    for cls in (filters.ExactDedup, filters.NearDedup, filters.Turns, filters.Tokens, filters.Regex, filters.Structure,
                text_filters.Language, text_filters.PII, text_filters.Phrases, text_filters.Quality,
                transforms.MergeTurns, transforms.SystemPrompt, transforms.Persona, transforms.Truncate, transforms.Window,
                transforms.FixRoles, transforms.Cleanup):
        register(cls)
