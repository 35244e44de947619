"""Steps by name: the built-ins and whatever plugins register (``register_steps`` hook), and
``build_step``, which makes one from a recipe's spec (``name`` or ``{name: {params}}``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..hookspecs import hookimpl
from ..plugins import by_name, collect

if TYPE_CHECKING:  # the steps (and pydantic) load when a recipe asks for them, not with every plugin
    from .base import Context, Step
    from .recipe import KeyPath, StepSpec


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


def _spec(spec: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, str):
        return spec, {}
    if not isinstance(spec, dict) or len(spec) != 1:
        got = f"a mapping of {len(spec)} keys" if isinstance(spec, dict) else "a list" if isinstance(spec, list) else repr(spec)
        raise ValueError(f"a step is a name or one 'name: {{params}}' mapping, not {got}")
    name, params = next(iter(spec.items()))
    if not isinstance(name, str):
        raise ValueError(f"a step's name is text, not {name!r}")
    if params is not None and not isinstance(params, dict):
        raise ValueError(f"{name}: a step's parameters are a mapping ({name}: {{key: value}}), not a {type(params).__name__}")
    return name, params or {}


def build_step(spec: StepSpec, context: Context, where: KeyPath = ()) -> Step[Any]:
    """The step ``spec`` names, with its parameters validated; an error is a ``RecipeError`` at
    ``where`` (the step's place in the recipe: ``("filters", 2)``) and the key. The step keeps
    ``where`` (with its name), so an error it meets while it runs names its key too."""
    from pydantic import ValidationError

    from .base import ParamsError
    from .recipe import RecipeError, validation_message

    try:
        name, params = _spec(spec)
    except ValueError as err:
        raise RecipeError(where, str(err)) from None
    known = steps()
    if name not in known:
        raise RecipeError(where, f"unknown step '{name}'; choose one of: {', '.join(sorted(known))}")
    cls = known[name]
    try:
        step = cls(cls.Params.model_validate(params), context)
    except ValidationError as err:
        loc, message = validation_message(err, cls.Params)
        raise RecipeError((*where, name, *loc), message) from None
    except ParamsError as err:
        raise RecipeError((*where, name, *err.key), err.message) from None
    step.where = (*where, name)
    return step
