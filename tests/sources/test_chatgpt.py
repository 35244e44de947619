"""ChatGPT's data export: branches, tool calls, voice and thoughts, ids seen twice, and its zip."""

import json
import sys
import zipfile

import pytest

from chatloom.errors import SourceError
from chatloom.importing import plan
from chatloom.sources import Reader, get_source
from tests.sources.common import read


def test_chatgpt_branches(fixture, tmp_path):
    path = fixture("chatgpt_conversations.json")
    convs, _, _ = read(path)
    regen = [c for c in convs if "Hello, can you help?" in c.messages[0].content][0]
    assert regen.messages[-1].content == "Sure thing! What do you need?"  # current_node's branch
    assert regen.id.startswith("chatgpt:") and regen.id.count(":") == 1
    every, _, _ = read(path, all_branches=True)
    assert len(every) == len(convs) + 1
    alt = [c for c in every if c.meta.get("branch") == "alternative"][0]
    assert alt.messages[-1].content == "Of course! How can I assist you?"
    # the export comes as a zip
    zipped = tmp_path / "export.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.write(path, "conversations.json")
        z.writestr("user.json", '{"id": "u"}')
        z.writestr("file-abc.png", b"\x89PNG" + bytes(64))
        z.writestr("../evil.txt", "x")
    with pytest.raises(SourceError, match="unsafe path in the zip: ../evil.txt"):
        plan([str(zipped)])
    clean = tmp_path / "clean.zip"
    with zipfile.ZipFile(zipped) as src, zipfile.ZipFile(clean, "w") as dst:
        for member in src.infolist():
            if member.filename != "../evil.txt":
                dst.writestr(member, src.read(member))
    with plan([str(clean)]) as files:
        assert [(f.name, s.name) for f, s, _ in files] == [("conversations.json", "chatgpt")]
        assert not list(files[0][0].parent.glob("*.png"))  # images stay packed
        assert files.display_name(files[0][0]) == f"{clean}!conversations.json"


def _chatgpt_chain(tmp_path, chain):
    """A ChatGPT export of one conversation whose nodes are ``chain``, (role, content[, message
    fields]) in order (a tool's author is named python), read back."""

    def node(i, role, content, extra=None):
        nid = f"n{i}"
        msg = {"id": nid, "author": {"role": role, **({"name": "python"} if role == "tool" else {})},
               "create_time": 1700000000, "content": content, "metadata": {}, **(extra or {})}  # fmt: skip
        children = [f"n{i + 1}"] if i + 1 < len(chain) else []
        return nid, {"id": nid, "parent": f"n{i - 1}" if i else None, "children": children, "message": msg}

    mapping = dict(node(i, *step) for i, step in enumerate(chain))
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps([{"title": "t", "create_time": 1700000000, "mapping": mapping, "current_node": f"n{len(chain) - 1}", "id": "c"}]))
    (conv,) = get_source("chatgpt").read(path, Reader(str(path)))
    return conv


def test_chatgpt_voice_thoughts_and_empty_nodes(tmp_path):
    """A voice message is its transcription; the model's thoughts, their recap, the custom
    instructions and an empty answer node are not turns."""

    chain = [("user", {"content_type": "user_editable_context", "user_profile": "I am X"}),
             ("user", {"content_type": "multimodal_text", "parts": [
                 {"content_type": "audio_transcription", "text": "spoken question"}, {"content_type": "audio_asset_pointer"}]}),
             ("assistant", {"content_type": "text", "parts": [""]}),
             ("assistant", {"content_type": "thoughts", "thoughts": [{"summary": "s", "content": "thinking"}]}),
             ("assistant", {"content_type": "reasoning_recap", "content": "Thought for 3 seconds"}),
             ("assistant", {"content_type": "text", "parts": ["the answer"]})]  # fmt: skip
    conv = _chatgpt_chain(tmp_path, chain)
    assert [(m.role, m.content) for m in conv.messages] == [("user", "spoken question"), ("assistant", "the answer")]


