import io
import os

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatloom import jsonl
from chatloom.jsonl import RecordError, parse_line
from chatloom.model import Conversation, Message

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=6,
)
tool_call = st.builds(
    lambda i, name, args: {"id": i, "type": "function", "function": {"name": name, "arguments": args}},
    text, text, text,
)
message = st.builds(
    Message,
    role=st.sampled_from(["system", "user", "assistant", "tool"]),
    content=text,
    name=st.none() | text,
    tool_calls=st.none() | st.lists(tool_call, min_size=1, max_size=2),
    tool_call_id=st.none() | text,
    train=st.none() | st.booleans(),
    meta=st.dictionaries(text, json_value, max_size=3),
)
conversation = st.builds(
    Conversation,
    id=st.none() | text,
    messages=st.lists(message, max_size=5),
    title=st.none() | text,
    language=st.none() | st.sampled_from(["en", "de", "es"]),
    tags=st.lists(text, max_size=3),
    tools=st.lists(st.dictionaries(text, json_value, max_size=2), max_size=2),
    source=st.dictionaries(st.sampled_from(["format", "file", "locator"]), text),
    meta=st.dictionaries(text, json_value, max_size=3),
    created_at=st.none() | text,
    updated_at=st.none() | text,
)


@given(st.lists(conversation, max_size=5))
@settings(max_examples=150, deadline=None)
def test_round_trip_is_lossless(convs):
    buf = io.BytesIO()
    assert jsonl.write(convs, buf) == len(convs)
    buf.seek(0)
    back = [parse_line(line) for _, _, line in jsonl.read_lines(buf)]
    assert back == convs


def test_empty_content_is_still_written():
    line = jsonl.dumps(Conversation(messages=[Message(role="assistant", content="")]))
    assert b'"content":""' in line


@pytest.mark.parametrize(
    "line, message",
    [
        (b'{"messages": [', "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"text": "hi"}', "no 'messages' key"),
        (b'{"messages": [{"role": "user", "content": 5}]}', "$.messages[0].content"),
        (b'{"messages": [{"role": "robot", "content": "x"}]}', "$.messages[0].role"),
        (b'{"messages": "hi"}', "$.messages: expected an array"),
    ],
)
def test_bad_records_say_where(line, message):
    with pytest.raises(RecordError) as err:
        parse_line(line)
    assert message in str(err.value)


def test_openai_content_null_and_parts_are_accepted():
    c = parse_line(
        b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]},'
        b' {"role": "assistant", "content": null, "tool_calls": [{"id": "a", "type": "function",'
        b' "function": {"name": "f", "arguments": "{}"}}]}]}'
    )
    assert [m.content for m in c.messages] == ["hi", ""]
    assert c.messages[1].tool_calls[0]["function"]["name"] == "f"


def test_lima_function_calling_fixture(fixture):
    path = fixture("limagui_v0.6.1_function_calling.jsonl")
    convs = [parse_line(line) for _, _, line in jsonl.read_lines(open(path, "rb"))]
    assert convs
    for c in convs:
        for i, m in enumerate(c.messages):
            assert m.role in ("system", "user", "assistant", "tool")
            if m.role == "tool":  # every result answers a call made before it
                calls = [t["id"] for prev in c.messages[:i] for t in prev.tool_calls or []]
                assert m.tool_call_id in calls
            for call in m.tool_calls or []:
                msgspec.json.decode(call["function"]["arguments"])  # arguments are a JSON string now


def test_legacy_functions_written_back():
    c = parse_line(b'{"messages": [{"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{}"}},'
                   b' {"role": "function", "name": "f", "content": "1"}]}')
    out = msgspec.json.decode(jsonl.dumps(c, legacy_functions=True))
    assert out["messages"][0]["function_call"] == {"name": "f", "arguments": "{}"}
    assert out["messages"][1]["role"] == "function"


