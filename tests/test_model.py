from chatloom.model import (
    Conversation,
    Message,
    content_parts_to_text,
    digest,
    downgrade_to_legacy,
    ensure_id,
    upgrade_legacy_messages,
)
from tests.conftest import conv


def test_digest_is_about_content_not_metadata():
    a = conv("hi", "hello", id="a", title="one", tags=["x"], meta={"k": 1})
    b = conv("hi", "hello", id="b", title="two")
    assert digest(a) == digest(b)
    assert digest(a) != digest(conv("hi", "hello!"))
    assert digest(a) != digest(conv("hello", "hi"))


def test_digest_sees_roles_names_and_tool_calls():
    base = [Message(role="user", content="x")]
    named = [Message(role="user", content="x", name="bob")]
    system = [Message(role="system", content="x")]
    call = [Message(role="user", content="x", tool_calls=[{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}])]
    digests = {digest(Conversation(messages=m)) for m in (base, named, system, call)}
    assert len(digests) == 4


def test_digest_normalizes_unicode_and_surrounding_space():
    composed = conv("caf\u00e9")
    decomposed = conv("cafe\u0301  \n")
    assert digest(composed) == digest(decomposed)


def test_id_from_digest_when_the_source_gives_none():
    c = conv("hi", "hello")
    assert ensure_id(c) == "sha:" + digest(c)[:20]
    c2 = conv("hi", "hello", id="chat:1")
    assert ensure_id(c2) == "chat:1"


def test_legacy_function_call_becomes_tool_calls():
    msgs = upgrade_legacy_messages([
        {"role": "user", "content": "sum 1..7"},
        {"role": "assistant", "content": None, "function_call": {"name": "python", "arguments": {"code": "sum(range(8))"}}},
        {"role": "function", "name": "python", "content": "28"},
        {"role": "assistant", "content": "28"},
    ])
    call = msgs[1]["tool_calls"][0]
    assert call == {"id": "call_1", "type": "function", "function": {"name": "python", "arguments": '{"code":"sum(range(8))"}'}}
    assert msgs[1]["content"] == ""
    assert msgs[2] == {"role": "tool", "name": "python", "content": "28", "tool_call_id": "call_1"}


def test_legacy_shape_written_back():
    c = Conversation(messages=[
        Message(role="assistant", content="", tool_calls=[{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]),
        Message(role="tool", content="ok", name="f", tool_call_id="c"),
    ])
    out = downgrade_to_legacy(c.messages)
    assert out[0] == {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}}
    assert out[1] == {"role": "function", "content": "ok", "name": "f"}
    # and back again: the same conversation
    again = upgrade_legacy_messages(out)
    assert again[1]["tool_call_id"] == again[0]["tool_calls"][0]["id"]


def test_content_parts():
    assert content_parts_to_text([{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {}}]) == "look\n[image_url]"


def test_train_default_policy():
    assert Message(role="assistant", content="").trains
    assert not Message(role="user", content="").trains
    assert Message(role="user", content="", train=True).trains
    assert not Message(role="assistant", content="", train=False).trains