def test_chatgpt_code_sent_to_a_tool_is_a_tool_call_answered_by_the_tool(tmp_path):
    chain = [("user", {"content_type": "text", "parts": ["add 1 and 1"]}, {}),
             ("assistant", {"content_type": "code", "language": "python", "text": "print(1 + 1)"}, {"recipient": "python"}),
             ("tool", {"content_type": "execution_output", "text": "2"}, {}),
             ("assistant", {"content_type": "text", "parts": ["It is 2."]}, {})]  # fmt: skip
    conv = _chatgpt_chain(tmp_path, chain)
    call = {"id": "call_n1", "type": "function", "function": {"name": "python", "arguments": '{"code":"print(1 + 1)"}'}}
    assert [(m.role, m.content, m.tool_calls, m.tool_call_id) for m in conv.messages] == [
        ("user", "add 1 and 1", None, None), ("assistant", "", [call], None), ("tool", "2", None, "call_n1"),
        ("assistant", "It is 2.", None, None)]  # fmt: skip


def test_review_fixes_a_tools_empty_answer_and_brackets_in_a_message(tmp_path):
    chain = [("user", {"content_type": "text", "parts": ["set x"]}, {}),
             ("assistant", {"content_type": "code", "text": "x = 5"}, {"recipient": "python"}),
             ("tool", {"content_type": "execution_output", "text": ""}, {}),
             ("assistant", {"content_type": "text", "parts": ["done"]}, {})]  # fmt: skip
    conv = _chatgpt_chain(tmp_path, chain)
    assert [(m.role, m.content, m.tool_call_id) for m in conv.messages] == [
        ("user", "set x", None), ("assistant", "", None), ("tool", "", "call_n1"), ("assistant", "done", None)]
    # 300 "{" typed in a message are text: the depth guard of the streamed Discord path lets them be
    dce = tmp_path / "dce.json"
    dce.write_text(json.dumps({"guild": {}, "channel": {"id": "1"}, "messages": [{"id": "1", "content": "{" * 300, "author": {"name": "A"}}]}))
    discord = sys.modules[type(get_source("discord")).__module__]
    discord._check_depth(dce)


def test_chatgpt_an_id_twice_in_one_file_is_a_bad_record_not_a_silent_update(tmp_path):
    def conv(cid, text):
        mapping = {"a": {"id": "a", "parent": None, "children": [], "message": {
            "id": "a", "author": {"role": "user"}, "content": {"content_type": "text", "parts": [text]}, "metadata": {}}}}
        return {"title": text, "create_time": 1700000000, "mapping": mapping, "current_node": "a", "id": cid}

    path = tmp_path / "conversations.json"
    path.write_text(json.dumps([{"id": "c1", "title": "broken"}, conv("c1", "first"), conv("c2", "other"), conv("c1", "second")]))
    reader = Reader(str(path))
    convs = list(get_source("chatgpt").read(path, reader))
    assert [(c.id, c.title) for c in convs] == [("chatgpt:c1", "first"), ("chatgpt:c2", "other")]
    assert reader.bad_count == 2 and reader.examples[1] == f"{path}:1: $[3]: conversation id 'c1' again (read at $[1]); skipped"
    # a copy that gave nothing (no messages) does not claim the id either
    path.write_text(json.dumps([{"id": "c1", "mapping": {}}, conv("c1", "first")]))
    assert [c.title for c in get_source("chatgpt").read(path, Reader(str(path)))] == ["first"]
    # nor does one of another shape: it is bad whole (its shape is checked before any branch is read)
    broken = conv("c1", "first")
    broken["mapping"]["b"] = {"id": "b", "parent": None, "children": [], "message": {"author": {"role": "user"}, "content": 5}}
    path.write_text(json.dumps([broken, conv("c1", "second")]))
    reader = Reader(str(path))
    got = list(get_source("chatgpt", all_branches=True).read(path, reader))
    assert [c.title for c in got] == ["second"] and reader.bad_count == 1
    assert reader.examples == [f'{path}:1: $[0].mapping["b"].message.content: expected `object | null`, got `int`']