@pytest.mark.parametrize("content", [
    b"",
    b"\n\n",
    b'{"a": 1}',
    b'{"a": 1}\n',
    b'{"a": 1}\r\n\r\n  \n{"b": 2}\r\n{"c": 3}',
    b'\n{"a": 1}\n\n\n{"b": 2}\n{"c": 3}\n{"d": 4}\n\n',
])  # fmt: skip
@pytest.mark.parametrize("lines", [1, 2, 3, 512])
def test_raw_spans_give_the_lines_and_numbers_that_reading_the_file_does(tmp_path, content, lines):
    """``tokenize``'s workers read a JSONL file by spans of lines: together, the same non-blank
    lines with the same line numbers as reading it whole (blank lines, CRLF, no final newline)."""
    path = tmp_path / "chats.jsonl"
    path.write_bytes(content)
    raw = jsonl.RawLines(path)
    spans = list(raw.spans(lines))
    got = [(n, line.rstrip(b"\r\n")) for span in spans for n, line in jsonl.read_span(str(path), span)]
    with open(path, "rb") as fp:
        assert got == [(n, line.rstrip(b"\r\n")) for n, _, line in jsonl.read_lines(fp)]
    assert [s[2] for s in spans] == [0, *(s[3] for s in spans)][:len(spans)] and (spans[-1][3] if spans else 0) == len(content)
    total = content.count(b"\n") + (bool(content) and not content.endswith(b"\n"))  # the lines, as ``for line in fp`` sees them
    assert all(s[3] > s[2] for s in spans) and len(spans) == -(-total // lines)
    assert [s[1] for s in spans] == list(range(1, total + 1, lines))


def test_raw_spans_across_the_blocks_the_file_is_read_in(tmp_path):
    """Lines of every length, some longer than a block (1 MiB), over several blocks."""
    import random

    rng = random.Random(7)
    lines = [b'{"x": "' + b"a" * rng.choice([0, 1, 5, 80, 4000, 70000, 1 << 20]) + b'"}' for _ in range(120)]
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    for size in (1, 7, 50):
        got = [pair for span in jsonl.RawLines(path).spans(size) for pair in jsonl.read_span(str(path), span)]
        assert got == list(enumerate(lines, 1))


@pytest.mark.parametrize("change", ["cut", "grown", "rewritten", "replaced"])
def test_a_file_that_changes_while_its_spans_are_read_is_an_error(tmp_path, change):
    """A worker reads its span from the file the spans were found in, or stops with one line
    naming the file and line (before: a Bus error where the file was cut, or lines of two files)."""
    from chatloom.errors import SourceError

    path = tmp_path / "chats.jsonl"
    line = b'{"messages": [{"role": "user", "content": "hi"}]}\n'
    path.write_bytes(line * 10)
    spans = list(jsonl.RawLines(path).spans(4))
    assert len(list(jsonl.read_span(str(path), spans[1]))) == 4
    if change == "cut":
        path.write_bytes(line * 5)
    elif change == "grown":
        with open(path, "ab") as f:
            f.write(line)
    elif change == "rewritten":  # the same size, in place
        path.write_bytes(line.replace(b"hi", b"ho") * 10)
        os.utime(path, ns=(0, 0))
    else:  # another file of the same size and time in its place
        other = tmp_path / "other.jsonl"
        other.write_bytes(line * 10)
        st = path.stat()
        os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
        other.replace(path)
    with pytest.raises(SourceError, match="changed while it was being read") as err:
        list(jsonl.read_span(str(path), spans[1]))
    assert err.value.file == str(path) and err.value.where == 5


def test_ids_read_alone_are_those_parsing_gives(tmp_path):
    """``tokenize --val`` reads a file's ids without decoding the rest: the same ids as parsing
    each line whole and ``ensure_id`` (a line without an id, or with an empty one, gets its
    digest's), and a bad line is the same one-line error."""
    from chatloom.errors import SourceError
    from chatloom.model import ensure_id

    lines = [
        b'{"id": "a", "messages": [{"role": "user", "content": "hi"}]}',
        b'{"messages": [{"role": "user", "content": "no id"}], "title": "t"}',
        b'',
        b'{"id": "", "messages": [{"role": "user", "content": "empty id"}]}',
        b'{"messages": [{"role": "user", "content": "x"}], "id": "last-key"}',
        b'{"id": null, "messages": [{"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{}"}}]}',
    ]
    path = tmp_path / "chats.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert list(jsonl.read_ids(path)) == [ensure_id(c) for c in jsonl.read_path(path)]
    assert [i for i in jsonl.read_ids(path)][:1] == ["a"] and list(jsonl.read_ids(path))[3] == "last-key"
    path.write_bytes(b"\n".join([*lines, b'{"id": 5, "messages": []}', b'{"id": "cut", "messages": [']) + b"\n")
    with pytest.raises(SourceError) as theirs:
        list(jsonl.read_path(path))
    with pytest.raises(SourceError) as ours:
        list(jsonl.read_ids(path))
    assert str(ours.value) == str(theirs.value) and ":7:" in str(ours.value)
