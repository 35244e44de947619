"""Steps by name: the built-ins and whatever plugins register (``register_steps`` hook), and
``build_step``, which makes one from a recipe's spec (``name`` or ``{name: {params}}``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..hookspecs import hookimpl
from ..plugins import by_name, collect

if TYPE_CHECKING:  # the steps (and pydantic) load when a recipe asks for them, not with every plugin
    from .base import Context, Step
    from .recipe import StepSpec


def steps() -> dict[str, type[Step[Any]]]:
    return collect("register_steps", by_name)


@hookimpl
def register_steps(register):  # type: ignore[no-untyped-def]
    from .filters import bounds, dedup, language, phrases, quality, structure
    from .transforms import cleanup, pii, prompts, roles, truncate, window

    for cls in (dedup.ExactDedup, dedup.NearDedup, bounds.Turns, bounds.Tokens, structure.Regex, structure.Structure,
                language.Language, pii.PII, phrases.Phrases, quality.Quality,
                roles.MergeTurns, prompts.SystemPrompt, prompts.Persona, truncate.Truncate, window.Window,
                roles.FixRoles, cleanup.Cleanup):
        register(cls)


def _spec(spec: StepSpec) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, str):
        return spec, {}
    if len(spec) != 1:
        raise ValueError(f"a step is one 'name: {{params}}' mapping, got {len(spec)} keys")
    name, params = next(iter(spec.items()))
    return name, params or {}


def build_step(spec: StepSpec, context: Context, where: str) -> Step[Any]:
    """The step ``spec`` names, with its parameters validated; an error names ``where`` and the key."""
    from pydantic import ValidationError

    try:
        name, params = _spec(spec)
    except ValueError as err:
        raise UsageError(f"{where}: {err}") from None
    known = steps()
    if name not in known:
        raise UsageError(f"{where}: unknown step '{name}'; choose one of: {', '.join(sorted(known))}")
    cls = known[name]
    try:
        return cls(cls.Params.model_validate(params), context)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"{where}.{name}{'.' + key if key else ''}: {first['msg']}") from None
