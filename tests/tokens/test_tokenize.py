"""Tokenizing into .bin/.idx/.loss: masks by construction for every built-in template, the checks,
the file layout, determinism, and the reader."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from chatloom import jsonl
from chatloom.errors import SourceError
from chatloom.model import Conversation, Message
from chatloom.tokens import CheckError, Encoder, TokenFile, attention_mask, tokenize
from chatloom.tokens.chat_templates import BUILTINS
from chatloom.tokens.tokenizer import get_tokenizer, write_hf_gpt2_folder
from tests.conftest import conv, write_jsonl

CHAT = [Message(role="user", content=" hi there "), Message(role="assistant", content="hello!\n"),
        Message(role="user", content="how?"), Message(role="assistant", content="fine")]
SYSTEM = Message(role="system", content="Be brief.")

# hand-checked: what trains in CHAT (with a system prompt where the template has one)
TRAINED = {
    "chatml": ["hello!\n<|im_end|>", "fine<|im_end|>"],
    "llama-3": ["hello!<|eot_id|>", "fine<|eot_id|>"],  # the template trims content
    "mistral": ["hello!\n</s>", "fine</s>"],
    "gemma": ["hello!<end_of_turn>", "fine<end_of_turn>"],
    "phi-3": ["hello!\n<|end|>", "fine<|end|>"],  # not the eos phi-3 adds after the last turn
    "alpaca": ["hello!\n</s>", "fine</s>"],
    "vicuna": [" hello!\n</s>", " fine</s>"],  # the generation prompt is "ASSISTANT:", the space trains
    "metharme": ["hello!\n</s>", "fine</s>"],
}


def spans(tok, ids: list[int], mask: bytes) -> list[str]:  # type: ignore[no-untyped-def]
    """The decoded text of each run of trained tokens."""
    out, cur = [], []
    for i, m in zip(ids, mask):
        if m:
            cur.append(i)
        elif cur:
            out.append(tok.decode(cur))
            cur = []
    if cur:
        out.append(tok.decode(cur))
    return out


@pytest.mark.parametrize("name", list(BUILTINS))
def test_mask_spans_for_every_builtin_template(name: str, folders: dict[str, Path]) -> None:
    tok = get_tokenizer(str(folders[name]))
    enc = Encoder(tok, name)
    messages = CHAT if name in ("mistral", "gemma") else [SYSTEM, *CHAT]
    ids, mask = enc.encode(Conversation(id="c", messages=messages))
    assert spans(tok, ids, mask) == TRAINED[name]
    # the text is the template's: decoding every token gives the rendered conversation (+ eos at the end)
    rendered = enc.template.render([{"role": m.role, "content": m.content} for m in messages])
    eos = tok.template_tokens["eos_token"]
    assert tok.decode(ids) == (rendered if rendered.endswith(eos) else rendered + eos)


def test_gpt2_chatml_ids_and_the_document_end() -> None:
    enc = Encoder(get_tokenizer("gpt2-chatml"))
    ids, mask = enc.encode(conv("hi", "hello"))
    assert ids[0] == 50257 and ids.count(50257) == 2 and ids.count(50258) == 2
    assert ids[-1] == 50256 and mask[-1] == 0  # each conversation ends with <|endoftext|>, not trained
    assert ids[-3] == 50258 and mask[-3] == 1  # the assistant's <|im_end|> trains
    assert sum(mask) == len(get_tokenizer("gpt2-chatml").encode("hello")) + 1


def test_special_tokens_typed_in_a_chat_are_text() -> None:
    enc = Encoder(get_tokenizer("gpt2-chatml"))
    ids, _ = enc.encode(conv("<|im_end|><|endoftext|>", "ok"))
    assert ids.count(50258) == 2 and ids.count(50256) == 1  # only the template's own


def test_train_flag_overrides_the_default(folders: dict[str, Path]) -> None:
    tok = get_tokenizer("gpt2-chatml")
    messages = [Message(role="user", content="u1", train=True), Message(role="assistant", content="a1", train=False),
                Message(role="user", content="u2"), Message(role="assistant", content="a2")]
    ids, mask = Encoder(tok).encode(Conversation(id="t", messages=messages))
    assert spans(tok, ids, mask) == ["u1<|im_end|>", "a2<|im_end|>"]


def test_roles_a_template_refuses_fail_or_get_fixed(folders: dict[str, Path]) -> None:
    tok = get_tokenizer(str(folders["gemma"]))
    c = Conversation(id="sys", messages=[SYSTEM, *CHAT])
    with pytest.raises(CheckError, match="sys: template gemma: System role not supported; fix"):
        Encoder(tok, "gemma").encode(c)
    enc = Encoder(tok, "gemma", fix=True)
    ids, mask = enc.encode(c)
    assert enc.report.fixed == {"folded the system prompt into the first user turn": 1}
    assert tok.decode(ids).startswith("<bos><start_of_turn>user\nBe brief.\n\n hi there<end_of_turn>")
    doubled = Conversation(id="dbl", messages=[CHAT[0], CHAT[0], CHAT[1]])
    enc = Encoder(get_tokenizer(str(folders["mistral"])), "mistral", fix=True)
    ids, _ = enc.encode(doubled)
    assert enc.report.fixed == {"merged consecutive turns of one role": 1}
    assert "[INST]  hi there \n hi there  [/INST]" in enc.tokenizer.decode(ids)


@pytest.mark.parametrize(("template", "error", "repair", "after_fix"), [
    # no end token after a turn: the model would never learn to stop; --fix appends eos, trained
    ("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}",
     "turn 1 \\(assistant\\) has no end-of-turn token", "appended eos after a turn without an end token",
     lambda tok, ids, mask: spans(tok, ids, mask) == [" hello<|endoftext|>"]),
    # a doubled BOS; --fix removes one
    ("{{ bos_token }}{{ bos_token }}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}",
     "starts with a doubled BOS", "removed a doubled BOS", lambda tok, ids, mask: ids[:2] == [50256, 50257]),
])
def test_checks_fail_or_fix(tmp_path: Path, template: str, error: str, repair: str, after_fix) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "t.jinja"
    path.write_text(template)
    tok = get_tokenizer("gpt2-chatml")
    with pytest.raises(CheckError, match=f"conversation c: {error}.*; fix"):
        Encoder(tok, str(path)).encode(conv("hi", "hello", id="c"))
    enc = Encoder(tok, str(path), fix=True)
    ids, mask = enc.encode(conv("hi", "hello", id="c"))
    assert after_fix(tok, ids, mask) and enc.report.fixed == {repair: 1}


def test_empty_mask_fails_or_is_dropped() -> None:
    only_user = Conversation(id="u", messages=[Message(role="user", content="anyone?")])
    with pytest.raises(CheckError, match="u: has no trained token"):
        Encoder(get_tokenizer("gpt2-chatml")).encode(only_user)
    enc = Encoder(get_tokenizer("gpt2-chatml"), fix=True)
    assert enc.encode_batch([only_user, conv("a", "b", id="ok")])[0] is None
    assert enc.report.dropped == {"no trained token": 1} and enc.report.examples["no trained token"] == ["u"]
    assert enc.report.conversations == 1


def test_max_tokens_drops_or_truncates_by_whole_turns() -> None:
    tok = get_tokenizer("gpt2-chatml")
    long = Conversation(id="long", messages=[SYSTEM, *conv("one " * 40, "two", "three", "four").messages])
    full = Encoder(tok).encode(long)[0]
    enc = Encoder(tok, max_tokens=40)
    assert enc.encode(long) is None and enc.report.dropped == {"over --max-tokens 40": 1}
    enc = Encoder(tok, max_tokens=40, truncate=True)
    ids, mask = enc.encode(long)
    assert len(ids) <= 40 < len(full)
    # the oldest turns go, whole; the system prompt stays
    assert tok.decode(ids).startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nthree<|im_end|>")
    assert spans(tok, ids, mask) == ["four<|im_end|>"]
    assert enc.report.truncated == 1 and enc.report.turns_cut == 2
    too_long = conv("a", "b " * 100, id="tl")  # its last turn alone is over the limit: dropped, counted
    assert enc.encode(too_long) is None and enc.report.dropped == {"over --max-tokens 40": 1}


@pytest.mark.parametrize("template", ["chatml", "alpaca", "vicuna"])
def test_truncation_finds_the_cut_a_turn_by_turn_search_finds(chitchat_path: Path, template: str) -> None:
    """Truncation bisects over the cuts; on real chats (chitchat, long ones with many turns) it
    keeps what trying every cut in order keeps: the first whose rest fits and trains."""
    from msgspec.structs import replace

    from chatloom.sources import Reader, get_source
    from chatloom.tokens.encode import _Drop

    convs = [c for c in get_source("chitchat").read(chitchat_path, Reader("x")) if len(c.messages) >= 40][:10]
    assert len(convs) == 10
    tok = get_tokenizer("gpt2-chatml")
    enc = Encoder(tok, template, fix=True, max_tokens=300, truncate=True)
    ref = Encoder(tok, template, fix=True)
    for c in convs:
        system = [m for m in c.messages if m.role == "system"]
        rest = [m for m in c.messages if m.role != "system"]
        expected = None
        for j in range(1, len(rest)):  # the old search: every cut, in order
            if rest[j].role != "user":
                continue
            try:
                got = ref.encode(replace(c, messages=system + rest[j:]))
            except _Drop:
                got = None
            if got is not None and len(got[0]) <= 300:
                expected = got
                break
        got = enc.encode(c)
        assert (got[0], bytes(got[1])) == (expected[0], bytes(expected[1])) if expected else got is None, c.id


def test_truncation_tokenizes_again_only_the_texts_a_cut_changes(chitchat_path: Path) -> None:
    """A cut's runs are the whole conversation's but at its new start: the texts tokenized while
    truncating a long chat (chitchat's longest, 564 messages) are a sliver of its text, not the
    few encodes of most of it that the bisection made before."""
    from chatloom.sources import Reader, get_source

    longest = max(get_source("chitchat").read(chitchat_path, Reader("x")), key=lambda c: len(c.messages))
    tok = get_tokenizer("gpt2-chatml")
    enc = Encoder(tok, fix=True, max_tokens=300, truncate=True)
    enc.encode(longest)  # its shapes laid out, so that only the encoding is counted below
    sent: list[int] = []
    real = tok.encode_batch

    def counted(texts: list[str]) -> list[list[int]]:
        sent.append(sum(map(len, texts)))
        return real(texts)

    tok.encode_batch = counted  # type: ignore[method-assign]
    try:
        ids, _ = enc.encode(longest)
    finally:
        del tok.encode_batch
    whole = sum(len(m.content) for m in longest.messages)
    assert len(ids) <= 300 and enc.report.truncated == 2
    assert sent[0] >= whole and sum(sent[1:]) < whole / 20, (whole, sent)


def test_template_needs_its_special_tokens() -> None:
    with pytest.raises(Exception, match="needs special tokens that tokenizer gpt2 lacks: <\\|im_start\\|>"):
        Encoder(get_tokenizer("gpt2"), "chatml")


def test_files_meta_and_split(tmp_path: Path) -> None:
    convs = [conv(f"question {i}", f"answer {i}" * (i % 5 + 1), id=f"c{i}") for i in range(40)]
    meta = tokenize(convs, tmp_path / "out", val_ids={"c3", "c7"})
    out = tmp_path / "out"
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 50259
    assert meta["special_tokens"] == {"<|endoftext|>": 50256, "<|im_start|>": 50257, "<|im_end|>": 50258}
    assert meta["splits"]["train"]["conversations"] == 38 and meta["splits"]["val"]["conversations"] == 2
    assert json.loads((out / "meta.json").read_text()) == meta
    for name in ("train", "val"):
        tokens = np.memmap(out / f"{name}.bin", dtype=np.uint16, mode="r")
        loss = np.fromfile(out / f"{name}.loss", dtype=np.uint8)
        idx = np.fromfile(out / f"{name}.idx", dtype=np.uint64)
        assert len(tokens) == len(loss) == meta["splits"][name]["tokens"]
        assert len(idx) == meta["splits"][name]["conversations"] and idx[0] == 0
        assert (tokens[idx.astype(np.int64)] == 50257).all()  # every conversation starts with <|im_start|>
        assert int(loss.sum()) == meta["splits"][name]["trained_tokens"]
    val = TokenFile(out / "val")
    ids, _ = val.conversation(1)
    assert get_tokenizer("gpt2-chatml").decode(ids.tolist()).startswith("<|im_start|>user\nquestion 7")


def test_uint32_for_a_large_vocabulary(tmp_path: Path) -> None:
    # cl100k_base has no <|im_start|>: a template without special tokens, ending turns with eos
    plain = tmp_path / "plain.jinja"
    plain.write_text("{% for m in messages %}{{ m.role }}: {{ m.content }}{{ eos_token if m.role == 'assistant' }}\n{% endfor %}")
    meta = tokenize([conv("hi", "hello", id="a")], tmp_path / "out", tokenizer="cl100k_base", template=str(plain))
    assert meta["dtype"] == "uint32" and meta["vocab_size"] > 65536
    tokens = np.fromfile(tmp_path / "out" / "train.bin", dtype="<u4")
    assert (tmp_path / "out" / "train.bin").stat().st_size == 4 * meta["splits"]["train"]["tokens"]
    assert get_tokenizer("cl100k_base").decode(tokens.tolist()) == "user: hi\nassistant: hello<|endoftext|>\n<|endoftext|>"


def test_deterministic_whatever_the_workers(tmp_path: Path) -> None:
    convs = [conv(f"q{i} " * (i % 7 + 1), f"a{i} " * (i % 3 + 1), *(["more", "yes"] if i % 4 == 0 else []), id=f"c{i}")
             for i in range(1200)]
    val = {f"c{i}" for i in range(0, 1200, 9)}
    tokenize(convs, tmp_path / "a", val_ids=val)
    tokenize(convs, tmp_path / "b", val_ids=val)
    tokenize(convs, tmp_path / "c", val_ids=val, workers=2)
    for name in ("train.bin", "train.idx", "train.loss", "val.bin", "val.idx", "val.loss", "meta.json"):
        a = (tmp_path / "a" / name).read_bytes()
        assert a == (tmp_path / "b" / name).read_bytes() == (tmp_path / "c" / name).read_bytes(), name


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_forked_and_spawned_workers_write_the_same_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """Workers are forked where the main process runs no other thread (they start with its encoder),
    else spawned (they build their own): the files are the same bytes either way."""
    from chatloom.tokens import writer

    convs = [conv(f"q{i} " * (i % 5 + 1), f"a{i} " * (i % 3 + 1), id=f"c{i}") for i in range(1100)]
    path = write_jsonl(tmp_path / "chats.jsonl", convs)
    import gc

    threshold = gc.get_threshold()
    tokenize(jsonl.RawLines(path), tmp_path / "one")
    assert gc.get_threshold() == threshold  # (rarer collections while it encoded here, as they were after)
    used: list[str] = []
    monkeypatch.setattr(writer, "start_method", lambda: used.append(method) or method)
    tokenize(jsonl.RawLines(path), tmp_path / "two", workers=2)
    assert used == [method]
    for name in ("train.bin", "train.idx", "train.loss", "meta.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_workers_are_forked_only_while_no_other_thread_runs() -> None:
    """A fork copies only the thread that forks: a lock another thread held (a progress bar's, the
    console's) would stay held in the worker. In a fresh process: fork; with a thread running: spawn."""
    import subprocess
    import sys

    code = ("import threading, time\nfrom chatloom.tokens.writer import start_method\nprint(start_method())\n"
            "threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\nprint(start_method())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["fork", "spawn"]


def test_a_forked_worker_takes_the_main_process_encoder_as_it_is() -> None:
    """Nothing is loaded or checked again in a forked worker (options that could not load prove it),
    and its tokenizer encodes on the worker's one thread, without the main process's thread pool."""
    from chatloom.tokens import writer

    encoder = Encoder(get_tokenizer("gpt2-chatml"), "chatml")
    threads = encoder.tokenizer.threads
    encoder.tokenizer.threads = 2
    encoder.tokenizer.encode_batch(["some text"] * 100)  # the main process's pool of threads, started
    assert encoder.tokenizer._pool is not None
    import gc

    threshold = gc.get_threshold()
    try:
        writer._init_worker(writer.Options("no-such-tokenizer", None), {}, encoder)
        assert writer._worker is encoder
        assert encoder.tokenizer.threads == 1 and encoder.tokenizer._pool is None
        # the objects it starts with are never collected, and collections are rarer (a tenth of its time at the default)
        assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] == writer.GC_YOUNG
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        writer._worker = None
        encoder.tokenizer.threads = threads  # the tokenizer is cached: as the other tests find it


def test_a_jsonl_files_raw_lines_give_the_same_files(tmp_path: Path) -> None:
    """The workers parse a JSONL file's lines themselves: the files are those of the parsed
    conversations, ids made from digests included, with one worker or two."""
    convs = [conv(f"q{i} " * (i % 5 + 1), f"a{i}", id=None if i % 3 else f"c{i}") for i in range(1100)]
    path = write_jsonl(tmp_path / "chats.jsonl", convs)
    tokenize(jsonl.read_path(path), tmp_path / "parsed")
    tokenize(jsonl.RawLines(path), tmp_path / "one")
    tokenize(jsonl.RawLines(path), tmp_path / "two", workers=2)
    for name in ("train.bin", "train.idx", "train.loss", "meta.json"):
        a = (tmp_path / "parsed" / name).read_bytes()
        assert a == (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_a_bad_line_parsed_in_a_worker_names_the_file_and_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "chats.jsonl", [conv(f"q{i}", f"a{i}", id=f"c{i}") for i in range(1500)])
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1233] = b'{"messages": [{"role": "user", "content": 5}]}\n'  # line 1234, in the third batch
    path.write_bytes(b"".join(lines))
    with pytest.raises(SourceError) as err:
        tokenize(jsonl.RawLines(path), tmp_path / "out", workers=2)
    assert str(err.value).startswith(f"{path}:1234: $.messages[0].content: expected `str`")
    assert not [p for p in (tmp_path / "out").iterdir() if p.is_file()]  # nothing half-written


def test_reader_batches_and_packing(tmp_path: Path) -> None:
    convs = [conv(f"question {i}", f"answer {i} " * (i % 6 + 1), id=f"c{i}") for i in range(30)]
    tokenize(convs, tmp_path / "out")
    tf = TokenFile(tmp_path / "out" / "train.bin")
    assert len(tf) == 30
    x, y, loss = tf.get_batch(4, 16, np.random.default_rng(0))
    assert x.shape == y.shape == loss.shape == (4, 16)
    assert (x[:, 1:] == y[:, :-1]).all()
    rows = tf.packed(64)
    assert rows.skipped == 0 and len(rows) < 30
    seen = 0
    for r in range(len(rows)):
        row = rows[r]
        for s in set(row["seq_ids"].tolist()) - {-1}:
            where = np.flatnonzero(row["seq_ids"] == s)
            assert (row["position_ids"][where] == np.arange(len(where))).all()
            seen += 1
        trained = row["labels"] != -100
        assert (row["labels"][trained] == row["input_ids"][trained]).all()
        am = attention_mask(row)
        i, j = np.nonzero(am)
        assert (row["seq_ids"][i] == row["seq_ids"][j]).all() and (j <= i).all()
    assert seen == 30
    total_trained = sum(int((rows[r]["labels"] != -100).sum()) for r in range(len(rows)))
    assert total_trained == int(np.asarray(tf.loss).sum())


def test_cli_tokenize_and_inspect(tmp_path: Path, run) -> None:  # type: ignore[no-untyped-def]
    src = write_jsonl(tmp_path / "chats.jsonl", [conv("<script>alert(1)</script>", "hello", id="x1"),
                                                   conv("only a user turn", id="x2")])
    r = run("tokenize", str(src), "-o", str(tmp_path / "tok"))
    assert r.exit_code == 2 and r.stderr.strip() == "error: conversation x2: has no trained token (no assistant turn, or every turn has train=false); --fix drops it"
    assert not (tmp_path / "tok" / "train.bin").exists()  # nothing half-written
    r = run("tokenize", str(src), "-o", str(tmp_path / "tok"), "--fix", "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["report"]["dropped"] == {"no trained token": 1}
    run("import", str(src), "-d", "d.db")
    r = run("inspect", "-d", "d.db", "x1", "--html", str(tmp_path / "t.html"), "--json")
    assert r.exit_code == 0
    shown = json.loads(r.stdout)
    assert shown["ids"][0] == 50257 and sum(shown["loss"]) == 2  # "hello" and <|im_end|>
    page = (tmp_path / "t.html").read_text()
    assert "<script>" not in page and "&lt;" in page and "alert" in page  # chat text is escaped
    r = run("tokenize", "-d", "d.db", "-o", str(tmp_path / "t2"), "--template", "nope")
    assert r.exit_code == 2 and "unknown template 'nope'" in r.stderr


def test_hf_folder_default_template_is_its_own(tmp_path: Path) -> None:
    folder = write_hf_gpt2_folder(tmp_path / "tok", special_tokens=["<|im_start|>", "<|im_end|>"],
                                  chat_template="{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                                                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    from chatloom.cli.tokens import _template_name

    assert _template_name(None, str(folder)) == str(folder)
    meta = tokenize([conv("hi", "hello", id="a")], tmp_path / "out", tokenizer=str(folder), template=str(folder))
    assert meta["splits"]["train"]["trained_tokens"] == 2


def test_a_template_without_generation_prompt_trains_the_header(tmp_path: Path) -> None:
    bare = tmp_path / "bare.jinja"  # no add_generation_prompt: at inference the model writes the header itself
    bare.write_text("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}")
    tok = get_tokenizer("gpt2-chatml")
    ids, mask = Encoder(tok, str(bare)).encode(conv("hi", "hello"))
    assert spans(tok, ids, mask) == ["<|im_start|>assistant\nhello<|im_end|>"]


def test_a_check_failing_in_a_worker_is_the_same_clean_error(tmp_path: Path) -> None:
    convs = [conv(f"q{i}", f"a{i}", id=f"c{i}") for i in range(600)] + [Conversation(id="lonely", messages=[Message(role="user", content="hi?")])]
    with pytest.raises(CheckError, match="conversation lonely: has no trained token"):
        tokenize(convs, tmp_path / "out", workers=2)
    assert not [p for p in (tmp_path / "out").iterdir() if p.is_file()]  # nothing half-written, no temp file left


def test_every_conversation_is_checked_against_its_own_render(tmp_path: Path) -> None:
    """A template that changes a reply's text with its contents (strips a reasoning block) gets
    each conversation's own render, also after another of the same shape was laid out."""
    strip = tmp_path / "strip.jinja"
    strip.write_text("{% for m in messages %}<|im_start|>{{ m.role }}\n"
                     "{{ m.content.split('</r>')[-1] if m.role == 'assistant' else m.content }}<|im_end|>\n{% endfor %}"
                     "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    tok = get_tokenizer("gpt2-chatml")
    enc = Encoder(tok, str(strip), end_with_eos=False)
    assert spans(tok, *enc.encode(conv("hi", "plain reply"))) == ["plain reply<|im_end|>"]
    ids, mask = enc.encode(conv("hi", "<r>hidden</r>shown"))  # same shape, text the template changes
    assert tok.decode(ids) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nshown<|im_end|>\n"
    assert spans(tok, ids, mask) == ["shown<|im_end|>"]


def test_a_template_that_puts_context_in_a_completion_is_an_error(tmp_path: Path) -> None:
    echo = tmp_path / "echo.jinja"  # repeats the user's words inside the reply: no mask can be right
    echo.write_text("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
                    "{% if m.role == 'assistant' %} ({{ messages[0].content }}){% endif %}<|im_end|>\n{% endfor %}"
                    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    with pytest.raises(CheckError, match=r"puts the text of message 0 \(user\) inside the completion of message 1"):
        Encoder(get_tokenizer("gpt2-chatml"), str(echo)).encode(conv("hi", "hello", id="c"))


def test_a_typed_special_token_in_a_changed_conversation_is_refused(tmp_path: Path) -> None:
    strip = tmp_path / "lstrip.jinja"
    strip.write_text("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content.lstrip('\n') }}<|im_end|>\n{% endfor %}"
                     "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    enc = Encoder(get_tokenizer("gpt2-chatml"), str(strip))
    assert enc.encode(conv("hi <|im_end|>", "hello", id="fine")) is not None  # the template keeps the text: it stays text
    with pytest.raises(CheckError, match="holds the special token '<\\|im_end\\|>' as text"):
        enc.encode(conv("\n\nhi <|im_end|>", "hello", id="c"))


def test_a_template_that_fails_is_not_a_refusal_of_the_roles(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% for m in messages %}{{ m.content }}{{ 1 // (messages | length - 2) }}{% endfor %}")
    with pytest.raises(CheckError, match="fails while rendering: ZeroDivisionError") as e:
        Encoder(get_tokenizer("gpt2-chatml"), str(broken)).encode(conv("hi", "hello", id="c"))
    assert "repairs the roles" not in str(e.value)
    enc = Encoder(get_tokenizer("gpt2-chatml"), str(broken), fix=True)
    assert enc.encode(conv("hi", "hello", id="c")) is None
    assert list(enc.report.dropped) == ["template fails while rendering: ZeroDivisionError: integer division or modulo by zero"]


# -- what an interrupted run leaves: nothing it does not remove itself, or the next run does ----------


def _ended() -> int:
    """The id of a process that has ended (and been waited for)."""
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _chatloom(*args: str):  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "chatloom", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _until(predicate, seconds: float = 120) -> bool:  # type: ignore[no-untyped-def]
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _workers_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _big_input(tmp_path: Path, chitchat_path: Path) -> Path:
    """chitchat 4 times over (new ids): a run of several seconds, so that it can be stopped midway
    (one copy now takes about a second with two workers)."""
    from msgspec.structs import replace

    from chatloom.sources import Reader, get_source

    convs = [c for c in get_source("chitchat").read(chitchat_path, Reader("x")) if any(m.role == "assistant" for m in c.messages)]
    return write_jsonl(tmp_path / "chats.jsonl", [replace(c, id=f"{c.id}-{k}") for k in range(4) for c in convs])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_killed_tokenize_leaves_temporaries_the_next_run_removes(tmp_path: Path, chitchat_path: Path) -> None:
    import signal

    data = _big_input(tmp_path, chitchat_path)
    out = tmp_path / "tokens"
    proc = _chatloom("tokenize", str(data), "-o", str(out), "--workers", "2")
    assert _until(lambda: out.exists() and any(n.endswith(".tmp") for n in _hidden(out))), "no temporary file appeared"
    assert _until(lambda: len(_workers_of(proc.pid)) >= 2, 60)
    workers = _workers_of(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = [n for n in _hidden(out) if n.endswith(".tmp")]
    assert left and all(f".{proc.pid}." in n for n in left)  # each names the process that made it
    # its worker processes do not outlive it (they waited for ever on a queue nobody fed)
    assert _until(lambda: not any(Path(f"/proc/{w}").exists() for w in workers), 30), "a worker outlived the killed run"
    # files of other names, a run's that still runs, and an old-style one of a file this run does not write, stay
    keep = [".train.bin.notes", "notes.tmp", f".train.bin.{os.getpid()}.abcdefgh.tmp", ".report.json.abcdefgh.tmp"]
    for name in keep:
        (out / name).write_text("not chatloom's to remove")
    (out / ".train.loss.abcdefgh.tmp").write_text("an old chatloom's, killed")  # before names held a process
    (out / f".val.idx.{_ended()}.zz_yy123.tmp").write_text("another killed run's")
    result = subprocess_run("tokenize", str(data), "-o", str(out), "--val", "0.1")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(keep + [f"{n}.{e}" for n in ("train", "val") for e in ("bin", "idx", "loss")] + ["meta.json"])


def subprocess_run(*args: str):  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "chatloom", *args], capture_output=True, text=True)


def test_ctrl_c_in_tokenize_removes_its_own_temporaries(tmp_path: Path, chitchat_path: Path) -> None:
    import signal

    data = _big_input(tmp_path, chitchat_path)
    out = tmp_path / "tokens"
    proc = _chatloom("tokenize", str(data), "-o", str(out), "--workers", "2")

    def writing() -> bool:  # the workers are up and tokens are being written
        try:
            return out.exists() and any(n.startswith(".train.bin.") and (out / n).stat().st_size for n in _hidden(out))
        except FileNotFoundError:  # renamed into place meanwhile
            return False

    assert _until(writing), "no temporary file appeared"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted: what was complete is kept" in err, err
    assert not out.exists(), list(out.iterdir())  # its temporaries removed, and the folder it made taken back


def test_the_default_worker_count_follows_how_workers_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers beat one from about 1,000 chitchat conversations (4 MB) where they are forked,
    4,000 (16 MB) where they must be spawned (a fresh interpreter each): measured on 2 cores."""
    from chatloom.cli import tokens as cli_tokens
    from chatloom.tokens import writer

    cores = os.cpu_count() or 1
    monkeypatch.setattr(writer, "start_method", lambda: "fork")
    assert cli_tokens.default_workers(conversations=999) == 1 and cli_tokens.default_workers(conversations=1000) == cores
    assert cli_tokens.default_workers(size=(4 << 20) - 1) == 1 and cli_tokens.default_workers(size=4 << 20) == cores
    monkeypatch.setattr(writer, "start_method", lambda: "spawn")
    assert cli_tokens.default_workers(conversations=3999) == 1 and cli_tokens.default_workers(conversations=4000) == cores
    assert cli_tokens.default_workers(size=16 << 20) == cores and cli_tokens.default_workers(size=(16 << 20) - 1) == 1


def test_threads_that_tokenize_at_once_put_the_collectors_threshold_back() -> None:
    """Two tokenize calls in one process (the studio's tasks run in threads), one ending before the
    other: the threshold stays raised while either encodes and is what it was after both."""
    import gc

    from chatloom.tokens import writer

    before = gc.get_threshold()
    a, b = writer._fewer_collections(), writer._fewer_collections()
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)
    assert gc.get_threshold()[0] == writer.GC_YOUNG  # b still encodes
    b.__exit__(None, None, None)
    assert gc.get_threshold() == before
