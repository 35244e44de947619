"""Template conformance: real models' chat templates (tests/tokens/real_templates, sources in its
manifest.yaml) rendered by ``transformers``, conversation by conversation, against chatloom.

For every template × conversation, with and without ``fix``: chatloom's tokens decode to the text
``apply_chat_template`` renders for the whole conversation; the mask, byte by byte, is each
assistant turn's span in that text through its end-of-turn token; the ids are the HF tokenizer's
ids of that text, or differ only where chatloom tokenizes the prompt and the completion apart
(same text, same mask). A conversation the template refuses is refused by chatloom too, with the
template's own message (with ``fix``: the documented repair, or a drop). A message the template
leaves out may be refused ("leaves out"), or with ``fix`` skipped as transformers skips it.

``python -m tests.tokens.real_templates`` prints one line per template: pass, or its first failure.
How the reference is computed: tests/tokens/real_templates/__init__.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chatloom.tokens.chat_templates import TemplateError, get_template, message_dicts
from chatloom.tokens.tokenizer import get_tokenizer
from tests.tokens import real_templates as rt

pytest.importorskip("transformers")


@pytest.fixture(scope="session")
def real_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("real_templates")
    return {name: rt.write_folder(root, name) for name in rt.NAMES}


@pytest.fixture(scope="session")
def hf_tokenizers(real_folders: dict[str, Path]) -> dict[str, rt.HF]:
    return {name: rt.HF(folder) for name, folder in real_folders.items()}


def test_the_templates_are_real_and_enough() -> None:
    assert len(rt.NAMES) >= 15
    for name, spec in rt.MANIFEST.items():
        assert spec["source"] and spec["model"], name
        assert (Path(__file__).parent / "real_templates" / spec["file"]).read_text(encoding="utf-8").strip(), name
        assert set(spec["end"]) <= set(spec["special"]), name


@pytest.mark.parametrize("name", rt.NAMES)
def test_both_load_the_folder_with_its_special_flags(name: str, real_folders: dict[str, Path], hf_tokenizers: dict[str, rt.HF]) -> None:
    spec = rt.MANIFEST[name]
    hf = hf_tokenizers[name].tok
    flags = {t.content: t.special for t in hf.added_tokens_decoder.values()}
    assert {t: flags[t] for t in spec["special"] + spec["not_special"]} == {
        **{t: True for t in spec["special"]}, **{t: False for t in spec["not_special"]}}
    assert (hf.bos_token, hf.eos_token) == (spec["bos"], spec["eos"])
    ours = get_tokenizer(str(real_folders[name]))
    assert set(spec["special"]) <= set(ours.special_tokens)
    assert not set(spec["not_special"]) & set(ours.special_tokens), "tokens the model marks special: false"
    for token in spec["special"]:
        assert ours.special_tokens[token] == hf.convert_tokens_to_ids(token)
    for token in spec["not_special"]:  # an added token all the same: one id, in text too
        assert ours.encode(f"a{token}b")[1:-1] == [hf.convert_tokens_to_ids(token)], token


@pytest.mark.parametrize("name", rt.NAMES)
def test_renders_as_transformers_does(name: str, real_folders: dict[str, Path], hf_tokenizers: dict[str, rt.HF]) -> None:
    """chatloom's Jinja renders each conversation (and each prefix with the generation prompt) to
    transformers' text, or refuses where transformers raises."""
    ours = get_template(str(real_folders[name]), get_tokenizer(str(real_folders[name])).template_tokens)
    hf = hf_tokenizers[name]
    for chat in rt.CHATS:
        dicts = message_dicts(rt.conversation(chat))  # what chatloom renders from its Message objects
        for k, gen in [(len(dicts), False), *((k, True) for k, m in enumerate(dicts) if m["role"] == "assistant")]:
            try:
                expected = hf.render(chat.messages[:k], chat.tools, gen=gen)
            except Exception as e:  # the template refuses: so does chatloom, with its message
                with pytest.raises(TemplateError) as refused:
                    ours.render(dicts[:k], chat.tools or None, add_generation_prompt=gen)
                assert str(e) in str(refused.value), chat.id
                continue
            assert ours.render(dicts[:k], chat.tools or None, add_generation_prompt=gen) == expected, (chat.id, k, gen)


@pytest.mark.parametrize("name", rt.NAMES)
def test_manifest_kinds_render_whole(name: str, hf_tokenizers: dict[str, rt.HF]) -> None:
    """The conversation kinds the manifest says a template supports render with every message."""
    spec = rt.MANIFEST[name]
    supported = {"plain", "empty"} | {kind for kind in ("system", "tools", "reasoning") if spec["supports"][kind]}
    for chat in rt.CHATS:
        needs = {chat.kind} | ({"system"} if any(m["role"] == "system" for m in chat.messages) else set())
        if not needs <= supported:
            continue
        ref = rt.reference(hf_tokenizers[name], spec, chat.messages, chat.tools)
        assert not isinstance(ref, rt.Refused), (chat.id, ref)
        calls = {k for k, m in enumerate(chat.messages) if m.get("tool_calls")} if spec.get("drops_tool_call_content") else set()
        assert set(ref.left_out) <= calls, (chat.id, ref.left_out)


@pytest.mark.parametrize("index", range(len(rt.CHATS)), ids=rt.CHAT_IDS)
@pytest.mark.parametrize("name", rt.NAMES)
def test_ids_and_mask_match_transformers(name: str, index: int, real_folders: dict[str, Path], hf_tokenizers: dict[str, rt.HF]) -> None:
    """Without ``fix`` and with it; each failure is one line: what differs, where."""
    failures = []
    for fix in (False, True):
        try:
            rt.check(name, real_folders[name], hf_tokenizers[name], index, fix)
        except rt.Mismatch as e:
            failures.append(f"{'with fix' if fix else 'without fix'}: {e}")
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
