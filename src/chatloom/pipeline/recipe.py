"""The recipe: a YAML file, validated with pydantic; an error names the file, the line and the key
path, and says what is wrong (``recipe.yaml:7: filters[2].turns.max: min 5 is greater than max 2``).

    recipe = load_recipe("recipe.yaml")
    task_steps, steps = resolve_steps(recipe)  # the steps it names, built (load_recipe checks them)

What the file itself may be (size, encoding, YAML, nesting, aliases) is ``recipe_file.py``'s;
this module checks what the recipe means: the keys and their types, each step's parameters, and
what validates but cannot make sense (two inputs of one name, a task of an input that is not
there, a split that is neither a ratio nor a count, ``truncate`` without a limit, …). An error
found later, while the recipe runs (a missing input file, a split count larger than what the
steps leave, a regex step that runs too long), is a ``RecipeError`` too, with the key it is about,
and the runner names the file and line the same way (``Recipe.error``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from ..errors import ChatloomError, UsageError
from .recipe_file import RecipeDocument, read_recipe_file

if TYPE_CHECKING:
    from .base import Step

KeyPath = tuple[str | int, ...]


class RecipeError(UsageError):
    """What is wrong with the value at ``path`` in a recipe (``("filters", 2, "turns", "max")``);
    ``Recipe.error`` turns it into the line that names the file, the line and the key."""

    def __init__(self, path: KeyPath, message: str):
        self.path, self.message = tuple(path), message
        super().__init__(f"{key_path(self.path)}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:  # raised in a worker process, re-raised in the main one
        return (type(self), (self.path, self.message))


def key_path(path: KeyPath) -> str:
    """``("filters", 2, "turns")`` → ``filters[2].turns``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "recipe"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Input(Strict):
    """Exactly one of ``dataset`` (a chatloom dataset), ``file`` (files or folders, imported on the
    fly with any importer) or ``corpus`` (a corpus that ships on PyPI)."""

    name: str | None = Field(None, min_length=1)
    dataset: str | None = Field(None, min_length=1)
    tag: str | None = Field(None, min_length=1)  # a dataset's conversations with this tag
    file: str | list[str] | None = None
    format: str = "auto"  # a file's importer
    options: dict[str, Any] = {}  # a file's importer options: me, merge_gap, session_gap, …
    corpus: Literal["chitchat", "chatterbot"] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Input:
        given = [k for k in ("dataset", "file", "corpus") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of dataset, file, corpus (got {', '.join(given) or 'none'})")
        for key, needs, unset in (("tag", "dataset", None), ("format", "file", "auto"), ("options", "file", {})):
            if getattr(self, key) != unset and getattr(self, needs) is None:
                raise ValueError(f"{key} is for a {needs} input, and this one reads a {given[0]}")
        if self.name is None:
            self.name = self.corpus or Path(str(self.dataset or (self.file if isinstance(self.file, str) else self.file[0]))).stem  # type: ignore[index]
        return self

    @field_validator("file")
    @classmethod
    def _paths(cls, file: str | list[str] | None) -> str | list[str] | None:
        paths = [file] if isinstance(file, str) else file or []
        if file is not None and (not paths or not all(paths)):
            raise ValueError("give a path, or a list of paths (none empty)")
        return file

    @field_validator("format")
    @classmethod
    def _known_importer(cls, fmt: str) -> str:
        from ..sources import sources

        if fmt != "auto" and fmt not in sources():
            raise ValueError(f"unknown importer '{fmt}'; choose auto or one of: {', '.join(sorted(sources()))}")
        return fmt

    @field_validator("options")
    @classmethod
    def _known_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """A typo in the importer options fails when the recipe loads, not when the input is read."""
        from ..importing import ImportOptions

        try:
            ImportOptions.from_mapping(options)
        except ChatloomError as err:
            raise ValueError(str(err)) from None
        except (TypeError, OverflowError) as err:  # a duration of 1e999 seconds
            raise ValueError(f"not a usable value ({err})") from None
        return options


StepSpec = str | dict[str, dict[str, Any] | None]
"""A step in a recipe: its name, or ``{name: {params}}``; checked by ``registry.build_step``."""


class Task(Strict):
    """A named group of inputs with its own system prompts, persona and filters."""

    name: str = Field(min_length=1)
    inputs: list[str] | None = Field(None, min_length=1)  # input names; None: every input
    system_prompts: list[str] = []  # one is chosen per conversation (seeded); %{a|b} variants expanded
    system_mode: Literal["replace", "add", "keep"] = "replace"
    char: str | None = None  # {{char}}
    user: str | None = None  # {{user}}
    filters: list[Any] = []  # StepSpec each: built (and checked) by resolve_steps


class Recipe(Strict):
    inputs: list[Input] = Field(min_length=1)
    tasks: list[Task] = []
    filters: list[Any] = []  # StepSpec each
    transforms: list[Any] = []  # StepSpec each
    max_tokens: int | None = Field(None, ge=1)
    tokenizer: str = Field("gpt2-chatml", min_length=1)
    format: str = "openai"
    split: float | None = None  # a validation ratio in (0, 1), or a whole count ≥ 1
    seed: int = 0
    output: str = Field("build", min_length=1)

    _document: RecipeDocument | None = PrivateAttr(None)  # where the keys are, for errors
    _source: str = PrivateAttr("recipe")

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        from ..formats import get_format

        try:
            get_format(value)
        except UsageError as err:
            raise ValueError(str(err)) from None
        return value

    @field_validator("tokenizer")
    @classmethod
    def _known_tokenizer(cls, value: str) -> str:
        from ..tokens.tokenizer import tokenizers

        if value not in tokenizers() and not Path(value).is_dir():
            raise ValueError(f"unknown tokenizer '{value}'; use one of: {', '.join(tokenizers())}, or a local Hugging Face tokenizer folder")
        return value

    @field_validator("split")
    @classmethod
    def _ratio_or_count(cls, split: float | None) -> float | None:
        if split is not None and not (0 < split < 1 or (math.isfinite(split) and split >= 1 and split == int(split))):
            raise ValueError(f"{split:g} is neither a validation ratio in (0, 1) nor a whole count of 1 or more")
        return split

    def error(self, err: RecipeError) -> UsageError:
        """``err`` as one line naming this recipe's file, the line and the key."""
        return _located(err, self._source, self._document)


def _located(err: RecipeError, source: str, document: RecipeDocument | None) -> UsageError:
    line = document.line(err.path) if document is not None else None
    return UsageError(f"{source}{'' if line is None else f':{line}'}: {key_path(err.path)}: {err.message}")


def _check(recipe: Recipe) -> None:
    """What validates key by key but cannot make sense as a whole."""
    first: dict[str, int] = {}
    for i, spec in enumerate(recipe.inputs):
        j = first.setdefault(str(spec.name), i)
        if j != i:
            raise RecipeError(("inputs", i, "name"), f"a second input named '{spec.name}' (inputs[{j}] is the first); "
                                                     "give each input its own name")
    tasks: dict[str, int] = {}
    for t, task in enumerate(recipe.tasks):
        j = tasks.setdefault(task.name, t)
        if j != t:
            raise RecipeError(("tasks", t, "name"), f"a second task named '{task.name}' (tasks[{j}] is the first); "
                                                    "give each task its own name")
        for k, name in enumerate(task.inputs or []):
            if name not in first:
                raise RecipeError(("tasks", t, "inputs", k), f"no input named '{name}' (inputs: {', '.join(first)})")


_TYPE_TAG = re.compile(r"^(?:function-\w+\[.*\]|[a-z-]+\[.*\]|str|int|float|bool|none)$")  # pydantic's union members


def validation_message(err: ValidationError, model: type[BaseModel]) -> tuple[KeyPath, str]:
    """The first error of ``err`` as (key path, message), the path without pydantic's type tags,
    an unknown key's message naming the keys there are."""
    first = err.errors()[0]
    loc = tuple(p for p in first["loc"] if isinstance(p, int) or not _TYPE_TAG.match(str(p)))
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        known = _fields_at(model, loc[:-1])
        message = "unknown key" + (f"; the keys here are: {', '.join(known)}" if known else "")
    return loc, message


def _fields_at(model: type[BaseModel], loc: KeyPath) -> list[str]:
    """The keys of the model at ``loc`` under ``model`` (through lists and optionals)."""
    cls: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = cls.model_fields.get(part) if isinstance(cls, type) and issubclass(cls, BaseModel) else None
        if field is None:
            return []
        cls = _model_in(field.annotation)
    return list(cls.model_fields) if isinstance(cls, type) and issubclass(cls, BaseModel) else []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def parse_recipe(data: Any, source: str = "recipe", document: RecipeDocument | None = None) -> Recipe:
    """The recipe ``data`` describes, checked through and through (its steps built); an error is one
    ``UsageError`` naming ``source`` (with the line, given the ``document`` it was read from)."""
    if not isinstance(data, dict):
        what = "empty" if data is None else f"a YAML {type(data).__name__}"
        raise UsageError(f"{source}: {what}, not a recipe: a recipe is a YAML mapping (inputs:, filters:, …); "
                         "chatloom build --example prints one")
    try:
        try:
            recipe = Recipe.model_validate(data)
        except ValidationError as err:
            raise RecipeError(*validation_message(err, Recipe)) from None
        recipe._document, recipe._source = document, source
        _check(recipe)
        resolve_steps(recipe)  # unknown steps and bad parameters fail here, before any work
    except RecipeError as err:
        raise _located(err, source, document) from None
    return recipe


def load_recipe(path: str | Path) -> Recipe:
    """The recipe in the YAML file ``path`` (see ``recipe_file.py`` for what the file may be)."""
    document = read_recipe_file(path)
    return parse_recipe(document.data, document.path, document)


def resolve_steps(recipe: Recipe) -> tuple[list[list[Step[Any]]], list[Step[Any]]]:
    """The steps of each task (its system prompt, persona, then its filters) and the global ones
    (filters, then transforms), built and validated: an error is a ``RecipeError`` with the key."""
    from .base import Context, Transform
    from .registry import build_step
    from .transforms.prompts import Persona, PersonaParams, SystemPrompt, SystemPromptParams

    context = Context(seed=recipe.seed, tokenizer=recipe.tokenizer, max_tokens=recipe.max_tokens)
    tasks = []
    for t, task in enumerate(recipe.tasks):
        own: list[Step[Any]] = []
        if task.system_prompts:
            own.append(SystemPrompt(SystemPromptParams(prompts=task.system_prompts, mode=task.system_mode), context))
        if task.char is not None or task.user is not None:  # after the prompts: they may name {{char}}
            own.append(Persona(PersonaParams(char=task.char, user=task.user), context))
        own += [build_step(s, context, ("tasks", t, "filters", i)) for i, s in enumerate(task.filters)]
        tasks.append(own)
    steps = [build_step(s, context, ("filters", i)) for i, s in enumerate(recipe.filters)]
    for i, s in enumerate(recipe.transforms):
        step = build_step(s, context, ("transforms", i))
        if not isinstance(step, Transform):
            raise RecipeError(("transforms", i), f"'{step.name}' is a filter; list it under filters")
        steps.append(step)
    return tasks, steps
