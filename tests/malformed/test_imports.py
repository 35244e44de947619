"""Malformed input, for every format ``chatloom import`` reads: each case ends in a clean error
(exit 2, one line ``error: FILE[:LINE]: …``, the dataset byte for byte as it was) or in a partial
import that says what it skipped, in which file, at which line (``outcome``). Never a traceback,
never a hang, never a record of the wrong shape read as something else.

The inputs are built in ``tmp_path`` from the real exports in ``../shared/fixtures/real`` (read in
place), each changed one way: a field given every JSON type it does not have, in each layout the
format comes in (a JSON array parsed at once, the same array streamed, JSONL); files cut short,
emptied, binary, not UTF-8 part-way, nested past reason; CSV rows that break RFC 4180; zips that
are damaged or would unpack to gigabytes; FIFOs and devices given as the file.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import random
import re
import shutil
import socket
import threading
import tracemalloc
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chatloom.store import Store
from tests.conftest import FIXTURES, conv, write_jsonl
from tests.malformed.common import outcome

DELETE = object()  # a mutation that removes the key


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path], Path]  # writes the input into the folder, returns its path
    expect: str  # "error", "partial", or "either"
    args: tuple[str, ...] = ()
    says: str | Callable[[], str] | None = None  # a regex stderr must match ({path}: the input's path)
    patch: tuple[tuple[str, str, int], ...] = ()  # (module, name, value): e.g. stream a small file


def _fixture(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"fixture {name} is not in {FIXTURES}")
    return path


def _json(name: str) -> Any:
    return json.loads(_fixture(name).read_text(encoding="utf-8"))


def _written(name: str, data: bytes) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    return build


def _mutated(doc: Any, at: tuple[Any, ...], value: Any) -> Any:
    doc = copy.deepcopy(doc)
    *parents, last = at
    target = doc
    for key in parents:
        target = target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return doc


def _array_line(records: list[Any], i: int) -> int:
    """The line record ``i`` starts on in ``json.dumps(records, indent=2)`` (counted here, not by chatloom)."""
    return 2 + sum(len(json.dumps(r, indent=2).splitlines()) for r in records[:i])


def _show(value: Any) -> str:
    return "delete" if value is DELETE else json.dumps(value).replace(" ", "")[:16]


# -- record formats: a field of every wrong type, in each layout ------------------------------

STREAM = (("chatloom.sources.records", "STREAM_ABOVE", 0),)
NOT_STR = [5, 1.5, True, [], {}]

RECORDS: dict[str, tuple[str, int, list[tuple[tuple[Any, ...], list[Any]]], tuple[str, ...]]] = {
    # format: (fixture, the record changed, [(field, wrong values)], layouts)
    "sharegpt": ("llamafactory_sharegpt_toolcall_demo_first2.json", 1, [
        (("conversations",), [5, "x", {}, None, [5], DELETE]),
        (("conversations", 0), [5, "hi", [], {"from": "human"}]),
        (("conversations", 0, "value"), [5, 1.5, True, None, ["a"], {"a": 1}]),
        (("conversations", 0, "from"), [5, [], {}, "alien"]),
        (("system",), [["a"], 5, {}]),
        (("tools",), [5, {"a": 1}, "not json", '{"a": 1}', [5]]),
    ], ("array", "stream", "jsonl")),
    "alpaca": ("llamafactory_alpaca_en_demo_first3.json", 1, [
        (("instruction",), [*NOT_STR, None, DELETE]),
        (("output",), [*NOT_STR, None, DELETE]),
        (("input",), [5, [], {}]),
        (("system",), [["a"], 5]),
        (("history",), [5, "x", [["a"]], [["a", "b", "c"]], [[1, 2]], [5]]),
    ], ("array", "stream", "jsonl")),
    "llamafactory": ("llamafactory_v1_sft_demo_first3.jsonl", 1, [
        (("messages",), [5, "x", {}, [5], DELETE]),
        (("messages", 0, "role"), [5, None, DELETE, "alien"]),
        (("messages", 0, "content"), [5, {}, [5], [{"type": 5}], [{"type": "text", "value": 5}]]),
        (("messages", 0, "loss_weight"), ["1", [], {}]),
    ], ("jsonl",)),
    "lima": ("limagui_v0.6.1_chatgpt_chats.jsonl", 1, [
        (("messages",), [5, "x", {}, [5], DELETE]),
        (("messages", 0, "role"), [5, "alien"]),
        (("messages", 0, "content"), [5, {}]),
        (("name",), [5, [], {}]),
        (("lang",), [5, ["en"]]),
        (("tags",), ["abc", 5, [5], {}]),
        (("tools",), [5, {"a": 1}, [5]]),
    ], ("jsonl",)),
}
OPENAI = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]} for i in range(3)]
OPENAI_FIELDS = [
    (("messages",), [5, "x", {}, [5], DELETE]),
    (("messages", 0, "role"), [5, None, "alien"]),
    (("messages", 0, "content"), [5, {}, [5]]),
    (("tools",), [5, "x"]),
    (("tags",), ["x", [5]]),
    (("id",), [5, []]),
    (("title",), [5]),
]


def _records(fmt: str) -> list[Any]:
    if fmt == "openai":
        return copy.deepcopy(OPENAI)
    name = RECORDS[fmt][0]
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in _fixture(name).read_text(encoding="utf-8").splitlines() if line.strip()]
    return _json(name)


def _write_records(folder: Path, records: list[Any], layout: str, name: str = "records") -> Path:
    if layout == "jsonl":
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        path = folder / f"{name}.json"
        path.write_text(json.dumps(records, indent=2))
    return path


def _record_case(fmt: str, index: int, at: tuple[Any, ...], value: Any, layout: str) -> Case:
    def build(folder: Path) -> Path:
        records = _records(fmt)
        records[index] = _mutated(records[index], at, value)
        return _write_records(folder, records, layout)

    def where() -> str:  # the bad record's place, as the warning must say it
        if layout == "jsonl":
            return f":{index + 1}: "
        if layout == "stream":
            return rf": \$\[{index}\]"
        return f":{_array_line(_records(fmt), index)}: " + rf"\$\[{index}\]"

    field = ".".join(map(str, at))
    return Case(f"{fmt}-{layout}-{field}={_show(value)}", build, "partial", ("-f", fmt), says=lambda: "{path}" + where(),
                patch=STREAM if layout == "stream" else ())


def _record_cases() -> list[Case]:
    cases = []
    for fmt, (_, index, fields, layouts) in RECORDS.items():
        for layout in layouts:
            cases += [_record_case(fmt, index, at, value, layout) for at, values in fields for value in values]
    cases += [_record_case("openai", 1, at, value, "jsonl") for at, values in OPENAI_FIELDS for value in values]
    return cases


# -- ChatGPT: the fields of a conversation, of a node, of a message ----------------------------

CHATGPT = "chatgpt_conversations.json"
CHATGPT_STREAM = (("chatloom.sources.chatgpt", "STREAM_ABOVE", 0),)


def _node_with_message(doc: list[Any], index: int) -> str:
    return next(k for k, v in doc[index]["mapping"].items() if v.get("message"))


CHATGPT_FIELDS: list[tuple[tuple[Any, ...], list[Any]]] = [
    (("mapping",), [5, [], "x", None, DELETE]),
    (("current_node",), [5, [], {}]),
    (("title",), [5, []]),
    (("create_time",), ["x", [], 1e300]),
    (("conversation_id",), [5, []]),
    (("mapping", "NODE"), [5, "x", []]),
    (("mapping", "NODE", "children"), ["b", 5, [5]]),
    (("mapping", "NODE", "parent"), [5, []]),
    (("mapping", "NODE", "message"), [5, "x", []]),
    (("mapping", "NODE", "message", "author"), [None, 5, "x", {}]),
    (("mapping", "NODE", "message", "author", "role"), [5, None]),
    (("mapping", "NODE", "message", "content"), [5, "x"]),
    (("mapping", "NODE", "message", "content", "parts"), ["hi", 5, {}, [5]]),
    (("mapping", "NODE", "message", "content", "content_type"), [5]),
    (("mapping", "NODE", "message", "create_time"), ["x"]),
]


def _chatgpt_case(at: tuple[Any, ...], value: Any, stream: bool) -> Case:
    def build(folder: Path) -> Path:
        doc = _json(CHATGPT)
        node = _node_with_message(doc, 1)
        doc[1] = _mutated(doc[1], tuple(node if k == "NODE" else k for k in at), value)
        path = folder / "conversations.json"
        path.write_text(json.dumps(doc, indent=2))
        return path

    where = r": \$\[1\]" if stream else r":\d+: \$\[1\]"
    return Case(f"chatgpt-{'stream' if stream else 'whole'}-{'.'.join(at)}={_show(value)}", build, "partial",
                says="{path}" + where, patch=CHATGPT_STREAM if stream else ())


# -- Telegram: a message's fields; the chat's and the file's ---------------------------------

TELEGRAM = "telegram_result_langchain.json"
TELEGRAM_STREAM = (("chatloom.sources.telegram", "STREAM_ABOVE", 0),)
TG_ME = ("--me", "Jimmeny Marvelton")
TELEGRAM_FIELDS: list[tuple[tuple[Any, ...], list[Any]]] = [
    (("messages", 1), [5, "x", []]),
    (("messages", 1, "text"), [5, {}, [5], None]),
    (("messages", 1, "from"), [5, [], {}]),
    (("messages", 1, "date"), [5, []]),  # (a date that is none is not read: date_unixtime is)
    (("messages", 1, "date_unixtime"), [[], {}, "abc"]),
    (("messages", 1, "id"), [[], {}]),
    (("messages", 1, "type"), [5]),
]
TELEGRAM_FILE = [(("messages",), [5, "x", {}]), (("name",), [5, []]), (("id",), [[]])]


def _telegram_case(at: tuple[Any, ...], value: Any, stream: bool, expect: str) -> Case:
    def build(folder: Path) -> Path:
        path = folder / "result.json"
        path.write_text(json.dumps(_mutated(_json(TELEGRAM), at, value), indent=1))
        return path

    return Case(f"telegram-{'stream' if stream else 'whole'}-{'.'.join(map(str, at))}={_show(value)}", build, expect,
                ("-f", "telegram", *TG_ME), says="{path}" + (r": " if stream else r"(:\d+)?: ") + r"\$\.messages\[1\]" if expect == "partial" else None,
                patch=TELEGRAM_STREAM if stream else ())


def _telegram_full(folder: Path, chat: Any) -> Path:
    doc = _json("telegram_batch_export_chatminer.json")
    doc["chats"]["list"].insert(0, chat)
    path = folder / "result.json"
    path.write_text(json.dumps(doc, indent=1))
    return path


# -- DiscordChatExporter JSON: indented (read in runs), minified (parsed whole), streamed -----

DCE = "discordchatexporter_general.json"
DCE_ME = ("--me", "Adam")
DCE_FIELDS: list[tuple[tuple[Any, ...], list[Any]]] = [
    (("messages", 3), [5, "x"]),
    (("messages", 3, "content"), [5, [], {}]),
    (("messages", 3, "author"), [None, 5, "x", {"name": 5}]),
    (("messages", 3, "timestamp"), [5, "not a date", []]),
    (("messages", 3, "attachments"), [5, [5], [{"fileName": 5}]]),
    (("messages", 3, "reference"), [5, {"messageId": 5}]),
    (("messages", 3, "id"), [5, []]),
    (("messages", 3, "type"), [5]),
]
DCE_HEADER = [(("guild",), ["x", 5]), (("channel",), [5]), (("channel", "name"), [[1]])]
DCE_LAYOUTS = {"indented": ((), 2), "minified": ((), None), "streamed": ((("chatloom.sources.discord", "WHOLE_BELOW", 0),), None)}


def _dce_case(at: tuple[Any, ...], value: Any, layout: str, expect: str) -> Case:
    patch, indent = DCE_LAYOUTS[layout]

    def build(folder: Path) -> Path:
        path = folder / "general.json"
        path.write_text(json.dumps(_mutated(_json(DCE), at, value), indent=indent))
        return path

    says = ("{path}" + (r":\d+: not a DiscordChatExporter message" if layout == "indented" else r": \$\.messages\[3\]")) if expect == "partial" else None
    return Case(f"discord-{layout}-{'.'.join(map(str, at))}={_show(value)}", build, expect, DCE_ME, says=says, patch=patch)


# -- CSV: DiscordChatExporter's, Kajiwoto's, LIMA-GUI's old one: RFC 4180 and columns --------

DCE_CSV = "discordchatexporter_csv_DERIVED.csv"
KAJIWOTO = "kajiwoto_kajitool_layout_SYNTHETIC.csv"


def _csv_case(name: str, fixture: str, line: int, change: Callable[[str], str], expect: str, args: tuple[str, ...],
              says: str | None = None) -> Case:  # fmt: skip
    """The fixture with its line ``line`` (1-based) changed by ``change``."""

    def build(folder: Path) -> Path:
        lines = _fixture(fixture).read_text(encoding="utf-8").split("\n")
        lines[line - 1] = change(lines[line - 1])
        path = folder / Path(fixture).name
        path.write_text("\n".join(lines))
        return path

    return Case(name, build, expect, args, says=says)


def _dce_csv_row(n: str, content: str) -> Callable[[str], str]:
    return lambda _: f'"{n}","Adam#7077","2023-01-06T14:03:04.0000000+00:00",{content},"",""'


CSV_CASES = [
    # a quote inside a quoted field, not doubled: the field closes early and text follows it
    _csv_case("dce-csv-stray-quote-after-close", DCE_CSV, 2, _dce_csv_row("1", '"hi "there" x"'), "partial", DCE_ME,
              says=r"{path}:2: a stray quote"),
    # a quote in a field that is not quoted
    _csv_case("dce-csv-quote-in-unquoted-field", DCE_CSV, 2, _dce_csv_row("1", 'hi "there"'), "partial", DCE_ME,
              says=r"{path}:2: a stray quote"),
    # a field's closing quote missing: it swallows the line break and runs into the next row
    _csv_case("dce-csv-unbalanced-quote", DCE_CSV, 2, _dce_csv_row("1", '"hi, there'), "partial", DCE_ME, says=r"{path}:2: a stray quote"),
    _csv_case("dce-csv-quote-after-comma-space", DCE_CSV, 3, lambda row: row.replace('",""', '", ""'), "partial", DCE_ME),
    _csv_case("dce-csv-three-columns", DCE_CSV, 2, lambda _: '"1","Adam#7077","2023-01-06T14:03:04+00:00"', "partial", DCE_ME,
              says=r"{path}:2: expected at least 4 columns"),
    _csv_case("dce-csv-bad-date", DCE_CSV, 2, lambda row: row.replace("2023-01-06T14:03:03.8530000+00:00", "yesterday"), "partial",
              DCE_ME, says=r"{path}:2: "),
    Case("dce-csv-cut-inside-a-quote", lambda folder: _written("c.csv", _fixture(DCE_CSV).read_bytes().rstrip()[:-12])(folder), "error",
         DCE_ME, says=r"{path}:\d+: the file ends inside a quoted field"),
    _csv_case("kajiwoto-stray-quote", KAJIWOTO, 2, lambda row: row.replace("How are you?", 'How "are" you?'), "partial", (),
              says=r"{path}:2: a stray quote"),
    _csv_case("kajiwoto-quote-after-close", KAJIWOTO, 4, lambda row: row.replace('"Not much, you?"', '"Not much," you?'), "partial", (),
              says=r"{path}:4: a stray quote"),
    _csv_case("kajiwoto-eleven-columns", KAJIWOTO, 2, lambda row: row + ",x", "partial", (), says=r"{path}:2: expected 10 columns"),
    _csv_case("kajiwoto-nine-columns", KAJIWOTO, 2, lambda row: row.rsplit(",", 1)[0], "partial", (), says=r"{path}:2: expected 10 columns"),
    _csv_case("kajiwoto-deleted-not-a-boolean", KAJIWOTO, 2, lambda row: row.replace(",false,", ",maybe,"), "partial", (),
              says=r"{path}:2: Deleted \(column 8\): expected true or false"),
    _csv_case("kajiwoto-history-unknown", KAJIWOTO, 2, lambda row: row.replace(",Hi!,EMPTY", ",Nobody said this,EMPTY"), "partial", ()),
    _csv_case("kajiwoto-quote-opened-late", KAJIWOTO, 3, lambda row: row.replace("Hello", '"Hello'), "partial", ("-f", "kajiwoto"),
              says=r"{path}:3: a stray quote"),
    Case("kajiwoto-quote-never-closed", _written("k.csv", b"a1,Hi!,Hello!,emotion_any,attachment_any,daytime_any,seen_any,false,EMPTY,EMPTY\n"
                                                 b'c3,"How are you?,Fine,emotion_any,attachment_any,daytime_any,seen_any,false,EMPTY,EMPTY\n'
                                                 + b"e5,Yo,Hey,emotion_any,attachment_any,daytime_any,seen_any,false,EMPTY,EMPTY\n" * 3),
         "error", ("-f", "kajiwoto"), says=r"{path}:2: a quote opened here is never closed"),
]


def _lima_csv(chat: str) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        good = '"[{""role"":""user"",""content"":""q""},{""role"":""assistant"",""content"":""a""}]",greet,work'
        path = folder / "old.csv"
        path.write_text(f"chat,name,tags\n{good}\n{chat}\n")
        return path

    return build


LIMA_CSV = [
    Case("lima-csv-chat-not-json", _lima_csv("not json,x,y"), "partial", ("-f", "lima"), says=r"{path}:3: chat column: not valid JSON"),
    Case("lima-csv-chat-a-number", _lima_csv("5,x,y"), "partial", ("-f", "lima"), says=r"{path}:3: chat column: \$\.messages"),
    Case("lima-csv-content-a-number", _lima_csv('"[{""role"":""user"",""content"":5}]",x,y'), "partial", ("-f", "lima")),
    Case("lima-csv-tags-an-object", _lima_csv('"[{""role"":""user"",""content"":""q""}]",x,"[{}]"'), "partial", ("-f", "lima")),
    Case("lima-csv-stray-quote", _lima_csv('"[]"x,y,z'), "partial", ("-f", "lima"), says=r"{path}:3: a stray quote"),
]


# -- every format: files that are not what they say -------------------------------------------

def _base(fmt: str, folder: Path) -> tuple[Path, tuple[str, ...]]:
    """A good file of ``fmt`` (a real export where there is one), with the flags it needs."""
    simple = {
        "sharegpt": ("llamafactory_sharegpt_toolcall_demo_first2.json", ()),
        "alpaca": ("llamafactory_alpaca_en_demo_first3.json", ()),
        "llamafactory": ("llamafactory_v1_sft_demo_first3.jsonl", ()),
        "lima": ("limagui_v0.6.1_chatgpt_chats.jsonl", ()),
        "chatgpt": (CHATGPT, ()),
        "telegram": (TELEGRAM, TG_ME),
        "telegram-full": ("telegram_batch_export_chatminer.json", ("--me", "Author 1")),
        "discord": (DCE, DCE_ME),
        "discord-csv": (DCE_CSV, DCE_ME),
        "discord-txt": ("discordchatexporter_plaintext_DERIVED.txt", (*DCE_ME, "--date-format", "mdy")),
        "kajiwoto": (KAJIWOTO, ()),
        "whatsapp": ("whatsapp_ios_langchain.txt", ("--me", "Dr. Feather")),
    }
    if fmt in simple:
        name, args = simple[fmt]
        path = folder / Path(name).name
        shutil.copyfile(_fixture(name), path)
        return path, args
    if fmt == "openai":
        return write_jsonl(folder / "chats.jsonl", [conv("q", "a"), conv("q2", "a2")]), ()
    if fmt == "chitchat":
        chat = {"messages": [[{"text": "hi", "timestamp": "2018-05-02T19:38:15Z", "sender": "a"}],
                             [{"text": "yo", "timestamp": "2018-05-02T19:38:20Z", "sender": "b"}]], "start": "2018-05-02T19:38:01Z"}
        path = folder / "dataset.json"
        path.write_text(json.dumps({"c1": chat, "c2": chat}, indent=1))
        return path, ("-f", "chitchat")
    if fmt == "chatterbot":
        path = folder / "greetings.yml"
        path.write_text("categories:\n- greetings\nconversations:\n- - Hello\n  - Hi\n- - How are you?\n  - Fine\n")
        return path, ("-f", "chatterbot")
    raise AssertionError(fmt)


FORMATS = ["sharegpt", "alpaca", "llamafactory", "lima", "openai", "chatgpt", "telegram", "telegram-full", "discord",
           "discord-csv", "discord-txt", "kajiwoto", "whatsapp", "chitchat", "chatterbot"]  # fmt: skip
JSON_WHOLE = {"sharegpt", "alpaca", "chatgpt", "telegram", "telegram-full", "discord", "chitchat"}  # one JSON document


def _damaged(fmt: str, how: str) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path, _ = _base(fmt, folder)
        data = path.read_bytes()
        rng = random.Random(f"{fmt}-{how}")
        if how == "empty":
            data = b""
        elif how == "blank":
            data = b" \n\n\t\n"
        elif how == "bom-only":
            data = b"\xef\xbb\xbf"
        elif how == "binary":
            data = bytes(rng.randrange(256) for _ in range(8192))
        elif how == "half":
            data = data[: len(data) // 2]
        elif how == "not-utf8-midway":  # a Latin-1 byte in the middle of a text (inside a string, most likely)
            at = len(data) // 2
            data = data[:at] + b"caf\xe9" + data[at:]
        elif how == "nul-midway":
            at = len(data) // 2
            data = data[:at] + b"\x00" * 64 + data[at:]
        elif how == "utf16-no-bom":
            data = data.decode("utf-8").encode("utf-16-le")
        elif how == "junk-after":
            data = data + b"\n\x00\x01\x02 junk ]]}}"
        path.write_bytes(data)
        return path

    return build


DAMAGE = {"empty": "error", "blank": "error", "bom-only": "error", "binary": "error", "utf16-no-bom": "error",
          "half": "either", "not-utf8-midway": "either", "nul-midway": "either", "junk-after": "either"}  # fmt: skip


def _damage_cases() -> list[Case]:
    cases = []
    for fmt in FORMATS:
        for how, expect in DAMAGE.items():
            if how in ("half", "junk-after") and fmt in ("whatsapp", "discord-txt"):
                continue  # half a chat, or a line more, is still a chat
            cases.append(Case(f"{fmt}-{how}", _damaged(fmt, how), "error" if how == "half" and fmt in JSON_WHOLE else expect,
                              _flags(fmt)))  # fmt: skip
    return cases


def _flags(fmt: str) -> tuple[str, ...]:
    return {"telegram": TG_ME, "telegram-full": ("--me", "Author 1"), "discord": DCE_ME, "discord-csv": DCE_ME,
            "discord-txt": (*DCE_ME, "--date-format", "mdy"), "whatsapp": ("--me", "Dr. Feather"), "chitchat": ("-f", "chitchat"),
            "chatterbot": ("-f", "chatterbot")}.get(fmt, ())  # fmt: skip


DEEP = b"[" * 5000 + b"]" * 5000
SHAPES = [
    # a JSON document of the wrong kind at the top, for the formats that read one
    *(Case(f"{fmt}-top-{kind}", _written(name, data), "error", ("-f", fmt, *extra))
      for fmt, name, extra in (("sharegpt", "a.json", ()), ("alpaca", "a.json", ()), ("chatgpt", "conversations.json", ()),
                               ("telegram", "result.json", TG_ME), ("discord", "general.json", DCE_ME), ("chitchat", "dataset.json", ()))
      for kind, data in (("number", b"5"), ("string", b'"x"'), ("null", b"null"), ("true", b"true"))),
    *(Case(f"{fmt}-array-of-{kind}", _written("a.json", data), "error", ("-f", fmt))
      for fmt in ("sharegpt", "alpaca", "chatgpt") for kind, data in (("numbers", b"[1, 2, 3]"), ("strings", b'["a", "b"]'),
                                                                      ("nulls", b"[null]"), ("arrays", b"[[], []]"))),
    Case("telegram-top-array", _written("result.json", b"[1]"), "error", ("-f", "telegram", *TG_ME)),
    Case("discord-top-array", _written("general.json", b"[1]"), "error", ("-f", "discord", *DCE_ME)),
    Case("chitchat-top-array", _written("dataset.json", b"[1]"), "error", ("-f", "chitchat")),
    # nesting past any export's
    *(Case(f"{fmt}-{name}-deep-nesting", _written(name, data), "either", ("-f", fmt, *extra))
      for fmt, name, data, extra in (
          ("sharegpt", "a.json", b'[{"conversations": ' + DEEP + b"}]", ()),
          ("sharegpt", "a.jsonl", b'{"conversations": ' + DEEP + b"}\n", ()),
          ("openai", "a.jsonl", b'{"messages": ' + DEEP + b"}\n", ()),
          ("chatgpt", "conversations.json", b'[{"mapping": ' + DEEP + b"}]", ()),
          ("telegram", "result.json", b'{"messages": [' + DEEP + b"]}", TG_ME),
          ("discord", "general.json", b'{"guild": {}, "channel": {}, "messages": [' + DEEP + b"]}", DCE_ME),
          ("chitchat", "dataset.json", b'{"c": ' + DEEP + b"}", ()))),
    # a huge line: a 3 MB record of the wrong shape, and 3 MB of no JSON at all
    Case("sharegpt-huge-bad-record", _written("a.jsonl", b'{"conversations": [{"from": "human", "value": ' + b"1" * (3 << 20) + b"}]}\n"
                                              b'{"conversations": [{"from": "human", "value": "q"}]}\n'), "partial", ("-f", "sharegpt")),
    Case("openai-huge-junk-line", _written("a.jsonl", b'{"messages": [{"role": "user", "content": "q"}]}\n' + b"x" * (3 << 20) + b"\n"),
         "partial", ("-f", "openai")),
    # JSONL with a line that is a JSON value of another kind
    *(Case(f"{fmt}-jsonl-line-{kind}", _written("a.jsonl", good + b"\n" + line + b"\n"), "partial", ("-f", fmt), says=r"{path}:2: ")
      for fmt, good in (("sharegpt", b'{"conversations": [{"from": "human", "value": "q"}]}'),
                        ("alpaca", b'{"instruction": "i", "output": "o"}'),
                        ("openai", b'{"messages": [{"role": "user", "content": "q"}]}'),
                        ("lima", b'{"name": "n", "lang": "en", "tags": [], "messages": [{"role": "user", "content": "q"}]}'),
                        ("llamafactory", b'{"messages": [{"role": "user", "content": "q", "loss_weight": 0}]}'))
      for kind, line in (("number", b"5"), ("array", b"[1]"), ("string", b'"x"'), ("cut", b'{"a": '))),
    # a BOM before JSONL whose second line is bad
    Case("sharegpt-bom-jsonl-bad-line", _written("a.jsonl", b'\xef\xbb\xbf{"conversations": [{"from": "human", "value": "q"}]}\n'
                                                 b'{"conversations": 5}\n'), "partial", (), says=r"{path}:2: \$\.conversations"),
    Case("telegram-full-chat-name-a-number", lambda folder: _telegram_full(folder, {"name": 5, "messages": []}), "partial",
         ("--me", "Author 1"), says=r"{path}: \$\.chats\.list\[0\]\.name"),
    Case("telegram-full-chat-a-string", lambda folder: _telegram_full(folder, "x"), "partial", ("--me", "Author 1")),
    Case("telegram-full-chats-list-a-number", _written("result.json", b'{"about": "telegram.org", "chats": {"list": 3}}'), "error",
         ("-f", "telegram", *TG_ME)),
    Case("telegram-messages-a-number-detected", _written("result.json", b'{"name": "x", "type": "personal_chat", "id": 1, "messages": 5}'),
         "error", TG_ME, says=r"{path}: not a Telegram export: \$\.messages"),
]


# -- a file whose every record is bad: an error, naming its first bad line ------------------------

def _all_bad(fmt: str, layout: str) -> Case:
    def build(folder: Path) -> Path:
        records = _records(fmt)
        field = {"sharegpt": ("conversations",), "alpaca": ("instruction",), "llamafactory": ("messages", 0, "loss_weight"),
                 "lima": ("messages",), "openai": ("messages",)}[fmt]  # (the first record still tells the format)
        records = [_mutated(r, field, 5 if fmt == "alpaca" else "x") for r in records]
        return _write_records(folder, records, layout)

    where = ":1: " if layout == "jsonl" else ":2: " if layout == "array" else ": "
    first = "" if layout == "jsonl" else r"\$\[0\]"
    return Case(f"{fmt}-{layout}-every-record-bad", build, "error", ("-f", fmt), says="{path}" + where + "nothing imported: .*the first: " + first,
                patch=STREAM if layout == "stream" else ())


def _all_bad_chat(name: str, build: Callable[[Path], Path], args: tuple[str, ...], patch: tuple = ()) -> Case:
    return Case(name, build, "error", args, says=r"{path}.*nothing imported: all \d+ of its records are bad", patch=patch)


def _every_message(fixture: str, key: str, value: Any, name: str, indent: int | None) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        doc = _json(fixture)
        for m in doc["messages"]:
            m[key] = value
        path = folder / name
        path.write_text(json.dumps(doc, indent=indent))
        return path

    return build


ALL_BAD = [
    *(_all_bad(fmt, layout) for fmt in ("sharegpt", "alpaca") for layout in ("array", "stream", "jsonl")),
    *(_all_bad(fmt, "jsonl") for fmt in ("llamafactory", "lima", "openai")),
    _all_bad_chat("chatgpt-every-conversation-bad", lambda folder: _written("conversations.json", json.dumps(
        [_mutated(c, ("mapping",), 5) for c in _json(CHATGPT)]).encode())(folder), ()),
    _all_bad_chat("telegram-every-message-bad", _every_message(TELEGRAM, "text", 5, "result.json", 1), ("-f", "telegram", *TG_ME)),
    _all_bad_chat("telegram-every-message-bad-no-me", _every_message(TELEGRAM, "text", 5, "result.json", 1), ("-f", "telegram")),
    _all_bad_chat("telegram-stream-every-message-bad", _every_message(TELEGRAM, "text", 5, "result.json", 1), ("-f", "telegram", *TG_ME),
                  TELEGRAM_STREAM),
    _all_bad_chat("discord-every-message-bad", _every_message(DCE, "author", 5, "general.json", 2), DCE_ME),
    _all_bad_chat("discord-minified-every-message-bad", _every_message(DCE, "author", 5, "general.json", None), DCE_ME),
    _all_bad_chat("kajiwoto-every-row-bad", _written("k.csv", b"a,b,c,emotion_any,x,daytime_any,y,maybe,EMPTY,EMPTY\n" * 3),
                  ("-f", "kajiwoto")),
    _all_bad_chat("chitchat-every-chat-bad", _written("dataset.json", b'{"a": {"messages": 5}, "b": {"messages": [[{"text": 5}]]}}'),
                  ("-f", "chitchat")),
]


# -- zips -----------------------------------------------------------------------------------

def _zip(members: dict[str, bytes], name: str = "export.zip") -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path = folder / name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for member, data in members.items():
                z.writestr(member, data)
        return path

    return build


def _zip_of(fmt: str, how: str) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        inner = folder / "inner"
        inner.mkdir()
        path = _damaged(fmt, how)(inner)
        return _zip({path.name: path.read_bytes()})(folder)

    return build


def _cut_zip(folder: Path) -> Path:
    path = _zip({"conversations.json": _fixture(CHATGPT).read_bytes()})(folder)
    path.write_bytes(path.read_bytes()[:-30])
    return path


def _bomb(size: int) -> Callable[[Path], Path]:
    """A zip whose member unpacks to ``size`` bytes of spaces after a JSON array's opening (deflate
    packs it a thousand times): written in pieces, never held whole."""

    def build(folder: Path) -> Path:
        path = folder / "bomb.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z, z.open("conversations.json", "w", force_zip64=True) as member:
            member.write(b"[")
            block = b" " * (1 << 20)
            for _ in range(size >> 20):
                member.write(block)
            member.write(b"]")
        return path

    return build


ZIPS = [
    *(Case(f"zip-{fmt}-{how}", _zip_of(fmt, how), expect, _flags(fmt), says=r"export\.zip!")
      for fmt in ("chatgpt", "sharegpt", "telegram", "discord", "kajiwoto") for how, expect in (("half", "error"), ("binary", "error"),
                                                                                                  ("not-utf8-midway", "either")) if not (
          how == "half" and fmt == "kajiwoto")),
    Case("zip-cut-short", _cut_zip, "error", says=r"{path}: a zip file that is cut short"),
    Case("zip-random-bytes-named-zip", _written("export.zip", b"PK\x03\x04" + bytes(range(256)) * 8), "error"),
    Case("zip-path-escape", _zip({"../evil.json": b"[]"}), "error", says=r"unsafe path in the zip"),
    Case("zip-empty", _zip({}), "error"),
    Case("zip-only-images", _zip({"a.png": b"\x89PNG\r\n"}), "error"),
    Case("zip-bomb-by-ratio", _bomb(40 << 20), "error", says=r"{path}!conversations\.json: would unpack to 4\d\.\d MB .*zip bomb"),
    Case("zip-over-total", _zip({"conversations.json": b"[]" + b" " * 4096}), "error",
         says=r"{path}!conversations\.json: its text files would unpack to", patch=(("chatloom.importing.files", "ZIP_MAX_TOTAL", 1024),)),
]


CASES: list[Case] = [
    *_record_cases(),
    *(_chatgpt_case(at, value, stream) for stream in (False, True) for at, values in CHATGPT_FIELDS for value in values),
    *(_telegram_case(at, value, stream, "partial") for stream in (False, True) for at, values in TELEGRAM_FIELDS for value in values),
    *(_telegram_case(at, value, False, "error") for at, values in TELEGRAM_FILE for value in values),
    *(_dce_case(at, value, layout, "partial") for layout in DCE_LAYOUTS for at, values in DCE_FIELDS for value in values),
    *(_dce_case(at, value, layout, "error") for layout in DCE_LAYOUTS for at, values in DCE_HEADER for value in values),
    *CSV_CASES,
    *LIMA_CSV,
    *_damage_cases(),
    *SHAPES,
    *ALL_BAD,
    *ZIPS,
]


@pytest.fixture(scope="module")
def sound(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset with something in it, copied for each case: an error must leave it as it was."""
    path = tmp_path_factory.mktemp("dataset") / "sound.db"
    with Store(path, create=True) as store:
        store.import_conversations([conv("already", "here")])
    return path


