"""The corpora that ship on PyPI (chitchat-dataset, chatterbot-corpus), read from the installed package."""

import pytest

from chatloom.errors import SourceError
from chatloom.sources import Reader, detect, get_source
from tests.sources.common import read_all


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
