"""A ``verbatim`` built-in template (ChatML) is not rendered per conversation by tokenize: its
layouts' text must then be its render, for any contents. Checked here by rendering, over generated
chats whose contents hold what templates trip on (whitespace at the ends, special tokens, the
layout's own sentinel characters, Jinja syntax, empty turns), and the GPT-2 ranks' cache."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chatloom.model import Conversation, Message
from chatloom.tokens.chat_templates import BUILTINS, get_template, message_dicts
from chatloom.tokens.layout import Layouts
from chatloom.tokens.tokenizer import get_tokenizer

TRICKY = st.sampled_from(["", " ", "\n", "  x  ", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "\ue000", "\ue0010c\ue001",
                          "\u2002\u2003", "{{ x }}", "{% if %}", "é ü 漢字", "a\r\nb", "</s>"])  # fmt: skip
CONTENT = st.lists(st.one_of(TRICKY, st.text(max_size=12)), max_size=4).map("".join)
MESSAGE = st.builds(
    lambda role, content, name, train: Message(role=role, content=content, name=name, train=train),
    st.sampled_from(["system", "user", "assistant", "tool"]), CONTENT, st.one_of(st.none(), st.sampled_from(["ann", "bo b"])),
    st.sampled_from([None, True, False]),
)  # fmt: skip


def test_only_chatml_is_verbatim_and_its_source_is_plain() -> None:
    assert [name for name, b in BUILTINS.items() if b.verbatim] == ["chatml"]
    source = get_template("chatml").source
    assert "|" not in source.replace("<|im_start|>", "").replace("<|im_end|>", "")  # no filter on anything


@settings(max_examples=300, deadline=None)
@given(st.lists(MESSAGE, min_size=1, max_size=6))
def test_a_verbatim_templates_layout_text_is_its_render(messages: list[Message]) -> None:
    conv = Conversation(messages=messages)
    template = get_template("chatml", get_tokenizer("gpt2-chatml").template_tokens)
    assert template.verbatim
    layout = Layouts(template, get_tokenizer("gpt2-chatml")).get(conv)
    assert layout.text(conv.messages) == template.render(message_dicts(conv), None)


def test_the_gpt2_encodings_are_tiktokens_own() -> None:
    import tiktoken

    texts = ["hello world", " <|endoftext|> x", "漢字 and émigré\n\n  spaces", "a" * 300]
    from chatloom.tokens.tokenizer import _constructor, _tiktoken_encoding

    reference = tiktoken.Encoding(**_constructor("gpt2"))  # tiktoken's own build from the data-gym files
    for name in ("gpt2", "gpt2-chatml"):
        enc = _tiktoken_encoding(name)
        assert [enc.encode_ordinary(t) for t in texts] == [reference.encode_ordinary(t) for t in texts]
        assert enc.encode("<|endoftext|>", allowed_special="all") == [50256]
    assert _tiktoken_encoding("gpt2-chatml").encode("<|im_start|><|im_end|>", allowed_special="all") == [50257, 50258]
    assert _tiktoken_encoding("gpt2").n_vocab == reference.n_vocab == 50257


def _generic(template):  # type: ignore[no-untyped-def]
    import dataclasses

    return dataclasses.replace(template, verbatim=False)  # the same template, framed by rendering every prefix


SHAPE = st.lists(st.builds(lambda role, empty, train: Message(role=role, content="" if empty else "x y", train=train),
                           st.sampled_from(["system", "user", "assistant", "tool"]), st.booleans(), st.sampled_from([None, True, False])),
                 min_size=1, max_size=9)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(SHAPE, min_size=1, max_size=4))
def test_a_verbatim_templates_frames_grow_by_one_message_as_rendering_every_prefix_would(shapes: list[list[Message]]) -> None:
    """The layouts built by growing each prefix by its new message's render equal those built by
    rendering every prefix, for shapes met in any order (a longer one built on a shorter's frame)."""
    tok = get_tokenizer("gpt2-chatml")
    template = get_template("chatml", tok.template_tokens)
    fast, slow = Layouts(template, tok), Layouts(_generic(template), tok)
    for messages in shapes:
        conv = Conversation(messages=messages)
        a, b = fast.get(conv), slow.get(conv)
        assert (a.runs, a.missing_end, a.left_out, a.full, a.starts) == (b.runs, b.missing_end, b.left_out, b.full, b.starts)


def test_chitchat_tokenizes_the_same_both_ways(chitchat_path) -> None:  # type: ignore[no-untyped-def]
    """Real conversations (chitchat's, up to 564 messages) through the whole encoder, both ways."""
    from chatloom.sources import Reader, get_source
    from chatloom.tokens.encode import Encoder

    source = get_source("chitchat")
    convs = [c for c in source.read(chitchat_path, Reader(str(chitchat_path))) if any(m.role == "assistant" for m in c.messages)][:1500]
    tok = get_tokenizer("gpt2-chatml")
    template = get_template("chatml", tok.template_tokens)
    fast = Encoder(tok, template).encode_arrays(convs)
    slow = Encoder(tok, _generic(template)).encode_arrays(convs)
    assert fast.tokens.tobytes() == slow.tokens.tobytes() and fast.loss.tobytes() == slow.loss.tobytes()
    assert fast.lengths.tolist() == slow.lengths.tolist() and fast.kept == slow.kept