def _check(case: Case, folder: Path, dataset: Path, run: Callable, monkeypatch: pytest.MonkeyPatch) -> str:
    for module, name, value in case.patch:
        monkeypatch.setattr(importlib.import_module(module), name, value)
    inputs = folder / "in"
    inputs.mkdir()
    path = case.build(inputs)
    seen: list[Any] = []

    def kept(*args: str) -> Any:
        seen.append(run(*args))
        return seen[-1]

    got = outcome(kept, ["import", "-d", str(dataset), *case.args, str(path)], file=path, dataset=dataset, partial_ok=case.expect != "error")
    if case.expect != "either":
        assert got == case.expect, f"{case.id}: {got}, expected {case.expect}:\n{seen[-1].stderr}"
    says = case.says() if callable(case.says) else case.says
    if says is not None:
        pattern = says.replace("{path}", re.escape(str(path)))
        assert re.search(pattern, seen[-1].stderr), f"{case.id}: stderr does not match {pattern!r}:\n{seen[-1].stderr}"
    return got


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_malformed_input(case: Case, tmp_path: Path, sound: Path, run: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = tmp_path / "d.db"
    shutil.copyfile(sound, dataset)
    _check(case, tmp_path, dataset, run, monkeypatch)


def test_the_corpus_is_large_and_covers_every_format() -> None:
    from chatloom.sources import sources

    assert len(CASES) >= 250 and len({c.id for c in CASES}) == len(CASES)
    covered = " ".join(c.id for c in CASES)
    assert all(name in covered for name in sources() if name != "text"), [n for n in sources() if n not in covered]


# -- BOMs: a UTF-8 BOM before any format is read as if it were not there -----------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_a_utf8_bom_changes_nothing(fmt: str, tmp_path: Path, run: Callable) -> None:
    path, args = _base(fmt, tmp_path)
    plain = run("import", "-d", str(tmp_path / "plain.db"), *args, str(path))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    bom = run("import", "-d", str(tmp_path / "bom.db"), *args, str(path))
    assert plain.exit_code == bom.exit_code == 0, bom.stderr
    assert Store(tmp_path / "plain.db").count() == Store(tmp_path / "bom.db").count() > 0


# -- what is not a file: refused at once, never waited on -----------------------------------------

@pytest.fixture
def unblock() -> Any:
    """If a reader hangs on a FIFO, open its other end after a while (then close it) so that the
    test fails instead of hanging."""
    timers: list[threading.Timer] = []

    def arm(fifo: Path) -> None:
        def release() -> None:
            os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))

        timer = threading.Timer(5, release)
        timer.daemon = True
        timer.start()
        timers.append(timer)

    yield arm
    for timer in timers:
        timer.cancel()


