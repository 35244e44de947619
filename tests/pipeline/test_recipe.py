"""Recipes: their errors name the key path (and the YAML line); the example uses every step."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chatloom.errors import UsageError
from chatloom.pipeline.recipe import parse_recipe


@pytest.mark.parametrize(("recipe", "message"), [
    ({"inputs": [{"corpus": "chitchat"}], "filterz": []}, "filterz: unknown key; the keys here are: inputs, tasks, filters"),
    ({"inputs": []}, "inputs: List should have at least 1 item"),
    ({"inputs": [{"corpus": "chitchat", "file": "x.json"}]}, "inputs[0]: give exactly one of dataset, file, corpus"),
    ({"inputs": [{"corpus": "chitchat"}], "filters": [{"nope": {}}]}, "filters[0]: unknown step 'nope'; choose one of:"),
    ({"inputs": [{"corpus": "chitchat"}], "filters": [{"near_dedup": {"threshold": 2}}]}, "filters[0].near_dedup.threshold: Input should be less than or equal to 1"),
    ({"inputs": [{"corpus": "chitchat"}], "filters": [{"turns": {"mni": 2}}]}, "filters[0].turns.mni: unknown key; the keys here are: min, max"),
    ({"inputs": [{"corpus": "chitchat"}], "transforms": ["turns"]}, "transforms[0]: 'turns' is a filter; list it under filters"),
    ({"inputs": [{"corpus": "chitchat"}], "tasks": [{"name": "t", "inputs": ["other"]}]}, "no input named 'other'"),
    ({"inputs": [{"corpus": "chitchat"}], "format": "nope"}, "format: unknown format 'nope'"),
    ({"inputs": [{"corpus": "chitchat"}], "split": -1}, "split: -1 is neither a validation ratio in (0, 1) nor a whole count"),
])
def test_recipe_errors_name_the_key(recipe, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError) as err:
        parse_recipe(recipe, "r.yaml")
    assert str(err.value).startswith("r.yaml: ") and message in str(err.value)


def test_yaml_errors_name_the_line(tmp_path: Path, run) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "r.yaml"
    bad.write_text("inputs:\n  - corpus: chitchat\nfilters: [\n")
    r = run("build", str(bad))
    assert r.exit_code == 2 and r.stderr.startswith(f"error: {bad}:4: not valid YAML")


def test_the_example_uses_every_step_and_is_valid(run) -> None:  # type: ignore[no-untyped-def]
    from chatloom.pipeline.registry import steps

    r = run("build", "--example")
    example = yaml.safe_load(r.stdout)
    parse_recipe(example, "example")
    named = {next(iter(s)) if isinstance(s, dict) else s for s in example["filters"] + example["transforms"]}
    named |= {"window"} if "# - window:" in r.stdout else set()
    assert named | {"persona", "system_prompt", "turns"} >= set(steps())


def test_a_typo_in_importer_options_fails_when_the_recipe_loads(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^recipe: inputs\[0\]\.options: unknown importer option 'sesion_gap'"):
        parse_recipe({"inputs": [{"file": str(tmp_path / "none.txt"), "options": {"me": ["Ana"], "sesion_gap": "2h"}}]})
