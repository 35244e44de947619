"""Malformed dataset files, across the commands that open one: every case ends in a clean error
that names the file and leaves it byte for byte as it was, or (a read that never touches the
damage, a read-only file read) in the command's normal result. Nothing ever writes into a file
that is not a sound chatloom dataset.

The damaged datasets are a real one (300 conversations of the chitchat-dataset corpus, from PyPI)
with its bytes changed as disks and copies change them: cut in half, and the header of one page
flipped, for a page of each of the structures an import or a read goes through (chosen with
SQLite's own ``dbstat`` table, so the test says which structure it damages).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatloom.store import Store
from tests.conftest import write_jsonl
from tests.malformed.common import digest, outcome

COMMANDS = ["import", "ls", "stats", "check", "export", "tokenize", "tag", "show"]

#: a page of each structure, by (table or index, page type) as dbstat names them; "schema" is page 1
PAGES = {
    "schema": ("sqlite_schema", "leaf"),
    "message-tree": ("messages", "internal"),
    "messages": ("messages", "leaf"),
    "conversations": ("conversations", "leaf"),
    "id-index": ("sqlite_autoindex_conversations_1", "leaf"),
    "fts-index": ("messages_fts_data", "leaf"),
    "history": ("revisions", "leaf"),
}
#: the commands that read the damaged structure, and so must fail; the others may not meet it
MUST_FAIL = {
    "truncated": set(COMMANDS),
    "schema": set(COMMANDS),
    "message-tree": set(COMMANDS),
    "messages": {"import", "check", "stats", "export", "tokenize"},
    # ls reads its page, and counts by the table's b-tree and the tombstones' index (migration 6):
    # a damaged page in the middle of the table is met by what reads every row
    "conversations": {"import", "check", "stats", "export", "tokenize"},
    "id-index": {"import", "check"},
    "fts-index": {"import", "check"},
    "history": {"import", "check"},
}


@dataclass
class Material:
    dataset: Path  # a sound dataset
    pages: dict[str, int]  # a page number of each structure of PAGES
    conv_id: str
    chats: Path  # a small file to import


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    from chatloom.sources import Reader, get_source

    folder = tmp_path_factory.mktemp("datasets")
    source = get_source("chitchat")
    convs = [c for c in source.read(source.resolve("package")[0], Reader("x")) if any(m.role == "assistant" for m in c.messages)]
    dataset = folder / "sound.db"
    with Store(dataset, create=True) as store:
        store.import_conversations(convs[:300])
    pages: dict[tuple[str, str], list[int]] = {}
    with closing(sqlite3.connect(dataset)) as db:
        for name, pageno, pagetype in db.execute("SELECT name, pageno, pagetype FROM dbstat ORDER BY pageno"):
            pages.setdefault((name, pagetype), []).append(pageno)
    chosen = {kind: pages[key][len(pages[key]) // 2] for kind, key in PAGES.items()}
    return Material(dataset, chosen, convs[0].id or "", write_jsonl(folder / "new.jsonl", convs[300:303]))


def _args(command: str, dataset: Path, m: Material, out: Path) -> list[str]:
    rest = {
        "import": [str(m.chats)],
        "export": ["-o", str(out / "out.jsonl")],
        "tokenize": ["-o", str(out / "tokens"), "--fix"],
        "tag": [m.conv_id, "--add", "x"],
        "show": [m.conv_id],
    }.get(command, [])
    return [command, "-d", str(dataset), *rest]


def _damaged(m: Material, kind: str, path: Path) -> Path:
    data = bytearray(m.dataset.read_bytes())
    if kind == "truncated":
        data = data[: len(data) // 2]
    else:  # the page's b-tree header (page 1's starts after the file header)
        start = 100 if m.pages[kind] == 1 else (m.pages[kind] - 1) * 4096
        for i in range(start, start + 8):
            data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", list(MUST_FAIL))
def test_a_damaged_dataset(material: Material, tmp_path: Path, run: Callable, kind: str, command: str) -> None:
    """A damaged file: never imported into; a command that meets the damage names the file and
    says what can be done; ``check`` lists it (exit 1), or says SQLite cannot open the file."""
    dataset = _damaged(material, kind, tmp_path / "damaged.db")
    args = _args(command, dataset, material, tmp_path)
    before = digest(dataset)
    result = run(*args)
    err = result.stderr.strip()
    assert "Traceback" not in result.output
    if command == "check" and result.exit_code == 1:
        assert f"{dataset}: the SQLite file is damaged" in err and ".recover" in err
        assert digest(dataset) == before
        return
    if result.exit_code == 0 and command not in MUST_FAIL[kind]:
        return  # a read that did not meet the damage
    assert outcome(run, args, file=dataset, dataset=dataset) == "error"
    assert "the dataset file is damaged" in err and ".recover" in err, err


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", ["zero-byte", "random", "other-app", "other-app-wal", "folder"])
def test_a_file_that_is_no_dataset(material: Material, tmp_path: Path, run: Callable, kind: str, command: str) -> None:
    """Not a chatloom dataset: a clean error, the file (and its folder) as they were; a zero-byte
    file alone becomes a dataset, and only by an import."""
    dataset = tmp_path / "given.db"
    if kind == "zero-byte":
        dataset.write_bytes(b"")
    elif kind == "random":
        dataset.write_bytes(os.urandom(8192))
    elif kind == "folder":
        dataset.mkdir()
    else:  # another program's SQLite file with tables of its own; one in WAL mode (side files)
        with closing(sqlite3.connect(dataset)) as db:
            if kind == "other-app-wal":
                db.execute("PRAGMA journal_mode = WAL")
            db.executescript("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('mine');")
    listing = sorted(p.name for p in tmp_path.iterdir())
    args = _args(command, dataset, material, tmp_path / "out")
    if kind == "zero-byte" and command == "import":  # the one way a file becomes a dataset
        result = run(*args)
        assert result.exit_code == 0, result.stderr
        with Store(dataset) as store:
            assert store.count() == 3
        return
    assert outcome(run, args, file=dataset, dataset=dataset) == "error"
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # no side file, no output
    message = run(*args).stderr
    expected = {
        "zero-byte": "empty file, not a chatloom dataset",
        "random": "not a chatloom dataset (not an SQLite file)",
        "other-app": "not a chatloom dataset (an SQLite file with other tables)",
        "other-app-wal": "not a chatloom dataset (an SQLite file with other tables)",
        "folder": "a folder, not a dataset file",
    }[kind]
    assert f"error: {dataset}: {expected}" in message


def test_a_zero_byte_file_whose_first_import_fails_is_zero_bytes_again(material: Material, tmp_path: Path, run: Callable) -> None:
    dataset = tmp_path / "empty.db"
    dataset.write_bytes(b"")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(material.chats.read_bytes() + b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n')
    assert outcome(run, ["import", "-d", str(dataset), "--strict", str(bad)], file=bad) == "error"
    assert dataset.read_bytes() == b"" and sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "empty.db"]


@dataclass
class Ran:
    """A command's result as ``outcome`` reads it, from a process of its own."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _without_write_permission(*args: str) -> Ran:
    """Run chatloom where file permissions hold: as root (a container's), with the capabilities
    that pass over them dropped."""
    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("root passes over file permissions, and setpriv is not here to drop that")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([*prefix, sys.executable, "-m", "chatloom", *args], capture_output=True, text=True, env=env)
    return Ran(proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_read_only_dataset(material: Material, tmp_path: Path, command: str) -> None:
    """A dataset file without write permission is read as usual (stats counts its tokens without
    keeping them; check says what it could not check); a write is a clean error, the file as it was."""
    dataset = tmp_path / "read-only.db"
    shutil.copyfile(material.dataset, dataset)
    dataset.chmod(0o444)
    args = _args(command, dataset, material, tmp_path / "out")
    if command in ("import", "tag"):
        assert outcome(lambda *a: _without_write_permission(*a), args, file=dataset, dataset=dataset) == "error"
        assert "cannot write: the file (or its folder) is read-only" in _without_write_permission(*args).stderr
        return
    before = digest(dataset)
    result = _without_write_permission(*args)
    assert result.exit_code == 0, result.stderr
    assert digest(dataset) == before
    if command == "check":
        assert "note: the full-text index was not checked: the file is read-only" in result.stderr
        assert result.stdout.startswith("ok: 300 conversations")
