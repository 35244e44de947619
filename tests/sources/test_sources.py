import pytest

from chatloom.errors import SourceError, UsageError
from chatloom.importing import import_paths
from chatloom.sources import Reader, detect, get_source, sources
from chatloom.store import Store
from tests.conftest import conv, write_jsonl


def read_all(name, path, strict=False):
    reader = Reader(str(path), strict=strict)
    return list(get_source(name).read(path, reader)), reader


def test_registry_has_the_first_formats():
    assert {"openai", "chitchat", "chatterbot"} <= set(sources())
    with pytest.raises(UsageError, match="unknown format 'nope'"):
        get_source("nope")


def test_chitchat_package(chitchat_path):
    convs, reader = read_all("chitchat", chitchat_path)
    assert len(convs) == 7168 and reader.bad_count == 0
    c = convs[0]
    assert c.id.startswith("chitchat:")
    assert c.messages[0].role == "user"
    assert {m.role for m in c.messages} == {"user", "assistant"}
    assert c.created_at and c.meta["prompt"]
    # turns alternate: consecutive utterances of one sender were joined into one turn
    assert all(a.role != b.role for a, b in zip(c.messages, c.messages[1:]))
    assert detect(chitchat_path).name == "chitchat"


def test_chatterbot_package():
    source = get_source("chatterbot")
    files = source.resolve("package")
    english = [f for f in files if f.parent.name == "english" and f.stem == "greetings"][0]
    convs, _ = read_all("chatterbot", english)
    assert convs[0].tags == ["greetings"] and convs[0].language == "en"
    assert [m.role for m in convs[0].messages][:2] == ["user", "assistant"]
    assert convs[0].id == "chatterbot:english/greetings:0"
    assert detect(english).name == "chatterbot"


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
    with pytest.raises(SourceError, match=r":2: .*--strict"):
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
        with pytest.raises(UsageError, match="pass -f chitchat"):
            import_paths(store, ["package"])


def test_chitchat_truncated_json_names_the_line(tmp_path, chitchat_path):
    path = tmp_path / "dataset.json"
    path.write_bytes(chitchat_path.read_bytes()[:5000])
    with pytest.raises(SourceError, match=r"dataset.json:\d+: the file ends inside its JSON \(truncated\?\)"):
        read_all("chitchat", path)


def test_chatterbot_one_category_not_in_a_list(tmp_path):
    path = tmp_path / "greetings.yml"
    path.write_text("categories: greetings\nconversations:\n- - hi\n  - hello\n")
    (conv,) = get_source("chatterbot").read(path, Reader(str(path)))
    assert conv.tags == ["greetings"] and [m.content for m in conv.messages] == ["hi", "hello"]
