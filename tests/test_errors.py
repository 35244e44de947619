"""ParamError: the library names its parameters, the CLI the flags the user typed."""

import pickle

from chatloom.errors import ParamError
from chatloom.tokens.encode import CheckError
from tests.conftest import conv, write_jsonl


def test_the_library_names_its_parameter_and_values_are_not_parsed():
    err = ParamError("{split} must be a ratio, not {value}", value="{oops}")
    assert str(err) == "split must be a ratio, not {oops}"  # a value with braces stays as it is
    assert err.params() == ["split"]
    assert err.render({"split": "--val"}) == "--val must be a ratio, not {oops}"


def test_it_crosses_processes_whole():
    err = pickle.loads(pickle.dumps(CheckError("conversation {conv_id}: bad; {fix} drops it", conv_id="a{b}")))
    assert isinstance(err, CheckError) and err.render({"fix": "--fix"}) == "conversation a{b}: bad; --fix drops it"


def test_the_cli_spells_the_flag_as_typed(run, tmp_path):
    run("import", str(write_jsonl(tmp_path / "c.jsonl", [conv("hi", "hello", id="c")])))
    short = run("export", "-f", "hf", "-o", "-")
    long = run("export", "--format=hf", "--output", "-")
    assert short.stderr == "error: -f hf writes a folder: give -o a folder, not '-'\n"
    assert long.stderr == "error: --format hf writes a folder: give --output a folder, not '-'\n"


def test_a_parameter_named_as_the_long_flag_finds_the_flag_typed(run):
    """``{format}`` in a library message is ``-f/--format`` (whose own name is ``fmt``), as typed."""
    assert run("import", "package").stderr == "error: PATH 'package' reads a packaged corpus: pass -f chitchat or -f chatterbot\n"
    long = run("import", "--format=auto", "package")
    assert long.stderr == "error: PATH 'package' reads a packaged corpus: pass --format chitchat or --format chatterbot\n"