@pytest.mark.parametrize("fmt", ["auto", "sharegpt", "telegram", "whatsapp", "chitchat"])
def test_a_fifo_given_as_the_file_is_refused_at_once(fmt: str, tmp_path: Path, sound: Path, run: Callable, unblock: Any) -> None:
    fifo = tmp_path / "chats.jsonl"
    os.mkfifo(fifo)
    unblock(fifo)
    dataset = tmp_path / "d.db"
    shutil.copyfile(sound, dataset)
    assert outcome(run, ["import", "-d", str(dataset), "-f", fmt, "--me", "x", str(fifo)], file=fifo, dataset=dataset) == "error"
    assert "a FIFO (named pipe), not a file" in run("import", "-d", str(dataset), "-f", fmt, "--me", "x", str(fifo)).stderr


def test_a_fifo_in_a_folder_is_passed_over(tmp_path: Path, run: Callable, unblock: Any) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    os.mkfifo(folder / "pipe.jsonl")
    unblock(folder / "pipe.jsonl")
    write_jsonl(folder / "chats.jsonl", [conv("q", "a")])
    result = run("import", "-d", str(tmp_path / "d.db"), str(folder))
    assert result.exit_code == 0, result.stderr
    assert Store(tmp_path / "d.db").count() == 1


def test_a_fifo_given_as_the_dataset_is_refused(tmp_path: Path, run: Callable, unblock: Any) -> None:
    fifo = tmp_path / "d.db"
    os.mkfifo(fifo)
    unblock(fifo)
    chats = write_jsonl(tmp_path / "chats.jsonl", [conv("q", "a")])
    assert outcome(run, ["import", "-d", str(fifo), str(chats)], file=fifo) == "error"


