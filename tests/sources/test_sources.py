"""The importer registry, the OpenAI JSONL importer, and what every importer shares: file-level faults, BOMs, folders, the depth scan."""

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatloom.errors import SourceError, UsageError
from chatloom.importing import import_paths
from chatloom.sources import Reader, detect, get_source, sources
from chatloom.store import Store
from tests.conftest import conv, write_jsonl
from tests.sources.common import raises_as_cli_says, read_all


def test_registry_has_the_first_formats():
    assert {"openai", "chitchat", "chatterbot"} <= set(sources())
    with pytest.raises(UsageError, match="unknown format 'nope'"):
        get_source("nope")


def test_openai_detection_and_bad_lines(tmp_path):
    path = tmp_path / "chats.jsonl"
    good = write_jsonl(tmp_path / "good.jsonl", [conv("a", "b"), conv("c", "d")]).read_bytes().splitlines()
    path.write_bytes(b"\n".join([good[0], b'{"messages": [{"role": "robot", "content": "x"}]}', b"", b"garbage", good[1]]) + b"\n")
    assert detect(path).name == "openai"
    convs, reader = read_all("openai", path)
    assert len(convs) == 2 and reader.bad_count == 2
    assert reader.examples[0].startswith(f"{path}:2: $.messages[0].role")
    assert reader.examples[1].startswith(f"{path}:4: not valid JSON")
    assert convs[1].source == {"format": "openai", "file": "chats.jsonl", "locator": "line 5"}
    with raises_as_cli_says(SourceError, r":2: .*--strict"):
        read_all("openai", path, strict=True)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        (b"\xff\xfe{\x00", "UTF-16"),
        (bytes(range(256)) * 4, "binary file"),
        (b"just some words\n", "cannot tell the format"),
    ],
)
def test_file_level_faults(tmp_path, content, message):
    path = tmp_path / "x.jsonl"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=message):
        detect(path)


def test_utf8_bom_is_fine(tmp_path):
    path = write_jsonl(tmp_path / "bom.jsonl", [conv("a", "b")])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert detect(path).name == "openai"
    assert len(read_all("openai", path)[0]) == 1


def test_folders_import_what_they_recognize(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", [conv("a", "b")])
    write_jsonl(folder / "b.jsonl", [conv("c", "d")])
    (folder / "README.txt").write_text("not a chat")
    with Store(tmp_path / "d.db", create=True) as store:
        results = import_paths(store, [str(folder)])
        assert [r.format for r in results] == ["openai", "openai"] and store.count() == 2
        with raises_as_cli_says(UsageError, "pass -f chitchat"):
            import_paths(store, ["package"])


@pytest.mark.parametrize("name", ["chatgpt_conversations.json", "telegram_result_langchain.json", "telegram_batch_export_chatminer.json",
                                  "discordchatexporter_general.json", "discordchatexporter_thread.json"])  # fmt: skip
def test_json_exports_with_a_utf8_bom_read_the_same(tmp_path, fixture, name):
    src = fixture(name)
    bom = tmp_path / name
    bom.write_bytes(b"\xef\xbb\xbf" + src.read_bytes())

    def read(path):
        source, reader = detect(path, me=["Bob", "Adam", "Jiman", "Jimmeny Marvelton", "Author 1"]), Reader(str(path))
        return [msgspec.json.encode(c) for c in source.read(path, reader)], reader.bad_count

    assert read(bom) == read(src) and read(src)[0]


_JSON_VALUES = st.recursive(
    st.none() | st.integers() | st.text(alphabet='ab[]{}"\\\n\u00e9 ', max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet='k[{"\\', max_size=3), inner, max_size=3),
    max_leaves=40,
)


def _depth(value):
    if isinstance(value, list | dict):
        return 1 + max((_depth(v) for v in (value.values() if isinstance(value, dict) else value)), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(_JSON_VALUES, st.integers(min_value=1, max_value=9), st.booleans())
def test_the_depth_scan_counts_what_a_parser_nests(value, block_size, indent):
    """Strings full of brackets, quotes and backslashes, cut anywhere between blocks: the scan
    finds exactly the depth ``json`` built."""
    import io

    from chatloom.sources.base import json_too_deep

    data = json.dumps(value, indent=1 if indent else None).encode()
    depth = _depth(value)
    assert not json_too_deep(io.BytesIO(data), limit=depth, block_size=block_size)
    if depth:
        assert json_too_deep(io.BytesIO(data), limit=depth - 1, block_size=block_size)
