"""Chat templates: the text is transformers' apply_chat_template's, for every built-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatloom.tokens.chat_templates import BUILTINS, TemplateError, folder_template, get_template
from chatloom.tokens.tokenizer import get_tokenizer, write_hf_gpt2_folder

SYSTEM = {"role": "system", "content": "Be brief."}
CHATS = [
    [{"role": "user", "content": " hi there "}, {"role": "assistant", "content": "hello!\n"},
     {"role": "user", "content": "how?"}, {"role": "assistant", "content": "fine"}],
    [{"role": "user", "content": "Ünïcödé ✓ and {{ braces }} {% raw %}"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}],
]
NO_SYSTEM = {"mistral", "gemma"}


@pytest.mark.parametrize("name", list(BUILTINS))
def test_builtin_renders_as_transformers_does(name: str, folders: dict[str, Path]) -> None:
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(folders[name]))
    ours = get_template(name, get_tokenizer(str(folders[name])).template_tokens)
    from_folder = get_template(str(folders[name]), get_tokenizer(str(folders[name])).template_tokens)
    for chat in CHATS:
        chats = [chat] if name in NO_SYSTEM else [chat, [SYSTEM, *chat]]
        for messages in chats:
            for gen in (False, True):
                expected = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
                assert ours.render(messages, add_generation_prompt=gen) == expected
                assert from_folder.render(messages, add_generation_prompt=gen) == expected


def test_template_refusals_are_errors(folders: dict[str, Path]) -> None:
    gemma = get_template("gemma", get_tokenizer(str(folders["gemma"])).template_tokens)
    with pytest.raises(TemplateError, match="System role not supported"):
        gemma.render([SYSTEM, {"role": "user", "content": "x"}])
    mistral = get_template("mistral", {"bos_token": "<s>", "eos_token": "</s>"})
    with pytest.raises(TemplateError, match="alternate"):
        mistral.render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])


def test_jinja_file_and_folder_template(tmp_path: Path) -> None:
    jinja = tmp_path / "mine.jinja"
    jinja.write_text("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}")
    t = get_template(str(jinja))
    assert t.render([{"role": "user", "content": "hi"}], add_generation_prompt=True) == "[user] hi\n[assistant] "
    folder = write_hf_gpt2_folder(tmp_path / "tok", chat_template=jinja.read_text())
    assert folder_template(folder) == jinja.read_text()
    (tmp_path / "bare").mkdir()
    with pytest.raises(Exception, match="no chat_template"):
        get_template(str(tmp_path / "bare"))
    with pytest.raises(Exception, match="unknown template"):
        get_template("no-such-template")


@pytest.mark.parametrize("terms", [300, 3000])
def test_a_template_too_deep_for_pythons_compiler_is_a_usage_error(terms: int) -> None:
    """A 300-term sum compiles to Python that its parser refuses (SyntaxError: too many nested
    parentheses), a 3,000-term one runs out of recursion: one line either way, not a traceback."""
    from chatloom.errors import UsageError
    from chatloom.tokens.chat_templates import ChatTemplate

    source = "{% for m in messages %}{{ " + " + ".join(["m.content"] * terms) + " }}{% endfor %}"
    with pytest.raises(UsageError, match="deep.jinja: template nested too deeply to compile"):
        ChatTemplate("deep.jinja", source, {})


def test_template_syntax_error_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jinja"
    bad.write_text("ok\n{% for m in messages %}\n{{ m.content }\n")
    with pytest.raises(Exception, match=r"bad.jinja:\d+: template syntax error"):
        get_template(str(bad))


def test_the_sandbox_holds() -> None:
    from chatloom.tokens.chat_templates import ChatTemplate

    evil = ChatTemplate("evil", "{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateError, match="unsafe|access"):  # jinja's sandbox refuses dunder access
        evil.render([{"role": "user", "content": "x"}])


def test_the_sandbox_holds_after_it_kept_a_verdict() -> None:
    """The sandbox keeps its verdict on an attribute per (type, name) (a layout's renders ask
    hundreds of thousands of times); a proxy, which says it is the class it stands for, is
    judged each time, as jinja2 does: a verdict for a proxy to one object is no verdict for a
    proxy to a dict (a review's case)."""
    import weakref

    from jinja2.exceptions import SecurityError

    from chatloom.tokens.chat_templates import _environment

    class Box:
        def update(self, *args: object) -> None:
            pass

    class D(dict):
        pass

    env = _environment()
    box, d = Box(), D(a=1)
    assert "bound method" in env.from_string("{{ x.update }}").render(x=weakref.proxy(box))
    with pytest.raises(SecurityError):
        env.from_string("{% set _ = x.update(b=2) %}").render(x=weakref.proxy(d))
    assert dict(d) == {"a": 1}
    for _ in range(2):  # kept or not, a dict's own update stays refused
        with pytest.raises(SecurityError):
            env.from_string("{% set _ = x.update(b=2) %}").render(x={"a": 1})
    assert env.from_string("{% for m in xs %}{{ loop.first }}{{ m.role }}{% endfor %}").render(xs=[{"role": "u"}] * 2) == "TrueuFalseu"
