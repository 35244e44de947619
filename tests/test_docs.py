"""The docs cover every command: the CLI reference is generated from --help and must be current,
and the README shows the two set-up commands."""

import importlib.util

from chatloom.cli import all_commands
from tests.conftest import REPO


def _generator():
    spec = importlib.util.spec_from_file_location("gen", REPO / "docs" / "gen_cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current():
    gen = _generator()
    assert gen.TARGET.read_text() == gen.render(), "docs/cli-reference.md is stale: run 'make docs'"


def test_every_command_is_documented():
    reference = (REPO / "docs" / "cli-reference.md").read_text()
    readme = (REPO / "README.md").read_text()
    for name in all_commands():
        assert f"## chatloom {name}" in reference
        assert f"chatloom {name}" in readme, f"README has no example of 'chatloom {name}'"
    assert "make demo" in readme and "make test" in readme
