"""Record formats (ShareGPT, Alpaca, LIMA, LLaMA-Factory) and plain text: one record, one conversation; bad records skipped and counted."""

import json

from chatloom.sources import Reader, get_source
from tests.sources.common import read


def test_sharegpt_tool_calls_and_preferences(fixture):
    convs, _, _ = read(fixture("llamafactory_sharegpt_toolcall_demo_first2.json"))
    msgs = convs[0].messages
    call = [m for m in msgs if m.tool_calls][0]
    result = [m for m in msgs if m.role == "tool"][0]
    assert call.tool_calls[0]["function"]["name"] == "search_recipes"
    assert result.tool_call_id == call.tool_calls[0]["id"]
    assert convs[0].tools and convs[0].tools[0]["type"] == "function"
    dpo, _, _ = read(fixture("llamafactory_sharegpt_dpo_demo_first2.json"))
    assert dpo[0].messages[-1].role == "assistant" and "rejected" in dpo[0].meta


def test_alpaca_history(tmp_path, fixture):
    convs, _, _ = read(fixture("llamafactory_alpaca_en_demo_first3.json"))
    assert [m.role for m in convs[0].messages] == ["user", "assistant"]
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"instruction": "And now?", "input": "ctx", "output": "Now.", "system": "S", "history": [["q1", "a1"]]}) + "\n")
    (conv,), _, _ = read(path, "alpaca")
    assert [(m.role, m.content) for m in conv.messages] == [
        ("system", "S"), ("user", "q1"), ("assistant", "a1"), ("user", "And now?\n\nctx"), ("assistant", "Now."),
    ]


def test_llamafactory_loss_weight(fixture):
    convs, _, _ = read(fixture("llamafactory_v1_sft_demo_first3.jsonl"))
    assert [(m.role, m.train) for m in convs[0].messages] == [("user", False), ("assistant", True)]
    assert convs[0].messages[0].content == "hi"


def test_lima(fixture, tmp_path):
    convs, _, _ = read(fixture("limagui_v0.6.1_chatgpt_chats.jsonl"))
    assert convs[0].title == "Nucleus sampling" and convs[0].language == "en"
    assert convs[0].tags == ["conversational", "world qa"]
    calls, _, _ = read(fixture("limagui_v0.6.1_function_calling.jsonl"))
    assert any(m.tool_calls for c in calls for m in c.messages) and calls[0].tools
    old = tmp_path / "old.csv"
    old.write_text('chat,name\n"[{""role"": ""user"", ""content"": ""hi""}, {""role"": ""assistant"", ""content"": ""yo""}]",greet\n')
    (conv,), _, name = read(old)
    assert name == "lima" and conv.title == "greet" and conv.messages[1].content == "yo"


def test_text_documents(tmp_path):
    path = tmp_path / "story.txt"
    path.write_text("Once upon a time.\n\nThe end.\n")
    (whole,), _, _ = read(path, "text")
    assert whole.messages[0].content == "Once upon a time.\n\nThe end."
    blocks, _, _ = read(path, "text", text_blocks=True)
    assert [c.messages[0].content for c in blocks] == ["Once upon a time.", "The end."]
    assert blocks[1].source["locator"] == "line 3"


def test_bad_records_in_record_formats(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"conversations": [{"from": "human", "value": "hi"}]}\n{"conversations": [{"from": "alien", "value": "x"}]}\n{oops\n')
    convs, reader, _ = read(path, "sharegpt")
    assert len(convs) == 1 and reader.bad_count == 2
    assert reader.examples[0].endswith(":2: $.conversations[0].from: unknown role 'alien'")


def test_a_record_field_of_the_wrong_shape_is_a_bad_record_skipped_and_counted(tmp_path):
    records = {
        "alpaca": [{"instruction": "a", "output": "b", "history": 5}, {"instruction": "c", "output": "d"}],
        "sharegpt": [{"conversations": [{"from": "human", "value": None}, {"from": "gpt", "value": "x"}]},
                     {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}],
        "lima": [{"name": "n", "lang": ["en"], "messages": [{"role": "user", "content": "q"}]},
                 {"name": "n", "tags": "abc", "messages": [{"role": "user", "content": "q"}]},
                 {"name": "n", "lang": "en", "tags": ["t"], "messages": [{"role": "user", "content": "q"}]}],
    }  # fmt: skip
    for fmt, items in records.items():
        path = tmp_path / f"{fmt}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in items))
        reader = Reader(str(path))
        got = list(get_source(fmt).read(path, reader))
        assert len(got) == 1 and reader.bad_count == len(items) - 1, (fmt, reader.examples)
        assert all("expected" in e or f"not a valid {fmt} record" in e for e in reader.examples), reader.examples
