"""Every test runs in its own folder with its own CHATLOOM_HOME: no test touches the user's files."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

from chatloom.cli import cli
from chatloom.model import Conversation, Message

# Property tests write nothing into the working tree: hypothesis keeps its caches in the temp
# folder, and keeps no example database (a failure prints its example and how to reproduce it).
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "chatloom-hypothesis")
settings.register_profile("chatloom", database=None, print_blob=True)
settings.load_profile("chatloom")

# Models resolved for tests (tiny ones, SmolLM2 from its GGUF) are built once per test session
if "CHATLOOM_MODEL_CACHE" not in os.environ:
    os.environ["CHATLOOM_MODEL_CACHE"] = tempfile.mkdtemp(prefix="chatloom-models-")
    atexit.register(shutil.rmtree, os.environ["CHATLOOM_MODEL_CACHE"], True)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "real"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATLOOM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CHATLOOM_DATASET", raising=False)
    monkeypatch.delenv("CHATLOOM_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fixture() -> Callable[[str], Path]:
    """A real export from ../shared/fixtures/real, read in place."""

    def get(name: str) -> Path:
        path = FIXTURES / name
        if not path.exists():
            pytest.skip(f"fixture {name} is not in {FIXTURES}")
        return path

    return get


@pytest.fixture
def run() -> Callable[..., Result]:
    """``run("ls", "--json")``: invoke the CLI in-process; stdout and stderr kept apart."""

    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)

    return invoke


def conv(*turns: str, id: str | None = None, **kw) -> Conversation:
    """A conversation from alternating user / assistant texts."""
    return Conversation(
        id=id,
        messages=[Message(role="user" if i % 2 == 0 else "assistant", content=t) for i, t in enumerate(turns)],
        **kw,
    )


def write_jsonl(path: Path, convs: list[Conversation]) -> Path:
    from chatloom import jsonl

    with open(path, "wb") as fp:
        jsonl.write(convs, fp)
    return path


@pytest.fixture
def chitchat_path() -> Path:
    from chatloom.sources import get_source

    return get_source("chitchat").resolve("package")[0]




@pytest.fixture(scope="session")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A Hugging Face GPT-2 tokenizer folder per built-in template, built offline, with that
    template as its chat_template and the special tokens it needs."""
    from chatloom.tokens.chat_templates import BUILTINS, builtin_source
    from chatloom.tokens.tokenizer import write_hf_gpt2_folder

    root = tmp_path_factory.mktemp("tokenizers")
    return {name: write_hf_gpt2_folder(root / name, special_tokens=b.needs, chat_template=builtin_source(name),
                                       bos_token=b.bos, eos_token=b.eos)
            for name, b in BUILTINS.items()}