def test_a_socket_and_a_device_are_refused(tmp_path: Path, sound: Path, run: Callable) -> None:
    dataset = tmp_path / "d.db"
    shutil.copyfile(sound, dataset)
    sock_path = tmp_path / "chats.json"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        assert outcome(run, ["import", "-d", str(dataset), str(sock_path)], file=sock_path, dataset=dataset) == "error"
    for device in ("/dev/zero", "/dev/null"):  # one that never ends, one that is always empty
        if os.path.exists(device):
            assert outcome(run, ["import", "-d", str(dataset), "-f", "openai", device], file=device, dataset=dataset) == "error"
            assert "a character device, not a file" in run("import", "-d", str(dataset), device).stderr


# -- a large JSON array on one line streams: memory far below the file's size -----------------------

def test_a_large_one_line_record_array_streams(tmp_path: Path) -> None:
    """About 24 MB of Alpaca records on one line, as a 200 MB export comes: read through ijson, a
    record at a time, so the peak of memory (Python's own allocations, tracemalloc) stays far below
    the file's size; parsed at once, it would be several times the size."""
    from chatloom.sources import Reader, get_source

    path = tmp_path / "alpaca.json"
    record = {"instruction": "Say something about the number {}. " + "Words. " * 20, "input": "", "output": "Something. " * 30}
    with open(path, "w") as f:
        f.write("[")
        for i in range(40_000):
            f.write(("," if i else "") + json.dumps({**record, "instruction": record["instruction"].format(i)}))
        f.write("]")
    size = path.stat().st_size
    assert size > 20 << 20
    reader = Reader(str(path))
    tracemalloc.start()
    try:
        n = sum(1 for _ in get_source("alpaca").read(path, reader))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 40_000 and reader.bad_count == 0
    assert peak < size / 8, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"


def test_a_streamed_array_names_the_line_of_its_json_fault(tmp_path: Path, run: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    from chatloom.sources import records

    monkeypatch.setattr(records, "STREAM_ABOVE", 0)
    path = tmp_path / "a.json"
    good = json.dumps({"instruction": "i", "output": "o"})
    path.write_text("[\n" + ",\n".join([good] * 3) + ",\n{oops}\n]")
    line = run("import", "-d", str(tmp_path / "d.db"), "-f", "alpaca", str(path)).stderr.strip()
    assert re.match(rf"error: {re.escape(str(path))}:\d+: not valid JSON", line), line
