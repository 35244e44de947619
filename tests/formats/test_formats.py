"""Export formats: each writer against its reader (our importers, Hugging Face ``datasets``, the
trainers' snippets), what each drops and counts, split folders, and the CLI around them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import pytest
import yaml

from chatloom import jsonl
from chatloom.errors import UsageError
from chatloom.formats import formats, get_format
from chatloom.formats.export import export
from chatloom.formats.tables import from_arrow_row
from chatloom.model import Conversation, Message, digest
from chatloom.sources import Reader, get_source
from chatloom.store import Store
from tests.cli.test_cli import _one_error_line
from tests.conftest import conv

EVERY_FORMAT = ["openai", "sharegpt", "alpaca", "chatml", "metharme", "pygmalion", "openchat", "completion",
                "template:chatml", "kajiwoto", "csv", "parquet", "hf", "lima"]  # fmt: skip
JSONL_FORMATS = [f for f in EVERY_FORMAT if get_format(f).extension == ".jsonl"]


def call(call_id: str, name: str, args: dict) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def schema(name: str) -> dict:
    return {"type": "function", "function": {"name": name, "description": f"{name} tool", "parameters": {"type": "object", "properties": {}}}}


PLAIN = [
    conv("hi", "hello!", "how are you?", "fine, thanks", id="p1"),
    Conversation(id="p2", messages=[Message(role="system", content="Be brief."), Message(role="user", content="2+2?"),
                                    Message(role="assistant", content="4")]),  # fmt: skip
    conv('multi\nline "quoted", with commas; and {{user}}', "ok, {{char}} noted", id="p3"),
]
TOOLS = Conversation(id="t1", tools=[schema("weather"), schema("convert")], messages=[
    Message(role="system", content="Use tools."),
    Message(role="user", content="weather in Paris and Rome?"),
    Message(role="assistant", content="", tool_calls=[call("c1", "weather", {"city": "Paris"}), call("c2", "weather", {"city": "Rome"})]),
    Message(role="tool", content="18C", tool_call_id="c1"),
    Message(role="tool", content="21C", tool_call_id="c2"),
    Message(role="assistant", content="", tool_calls=[call("c3", "convert", {"celsius": 18})]),
    Message(role="tool", content="64F", tool_call_id="c3"),
    Message(role="assistant", content="Paris 18C (64F), Rome 21C."),
])  # fmt: skip
MESSY = [
    Conversation(id="m1", messages=[Message(role="user", content="hey all", name="ana"), Message(role="user", content="hi", name="bo"),
                                    Message(role="assistant", content="hello both", name="Aqua"), Message(role="user", content="bye")]),
    conv("anyone there?", id="m2"),
    Conversation(id="m3", messages=[Message(role="system", content="Be kind."), Message(role="user", content="a"),
                                    Message(role="assistant", content="b", train=False), Message(role="system", content="Be brief now."),
                                    Message(role="user", content="c"), Message(role="assistant", content="d")]),
]  # fmt: skip


def dataset(tmp_path: Path, convs: list[Conversation], name: str = "d.db") -> Store:
    store = Store(tmp_path / name, create=True)
    store.import_conversations(convs)
    return store


def read_back(source: str, path: Path) -> list[Conversation]:
    """The conversations our importer reads from an export; a bad record fails the test."""
    reader = Reader(str(path), strict=True)
    return list(get_source(source).read(path, reader))


def shape(c: Conversation) -> tuple:
    """What a format without call ids must keep: roles, texts, calls with parsed arguments, which
    call each tool result answers, and the tool schemas."""
    calls = {tc["id"]: (tc["function"]["name"], json.loads(tc["function"]["arguments"])) for m in c.messages for tc in m.tool_calls or ()}
    rows = tuple((m.role, m.content, tuple(calls[tc["id"]] for tc in m.tool_calls or ()), calls.get(m.tool_call_id)) for m in c.messages)
    return rows, orjson.dumps(c.tools, option=orjson.OPT_SORT_KEYS)


def test_every_format_is_registered(run):
    assert sorted(formats()) == sorted(f.partition(":")[0] for f in EVERY_FORMAT)
    listed = json.loads(run("formats", "--json").stdout)["export"]
    assert set(listed) == set(formats()) and all(listed.values())
    assert get_format("template:chatml").label == "template:chatml"


# -- round trips through our importers ---------------------------------------------------------


@pytest.mark.parametrize("fmt", ["openai", "sharegpt", "alpaca", "lima"])
def test_plain_conversations_read_back_the_same(tmp_path, fmt):
    store = dataset(tmp_path, PLAIN)
    result = export(store, str(tmp_path / "out.jsonl"), fmt=fmt)
    assert result.files == {str(tmp_path / "out.jsonl"): 3} and not result.dropped
    back = read_back(fmt, tmp_path / "out.jsonl")
    assert [digest(c) for c in back] == [digest(c) for c in PLAIN]


@pytest.mark.parametrize("fmt", ["sharegpt", "lima"])
def test_tool_calls_read_back_linked_to_their_results(tmp_path, fmt):
    store = dataset(tmp_path, [TOOLS])
    result = export(store, str(tmp_path / "out.jsonl"), fmt=fmt)
    back = read_back(fmt, tmp_path / "out.jsonl")
    if fmt == "sharegpt":  # parallel calls are one function_call turn holding a list
        assert not result.dropped
        assert [shape(c) for c in back] == [shape(TOOLS)]
    else:  # LIMA-GUI holds one call a turn: the second call is dropped and counted
        assert result.dropped == {"tool calls after the first of a turn (LIMA-GUI holds one)": 1}
        rows = shape(back[0])[0]
        assert rows[2] == ("assistant", "", (("weather", {"city": "Paris"}),), None)
        assert rows[5:7] == (("assistant", "", (("convert", {"celsius": 18}),), None), ("tool", "64F", (), ("convert", {"celsius": 18})))


def test_sharegpt_is_what_llamafactory_reads(tmp_path):
    store = dataset(tmp_path, [TOOLS])
    export(store, str(tmp_path / "out.jsonl"), fmt="sharegpt")
    record = orjson.loads((tmp_path / "out.jsonl").read_bytes())
    assert record["system"] == "Use tools."
    assert [t["from"] for t in record["conversations"]] == ["human", "function_call", "observation", "observation", "function_call", "observation", "gpt"]
    assert orjson.loads(record["conversations"][1]["value"]) == [{"name": "weather", "arguments": {"city": "Paris"}},
                                                                 {"name": "weather", "arguments": {"city": "Rome"}}]  # fmt: skip
    assert orjson.loads(record["conversations"][4]["value"]) == {"name": "convert", "arguments": {"celsius": 18}}
    assert [t["name"] for t in orjson.loads(record["tools"])] == ["weather", "convert"]  # bare function schemas, as a string


@pytest.mark.parametrize(("fixture_name", "fmt"), [
    ("llamafactory_sharegpt_toolcall_demo_first2.json", "sharegpt"),
    ("llamafactory_alpaca_en_demo_first3.json", "alpaca"),
    ("limagui_v0.6.1_function_calling.jsonl", "lima"),
    ("limagui_v0.6.1_chatgpt_chats.jsonl", "lima"),
])  # fmt: skip
def test_real_files_read_back_the_same(tmp_path, fixture, fixture_name, fmt):
    original = read_back(fmt, fixture(fixture_name))
    store = dataset(tmp_path, original)
    export(store, str(tmp_path / "out.jsonl"), fmt=fmt)
    back = read_back(fmt, tmp_path / "out.jsonl")
    assert [digest(c) for c in back] == [digest(c) for c in original]
    if fmt == "lima":
        assert [(c.title, c.language, c.tags, c.tools) for c in back] == [(c.title, c.language, c.tags, c.tools) for c in original]


def test_kajiwoto_round_trip_is_byte_identical(tmp_path, fixture):
    csv_path = fixture("kajiwoto_kajitool_layout_SYNTHETIC.csv")
    store = dataset(tmp_path, read_back("kajiwoto", csv_path))
    export(store, str(tmp_path / "out.csv"), fmt="kajiwoto")
    assert (tmp_path / "out.csv").read_bytes() == csv_path.read_bytes()
    # an edit changes only its row's pair; the other columns stay
    edited = next(store.iter_conversations(ids=["kajiwoto:c3D4"]))
    edited.messages[-1].content = "Great, {{user}}!"
    store.put(edited)
    export(store, str(tmp_path / "edited.csv"), fmt="kajiwoto")
    lines = (tmp_path / "edited.csv").read_text().splitlines()  # an edited conversation is stored last
    assert lines[-1] == "c3D4,How are you?,\"Great, %{name}!\",emotion_happy_or_excited,attachment_liked,daytime_morning,seen_any,false,Hi!,EMPTY"
    assert sorted(lines[:-1]) == sorted(set(csv_path.read_text().splitlines()) - {lines[-1]} - {csv_path.read_text().splitlines()[1]})


def test_kajiwoto_rows_of_other_conversations(tmp_path):
    store = dataset(tmp_path, [*PLAIN, TOOLS])
    result = export(store, str(tmp_path / "out.csv"), fmt="kajiwoto")
    assert result.dropped == {"tool calls": 3, "tool messages": 3, "tool schemas": 2, "system messages": 2}
    back = read_back("kajiwoto", tmp_path / "out.csv")
    # one row a pair, each following up the pair before it: the last row of p1 is p1 again
    assert [(m.role, m.content) for m in back[1].messages] == [(m.role, m.content) for m in PLAIN[0].messages]
    assert [(m.role, m.content) for m in back[3].messages] == [(m.role, m.content) for m in PLAIN[2].messages]  # {{user}} ⇄ %{name}
    assert "%{name}" in (tmp_path / "out.csv").read_text() and "%{kajiname}" in (tmp_path / "out.csv").read_text()
    assert back[2].messages[0].content == "2+2?"  # the system message has no column


# -- what a format cannot hold is counted ------------------------------------------------------


def test_alpaca_counts_what_it_drops(tmp_path):
    store = dataset(tmp_path, [*MESSY, TOOLS])
    result = export(store, str(tmp_path / "a.jsonl"), fmt="alpaca")
    assert result.files[str(tmp_path / "a.jsonl")] == 3
    assert result.dropped == {
        "speaker names": 3, "turn boundaries (consecutive turns of one role joined)": 1,
        "messages after the last assistant reply": 1, "conversations without a user turn and a reply to it": 1,
        "system messages after the first turn": 1, "train flags": 1,
        "tool calls": 3, "tool messages": 3, "tool schemas": 2,
    }  # fmt: skip
    records = [orjson.loads(line) for line in (tmp_path / "a.jsonl").read_bytes().splitlines()]
    assert records[0] == {"instruction": "hey all\nhi", "input": "", "output": "hello both", "system": "", "history": []}
    assert records[1] == {"instruction": "c", "input": "", "output": "d", "system": "Be kind.", "history": [["a", "b"]]}
    assert records[2]["output"] == "Paris 18C (64F), Rome 21C." and records[2]["system"] == "Use tools."


def test_the_cli_prints_the_dropped_counts(run, tmp_path):
    dataset(tmp_path, MESSY, "chatloom.db").close()
    result = run("export", "-f", "alpaca", "-o", "a.jsonl")
    assert result.exit_code == 0
    assert "warning: dropped 3 × speaker names" in result.stderr
    assert "wrote 2 conversations to a.jsonl" in result.stdout
    data = json.loads(run("export", "-f", "alpaca", "-o", "a.jsonl", "--json").stdout)
    assert data["dropped"]["speaker names"] == 3 and data["files"] == {"a.jsonl": 2}
    assert data["snippets"] == ["dataset_info.json", "a.axolotl.yml"]


# -- text formats ------------------------------------------------------------------------------


def _lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_chatml_reads_back_and_equals_the_chatml_template(tmp_path):
    store = dataset(tmp_path, [*PLAIN, *MESSY])
    export(store, str(tmp_path / "c.jsonl"), fmt="chatml")
    export(store, str(tmp_path / "t.jsonl"), fmt="template:chatml")
    texts = [r["text"] for r in _lines(tmp_path / "c.jsonl")]
    assert texts == [r["text"] for r in _lines(tmp_path / "t.jsonl")]
    parsed = [re.findall(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>\n", t, re.S) for t in texts]
    assert parsed == [[(m.role, m.content) for m in c.messages] for c in [*PLAIN, *MESSY]]


def test_template_format_errors_and_refusals(tmp_path):
    with pytest.raises(UsageError, match="needs a value"):
        get_format("template:")
    with pytest.raises(UsageError, match="needs a template"):
        get_format("template")
    with pytest.raises(UsageError, match="takes no ':x'"):
        get_format("openai:x")
    with pytest.raises(UsageError, match="unknown template 'nope'"):
        get_format("template:nope")
    store = dataset(tmp_path, [PLAIN[1], TOOLS])  # metharme has no tool role: that conversation is refused
    result = export(store, str(tmp_path / "m.jsonl"), fmt="template:metharme")
    assert result.files[str(tmp_path / "m.jsonl")] == 1 and sum(result.dropped.values()) == 1
    assert "Metharme has no tool role" in next(iter(result.dropped))
    # without --tokenizer, a built-in renders with its model family's bos and eos (Pygmalion's <s> … </s>)
    assert _lines(tmp_path / "m.jsonl") == [{"text": "<s><|system|>Be brief.<|user|>2+2?<|model|>4</s>"}]
    export(store, str(tmp_path / "g.jsonl"), fmt="template:metharme", tokenizer="gpt2-chatml")
    eos = "<|endoftext|>"  # with a tokenizer, its bos and eos
    assert _lines(tmp_path / "g.jsonl") == [{"text": f"{eos}<|system|>Be brief.<|user|>2+2?<|model|>4{eos}"}]


def test_metharme_prompt_and_generation(tmp_path):
    store = dataset(tmp_path, [PLAIN[1], MESSY[0], MESSY[1]])
    result = export(store, str(tmp_path / "m.jsonl"), fmt="metharme")
    assert _lines(tmp_path / "m.jsonl") == [
        {"prompt": "<|system|>Be brief.<|user|>2+2?<|model|>", "generation": "4"},
        {"prompt": "<|user|>hey all<|user|>hi<|model|>", "generation": "hello both"},
    ]
    assert result.dropped == {"speaker names": 3, "messages after the last assistant reply": 1, "conversations without an assistant reply": 1}


def test_pygmalion_names_persona_and_placeholders(run, tmp_path):
    cat = Conversation(id="g1", meta={"scenario": "A sunny porch."}, messages=[
        Message(role="system", content="{{char}} is a cheerful cat."), Message(role="user", content="hi {{char}}"),
        Message(role="assistant", content="meow, {{user}}!"), Message(role="user", content="pet?", name="bo"),
        Message(role="assistant", content="purr"),
    ])  # fmt: skip
    dataset(tmp_path, [cat, MESSY[0]], "chatloom.db").close()
    assert run("export", "-f", "pygmalion", "--char", "Mimi", "--user", "Sam", "-o", "p.jsonl").exit_code == 0
    records = _lines(tmp_path / "p.jsonl")
    assert records[0] == {
        "input": "Mimi's Persona: Mimi is a cheerful cat.\nScenario: A sunny porch.\n<START>\nSam: hi Mimi\nMimi: meow, Sam!\nbo: pet?\nMimi:",
        "output": " purr",
    }
    assert records[1] == {"input": "<START>\nana: hey all\nbo: hi\nAqua:", "output": " hello both"}  # names from the messages
    run("export", "-f", "pygmalion", "-o", "d.jsonl")
    assert _lines(tmp_path / "d.jsonl")[0]["input"].startswith("Assistant's Persona: Assistant is a cheerful cat.\n")


def test_openchat_weights_and_completion_pairs(tmp_path):
    store = dataset(tmp_path, [MESSY[2], TOOLS, MESSY[1]])
    result = export(store, str(tmp_path / "o.jsonl"), fmt="openchat")
    first = _lines(tmp_path / "o.jsonl")[0]
    assert first["system"] == "Be kind."
    assert [(i["content"], i["weight"]) for i in first["items"]] == [("a", 0.0), ("b", 0.0), ("c", 0.0), ("d", 1.0)]
    assert result.dropped["system messages after the first turn"] == 1 and "train flags" not in result.dropped
    result = export(store, str(tmp_path / "c.jsonl"), fmt="completion")
    records = _lines(tmp_path / "c.jsonl")
    for record, original in zip(records, [MESSY[2], TOOLS], strict=True):
        assert record["prompt"] + record["completion"] == jsonl.bare_messages(original.messages)
        assert len(record["completion"]) == 1 and record["completion"][0]["role"] == "assistant"
    assert records[1]["tools"] == TOOLS.tools
    assert result.dropped == {"train flags": 1, "conversations without an assistant reply": 1}


# -- tables ------------------------------------------------------------------------------------


def test_csv_one_row_per_message(tmp_path):
    import csv

    store = dataset(tmp_path, [*PLAIN, MESSY[0]])
    export(store, str(tmp_path / "m.csv"), fmt="csv")
    with open(tmp_path / "m.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["conversation_id"], int(r["turn"]), r["role"], r["name"], r["content"]) for r in rows] == [
        (c.id, i, m.role, m.name or "", m.content) for c in [*PLAIN, MESSY[0]] for i, m in enumerate(c.messages)
    ]


def test_parquet_holds_the_openai_shape_in_row_groups(tmp_path):
    import datasets
    import pyarrow.parquet as pq

    convs = [*PLAIN, *MESSY, TOOLS]
    store = dataset(tmp_path, convs)
    export(store, str(tmp_path / "d.parquet"), fmt="parquet", batch=3)
    assert pq.ParquetFile(tmp_path / "d.parquet").num_row_groups == 3  # 7 conversations, 3 a group
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "d.parquet"), split="train", cache_dir=str(tmp_path / "cache"))
    stored = list(store.iter_conversations())
    assert [from_arrow_row(row) for row in ds] == stored  # every field, metadata included
    bare = [[{k: v for k, v in m.items() if v is not None and k not in ("train", "meta")} for m in row["messages"]] for row in ds]
    assert bare == [jsonl.bare_messages(c.messages) for c in convs]
    export(store, str(tmp_path / "bare.parquet"), fmt="parquet", meta=False)
    assert pq.read_schema(tmp_path / "bare.parquet").names == ["messages", "tools"]


def test_hf_folder_loads_from_disk_and_is_replaced_whole(tmp_path):
    import datasets

    store = dataset(tmp_path, [*PLAIN, TOOLS])
    out = tmp_path / "hf"
    result = export(store, str(out), fmt="hf")
    assert result.files == {str(out): 4}
    ds = datasets.load_from_disk(str(out))
    assert [from_arrow_row(row) for row in ds] == list(store.iter_conversations())
    result = export(store, str(out), fmt="hf", split=1, seed=0)  # replaces the Dataset by a DatasetDict
    assert result.files == {str(out / "train"): 3, str(out / "validation"): 1}
    dd = datasets.load_from_disk(str(out))
    assert set(dd) == {"train", "validation"} and dd["train"].num_rows == 3
    assert not list(tmp_path.glob(".hf.*"))  # no temp folder left
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a datasets folder"):
        export(store, str(tmp_path / "notes"), fmt="hf")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("fmt", [*JSONL_FORMATS, "parquet", "csv"])
def test_datasets_loads_every_file_export(tmp_path, fmt):
    import datasets

    store = dataset(tmp_path, [*PLAIN, *MESSY, TOOLS])
    ext = get_format(fmt).extension
    out = tmp_path / f"out{ext}"
    result = export(store, str(out), fmt=fmt, snippets=False)
    builder = {".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}[ext]
    ds = datasets.load_dataset(builder, data_files=str(out), split="train", cache_dir=str(tmp_path / "cache"))
    rows = sum(len(c.messages) for c in store.iter_conversations()) if fmt == "csv" else result.files[str(out)]
    assert ds.num_rows == rows > 0


# -- split folders and trainer snippets --------------------------------------------------------


@pytest.mark.parametrize("fmt", EVERY_FORMAT)
def test_split_folder_for_every_format(tmp_path, fmt):
    store = dataset(tmp_path, [*PLAIN, conv("one", "two", id="p4"), conv("three", "four", id="p5")])
    result = export(store, str(tmp_path / "out"), fmt=fmt, split=0.4, seed=3)
    assert list(result.files.values()) == [3, 2]
    for path in result.files:
        assert Path(path).exists() and Path(path).parent == tmp_path / "out"
    again = export(store, str(tmp_path / "again"), fmt=fmt, split=0.4, seed=3)
    for a, b in zip(result.files, again.files, strict=True):
        if Path(a).is_file():  # seeded: the same files again
            assert Path(a).read_bytes() == Path(b).read_bytes()


def _load(builder: str | None, path: Path, split: str | None, cache: Path):
    import datasets

    if builder is None:
        return datasets.load_from_disk(str(path))
    return datasets.load_dataset(builder, data_files=str(path), split=split or "train", cache_dir=str(cache))


LLAMAFACTORY_TYPES = {"arrow": "arrow", "csv": "csv", "json": "json", "jsonl": "json", "parquet": "parquet"}  # its FILEEXT2TYPE
ALPACA_COLUMNS = {"prompt", "query", "response", "system", "history"}


@pytest.mark.parametrize("fmt", [f for f in EVERY_FORMAT if get_format(f).llamafactory or get_format(f).axolotl])
@pytest.mark.parametrize("split", [None, 0.4])
def test_trainer_snippets_read_the_export(tmp_path, fmt, split):
    store = dataset(tmp_path, [*PLAIN, *MESSY, TOOLS])
    ext = get_format(fmt).extension
    out = tmp_path / ("out" if split or not ext else f"chats{ext}")
    result = export(store, str(out), fmt=fmt, split=split, seed=1)
    home = out if split else tmp_path
    info = json.loads((home / "dataset_info.json").read_text())
    expected = {f"out_{s}" for s in ("train", "val")} if split else {out.name.removesuffix(ext)}
    assert set(info) == expected and set(result.snippets) >= {str(home / "dataset_info.json")}
    for entry in info.values():  # as LLaMA-Factory loads it: dataset_dir/file_name, the type from the extension
        data = home / entry["file_name"]
        ds = _load(LLAMAFACTORY_TYPES[data.suffix[1:]], data, None, tmp_path / "cache")
        columns = entry.get("columns", {})
        assert set(columns.values()) <= set(ds.column_names), (entry, ds.column_names)
        if entry.get("formatting") == "sharegpt":
            tags = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt", "observation_tag": "observation",
                    "function_tag": "function_call", "system_tag": "system", **entry.get("tags", {})}  # fmt: skip
            roles = {tags[k] for k in ("user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag")}
            turns = [t for row in ds[columns.get("messages", "conversations")] for t in row]
            assert turns and all(t[tags["content_tag"]] is not None and t[tags["role_tag"]] in roles for t in turns)
        else:
            assert set(columns) <= ALPACA_COLUMNS and ds.num_rows > 0
    yml = home / ("axolotl.yml" if split else f"{out.name.removesuffix(ext)}.axolotl.yml")
    config = yaml.safe_load(yml.read_text())
    assert set(config) == ({"datasets", "test_datasets"} if split else {"datasets"})
    for entry in config["datasets"] + config.get("test_datasets", []):
        ds = _load(entry.get("ds_type"), Path(entry["path"]), entry.get("split"), tmp_path / "cache")
        kind = entry["type"]
        if kind == "chat_template":
            messages = ds[0][entry["field_messages"]]
            mapping = entry["message_property_mappings"]
            assert set(mapping.values()) <= set(messages[0])
            known = {r for names in entry.get("roles", {}).values() for r in names} | {"system", "user", "assistant", "tool"}
            assert all(m[mapping["role"]] in known for row in ds[entry["field_messages"]] for m in row)
            if "message_field_training" in entry:  # a flag where the message has one
                flags = [m.get(entry["message_field_training"]) for row in ds[entry["field_messages"]] for m in row]
                assert all(f is None or isinstance(f, bool | float) for f in flags)
        elif isinstance(kind, dict):
            assert {kind["field_instruction"], kind["field_output"]} <= set(ds.column_names)
        else:
            needs = {"alpaca": {"instruction", "input", "output"}, "metharme": {"prompt", "generation"}, "completion": {entry.get("field", "text")}}
            assert needs[kind] <= set(ds.column_names)


def test_snippets_merge_into_dataset_info_and_can_be_left_out(run, tmp_path):
    dataset(tmp_path, PLAIN, "chatloom.db").close()
    (tmp_path / "dataset_info.json").write_text(json.dumps({"mine": {"file_name": "mine.json"}}))
    run("export", "-f", "sharegpt", "-o", "a.jsonl")
    run("export", "-f", "alpaca", "-o", "b.jsonl")
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert list(info) == ["mine", "a", "b"] and info["b"]["formatting"] == "alpaca"
    run("export", "-o", "c.jsonl", "--no-snippets")
    assert "c" not in json.loads((tmp_path / "dataset_info.json").read_text()) and not (tmp_path / "c.axolotl.yml").exists()
    (tmp_path / "dataset_info.json").write_text("[not an object")
    result = run("export", "-o", "d.jsonl")
    assert result.exit_code == 0 and "dataset_info.json: not a JSON object, left as it is" in result.stderr
    assert (tmp_path / "dataset_info.json").read_text() == "[not an object" and (tmp_path / "d.axolotl.yml").exists()
    run("export", "-f", "kajiwoto", "-o", "k.csv")  # no trainer reads it: no snippet
    assert not (tmp_path / "k.axolotl.yml").exists()


def test_export_errors_are_one_line(run, tmp_path):
    dataset(tmp_path, PLAIN, "chatloom.db").close()
    _one_error_line(run("export", "-f", "nope", "-o", "x"), "unknown format 'nope'")
    _one_error_line(run("export", "-f", "template:nope", "-o", "x"), "unknown template 'nope'")
    _one_error_line(run("export", "-f", "hf", "-o", "-"), "-f hf writes a folder")
    _one_error_line(run("export", "-o", "-", "--split", "0.5"), "give -o a folder")
    assert not (tmp_path / "x").exists()
    out = run("export", "-f", "chatml", "-o", "-")
    assert out.exit_code == 0 and len(out.stdout.splitlines()) == 3 and not list(tmp_path.glob("*.yml"))
