"""``chatloom tokenize`` with nothing to do: an input with no conversation, or one whose every
conversation is dropped by the checks or the length limit, is one error line naming the input
(and why each was dropped), exit 2, and nothing written: no token files, no meta.json, no output
folder it made, and the files of an earlier run in that folder as they were."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from chatloom.model import Conversation, Message
from chatloom.store import Store
from tests.conftest import conv, write_jsonl
from tests.malformed.common import digest, outcome

LONG = [conv("tell me everything " * 20, "here it is " * 20, id=f"long{i}") for i in range(3)]
NO_REPLY = [Conversation(id=f"q{i}", messages=[Message(role="user", content=f"anyone there? {i}")]) for i in range(2)]


def _dataset(path: Path, convs: list[Conversation]) -> Path:
    with Store(path, create=True) as store:
        if convs:
            store.import_conversations(convs)
    return path


@pytest.mark.parametrize(("name", "make", "args", "expected"), [
    ("empty-file", lambda d: _file(d / "chats.jsonl", b""), [],
     "error: chats.jsonl: nothing to tokenize: the file holds no conversation"),
    ("blank-lines", lambda d: _file(d / "chats.jsonl", b"\n\n  \n"), [],
     "error: chats.jsonl: nothing to tokenize: the file holds no conversation"),
    ("all-too-long", lambda d: write_jsonl(d / "chats.jsonl", LONG), ["--max-tokens", "20"],
     "error: chats.jsonl: nothing to tokenize: all 3 conversations were dropped (3 × over --max-tokens 20); nothing written"),
    ("all-too-long-with-val", lambda d: write_jsonl(d / "chats.jsonl", LONG), ["--max-tokens", "20", "--val", "1"],
     "error: chats.jsonl: nothing to tokenize: all 3 conversations were dropped (3 × over --max-tokens 20)"),
    ("nothing-to-train-on", lambda d: write_jsonl(d / "chats.jsonl", NO_REPLY), ["--fix"],
     "error: chats.jsonl: nothing to tokenize: all 2 conversations were dropped (2 × "),
])
def test_a_file_with_nothing_to_tokenize(tmp_path: Path, run: Callable, name: str, make: Callable[[Path], Path],
                                         args: list[str], expected: str) -> None:
    path = make(tmp_path)
    out = tmp_path / "tokens" / "new"
    assert outcome(run, ["tokenize", str(path), "-o", str(out), "--workers", "1", *args], file=path) == "error"
    assert run("tokenize", str(path), "-o", str(out), "--workers", "1", *args).stderr.startswith(expected.replace("chats.jsonl", str(path)))
    assert not (tmp_path / "tokens").exists()  # not even the folders it would have made


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("convs", "args", "expected"), [
    ([], [], "nothing to tokenize: the dataset holds no conversation"),
    ([conv("hi", "hello", id="a")], ["--tag", "keep"], "nothing to tokenize: the dataset has no conversation tagged 'keep'"),
    (LONG, ["--max-tokens", "20"], "nothing to tokenize: all 3 conversations were dropped (3 × over --max-tokens 20); nothing written"),
], ids=["empty", "no-conversation-with-the-tag", "all-too-long"])
def test_a_dataset_with_nothing_to_tokenize(tmp_path: Path, run: Callable, convs: list[Conversation], args: list[str],
                                            expected: str) -> None:
    dataset = _dataset(tmp_path / "chats.db", convs)
    assert outcome(run, ["tokenize", "-d", str(dataset), "-o", "tokens", *args], file=dataset, dataset=dataset) == "error"
    assert run("tokenize", "-d", str(dataset), "-o", "tokens", *args).stderr == f"error: {dataset}: {expected}\n"
    assert not (tmp_path / "tokens").exists()


def test_an_earlier_runs_files_stay_as_they_were(tmp_path: Path, run: Callable) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [conv("hi", "hello", id="a"), conv("how are you", "fine", id="b")])
    assert run("tokenize", str(good), "-o", "tokens", "--workers", "1").exit_code == 0
    before = {p.name: digest(p) for p in (tmp_path / "tokens").iterdir()}
    long = write_jsonl(tmp_path / "long.jsonl", LONG)
    assert outcome(run, ["tokenize", str(long), "-o", "tokens", "--workers", "1", "--max-tokens", "20"], file=long) == "error"
    assert {p.name: digest(p) for p in (tmp_path / "tokens").iterdir()} == before


def test_one_conversation_kept_is_enough(tmp_path: Path, run: Callable) -> None:
    path = write_jsonl(tmp_path / "chats.jsonl", [*LONG, conv("hi", "hello", id="short")])
    result = run("tokenize", str(path), "-o", "tokens", "--workers", "1", "--max-tokens", "20")
    assert result.exit_code == 0, result.stderr
    assert "train: 1 conversations" in result.stdout and "dropped: 3 × over --max-tokens 20" in result.stderr
