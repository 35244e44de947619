"""A *plain* template writes each content and name as they are (``chat_templates/syntax.py`` reads that
from its syntax): tokenize then takes a shape's layout for every conversation of the shape without
rendering each one to check it. Held here to what rendering finds: for every plain template among
the real ones and the built-ins, a layout's text is the render, over chats whose contents and names
hold what templates trip on; and each way of changing a content that the reader refuses does change
it (taken as plain, the layout would be wrong)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatloom.errors import UsageError
from chatloom.model import Conversation, Message
from chatloom.tokens import Encoder
from chatloom.tokens.chat_templates import BUILTINS, ChatTemplate, TemplateError, builtin_source, get_template, message_dicts
from chatloom.tokens.chat_templates.syntax import plain_contents
from chatloom.tokens.layout import Layouts
from chatloom.tokens.tokenizer import get_tokenizer
from tests.tokens import laid_out
from tests.tokens import real_templates as rt

PLAIN_REAL = {"olmo-2", "phi-3.5", "phi-4", "qwen2.5", "smollm2", "zephyr"}
PLAIN_BUILTIN = {"chatml", "mistral", "phi-3", "alpaca", "vicuna", "metharme"}

TRICKY = st.sampled_from(["", " ", "\n", "  x  ", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "</s>", "\ue000", "\ue0010c\ue001",
                          "\u2002\u2003", "{{ x }}", "{% if %}", "<think>\nhm\n</think>\n\n", "é ü 漢字", "a\r\nb", "[INST]"])  # fmt: skip
CONTENT = st.lists(st.one_of(TRICKY, st.text(max_size=8)), max_size=4).map("".join)
NAME = st.one_of(st.none(), st.sampled_from(["", "ann", " bo b ", "<|im_end|>"]))


def test_the_real_templates_that_are_plain() -> None:
    """Which are plain, and why the others are not (each refusal is a real change of a content:
    ``| trim``, ``| tojson``, a content set aside in a variable, split, or looped over)."""
    assert {name for name in rt.NAMES if plain_contents(rt.source(name))} == PLAIN_REAL
    assert {name for name in BUILTINS if plain_contents(builtin_source(name))} == PLAIN_BUILTIN
    assert get_template("chatml").plain and not get_template("llama-3").plain  # trims each content


@st.composite
def chats(draw: Any) -> tuple[list[Message], bool]:
    msgs: list[Message] = []
    if draw(st.booleans()):
        msgs.append(Message(role="system", content=draw(CONTENT)))
    tools = False
    for i in range(draw(st.integers(1, 4))):
        msgs.append(Message(role="user", content=draw(CONTENT), name=draw(NAME)))
        if draw(st.integers(0, 4)) == 0:
            tools = True
            call = {"id": f"call{i}abcde", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
            msgs.append(Message(role="assistant", content=draw(CONTENT), tool_calls=[call]))
            msgs.append(Message(role="tool", content=draw(CONTENT), tool_call_id=f"call{i}abcde"))
        msgs.append(Message(role="assistant", content=draw(CONTENT), name=draw(NAME)))
    return msgs, tools


def _loaded(root: Path, real: set[str], builtin: set[str]) -> dict[str, tuple[Any, Any]]:
    """Each template with its tokenizer: a real one in a folder of its own, a built-in with gpt2-chatml."""
    out = {}
    for name in sorted(real):
        folder = str(rt.write_folder(root, name))
        tok = get_tokenizer(folder)
        out[name] = (get_template(folder, tok.template_tokens), tok)
    tok = get_tokenizer("gpt2-chatml")
    for name in sorted(builtin):
        out[name] = (get_template(name, tok.template_tokens), tok)
    return out


@pytest.fixture(scope="module")
def plain_templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Any]]:
    return _loaded(tmp_path_factory.mktemp("plain"), PLAIN_REAL, PLAIN_BUILTIN)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(PLAIN_REAL | PLAIN_BUILTIN)), chats(), chats())
def test_a_plain_templates_layout_text_is_its_render(plain_templates: dict[str, tuple[Any, Any]], name: str,
                                                     first: tuple[list[Message], bool], chat: tuple[list[Message], bool]) -> None:
    """The layout a shape was laid out with (here from another chat of the same shape, met first)
    gives each conversation of the shape the template's own render, whatever its contents."""
    template, tok = plain_templates[name]
    assert template.plain
    msgs, tools = chat
    other = [Message(role=m.role, content="z" if m.content else "", name=None if m.name is None else "q", tool_calls=m.tool_calls,
                     tool_call_id=m.tool_call_id) for m in msgs]  # fmt: skip
    conv = Conversation(messages=msgs, tools=[rt.WEATHER] if tools else None)
    layouts = Layouts(template, tok)
    try:
        layouts.get(Conversation(messages=other, tools=conv.tools))
        layout = layouts.get(conv)
    except TemplateError:
        return
    assert layout.text(conv.messages) == template.render(message_dicts(conv), conv.tools)


# Each changes what a content (or name) writes; the reader must refuse it. A conversation shows
# that the change is real: the layout of its shape, taken as plain, is not its render. (A ``trim``
# is one the layout follows, its sentinels padded with spaces: no example here.)
CHANGED = {
    "a filter": ("{{ m.content | replace('a', 'b') }}", "a"),
    "a filter on what it is joined to": ("{{ ('[' ~ m.content) | replace('a', 'b') }}", "a"),
    "a filter on a sum": ("{{ ('[' + m.content) | upper }}", "low"),
    "its length": ("{{ m.content | length }}", "four"),
    "a method": ("{{ m.content.split('x')[0] }}", "axb"),
    "a slice": ("{{ m.content[1:] }}", "abc"),
    "a test of what it holds": ("{% if '<think>' in m.content %}T{% endif %}{{ m.content }}", "<think>"),
    "a comparison": ("{{ m.content if m.content != 'x' else 'y' }}", "x"),
    "a variable": ("{% set c = m.content %}{{ c[1:] }}", "abc"),
    "the whole message": ("{{ m | tojson }}", "quote\" here"),
    "a list's attribute": ("{{ messages | map(attribute='content') | join('|') | upper }}", "low"),
    "a dict's items": ("{% for k, v in m.items() %}{{ v | upper }}{% endfor %}", "low"),
    "a dict's get": ("{{ m.get('content') | upper }}", "low"),
    "a key held in a variable": ("{% for key in ['content'] %}{{ m[key] | upper }}{% endfor %}", "low"),
    "a macro": ("{% macro r(x) %}{{ x.content | upper }}{% endmacro %}{{ r(m) }}", "low"),
    "a filter block": ("{% filter upper %}{{ m.content }}{% endfilter %}", "low"),
    "a block assignment": ("{% set out %}{{ m.content }}{% endset %}{{ out | replace('a', 'b') }}", "a"),
    "a name's emptiness": ("{% if m.name %}[{{ m.name }}]{% endif %}{{ m.content }}", "x"),
}


@pytest.mark.parametrize("how", list(CHANGED))
def test_each_change_of_a_content_is_refused_and_is_one(how: str) -> None:
    body, content = CHANGED[how]
    source = "{% for m in messages %}" + body + "<|im_end|>{% endfor %}"
    assert not plain_contents(source), how
    tok = get_tokenizer("gpt2-chatml")
    template = ChatTemplate(how, source, dict(tok.template_tokens))
    template.__dict__["plain"] = True  # taken as plain, against the reader
    name = "" if how == "a name's emptiness" else None
    conv = Conversation(messages=[Message(role="user", content=content, name=name), Message(role="assistant", content=content)])
    layout = Layouts(template, tok).get(conv)
    assert layout.text(conv.messages) != template.render(message_dicts(conv), None), how


L, E = "{% for m in messages %}", "<|im_end|>{% endfor %}"
# found by a review of the reader: whole templates, each laid out on one chat and checked on another
# of the same shape, where taking the template as plain gives text that is not its render
WHOLE = {
    "a key built at render time": (L + "{{ m['con' ~ 'tent'] | length }}{{ m.content }}" + E, ["abcdef", "b"], ["a", "b"]),
    "a key built at render time, tested": (L + "{% if 'x' in m['con' ~ 'tent'] %}X{% endif %}{{ m.content }}" + E, ["a", "b"], ["x", "b"]),
    "a name's emptiness at a built key": ("{% set k = 'na' ~ 'me' %}" + L + "{% if m[k] %}N{% endif %}{{ m.content }}" + E,
                                          [("a", "ann"), "b"], [("a", ""), "b"]),
    "a built key in the head": ("{% if messages[0]['con' ~ 'tent'] | length > 3 %}LONG{% endif %}" + L + "{{ m.content }}" + E,
                                ["abcdef", "b"], ["a", "b"]),
    "a dotted attribute": (L + "{{ messages | selectattr('content.0', 'equalto', 'a') | list | length }}{{ m.content }}" + E,
                           ["z", "z"], ["a", "a"]),
    "autoescape": (L + "{% autoescape true %}{{ m.content }}{% endautoescape %}" + E, ["a", "b"], ["<b>", "&"]),
    "a block written again": ("{% block b %}" + L + "{{ m.content }}{% endfor %}{% endblock %}{{ self.b() | upper }}", ["a", "b"], ["a", "b"]),
    # and by a second review
    "a dotted path past its first part": (L + "{{ [messages] | selectattr('0.content', 'equalto', 'a') | list | length }}{{ m.content }}" + E,
                                          ["z", "z"], ["a", "a"]),
    "a name at a dotted path": (L + "{{ [messages] | rejectattr('1.name', 'equalto', 'x') | list | length }}{{ m.content }}" + E,
                                ["a", ("b", "y")], ["a", ("b", "x")]),
    "a chained in: the message compared": (L + "{% if 'role' in m in messages[:1] %}SAME{% endif %}{{ m.content }}" + E,
                                           ["a", "b"], ["a", "a"], "user"),
}  # fmt: skip


def _chat(contents: list[Any], role: str | None = None) -> Conversation:
    return Conversation(messages=[Message(role=role or ["user", "assistant"][i % 2], content=c if isinstance(c, str) else c[0],
                                          name=None if isinstance(c, str) else c[1]) for i, c in enumerate(contents)])  # fmt: skip


@pytest.mark.parametrize("how", list(WHOLE))
def test_each_whole_template_that_changes_a_content_is_refused_and_does(how: str) -> None:
    source, first, checked, *role = WHOLE[how]
    assert not plain_contents(source), how
    tok = get_tokenizer("gpt2-chatml")
    template = ChatTemplate(how, source, dict(tok.template_tokens))
    template.__dict__["plain"] = True  # taken as plain, against the reader
    layouts = Layouts(template, tok)
    layouts.get(_chat(first, *role))
    conv = _chat(checked, *role)
    assert layouts.get(conv).text(conv.messages) != template.render(message_dicts(conv), None), how


def test_what_renders_differently_each_time_is_not_plain_and_a_template_holding_sentinels_is_an_error() -> None:
    """A layout is cached: a template that renders the time, or draws at random, is checked per
    conversation. One whose own text holds the characters that mark a content cannot be laid out."""
    for body in ["{{ strftime_now('%f') }}", "{{ [1, 2, 3] | random }}", "{{ lipsum(1) }}", "{% set c = cycler('a') %}"]:
        assert not plain_contents(L + body + "{{ m.content }}" + E), body
    tok = get_tokenizer("gpt2-chatml")
    template = ChatTemplate("marked", L + "[\ue0001c\ue001]{{ m.content }}" + E, dict(tok.template_tokens))
    assert not template.plain and not template.local
    with pytest.raises(UsageError, match="template marked holds the characters U.E000 or U.E001"):
        Encoder(tok, template)


def test_tool_calls_and_tools_that_hold_a_sentinels_characters_are_checked_and_nan_is_not_none() -> None:
    """What a shape renders as it is (a tool call's arguments, a tool) could hold the characters of
    a content's sentinel: its conversations are then checked against their renders, plain template
    or not. And a tool call with NaN is not of the shape of one with None (JSON text writes both
    as null)."""
    source = "{{ tools | tojson }}" + L + "{{ m.content }}{% if m.tool_calls %}{{ m.tool_calls | tojson }}{% endif %}" + E
    tok = get_tokenizer("gpt2-chatml")
    template = ChatTemplate("tools", source, dict(tok.template_tokens))
    assert template.plain
    from chatloom.tokens.frames import content_sentinel

    def chat(text: str, value: Any) -> Conversation:
        call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": value}}}
        return Conversation(messages=[Message(role="user", content=text), Message(role="assistant", content="", tool_calls=[call])],
                            tools=[{"type": "function", "function": {"name": "f", "description": f"d{content_sentinel(0)}"}}])  # fmt: skip
    for first, then in [(chat("a", "\ue0000n\ue001"), chat("hello", "\ue0000n\ue001")), (chat("a", None), chat("a", float("nan")))]:
        layouts = Layouts(template, tok)
        layouts.get(first)
        for conv in (first, then):
            assert layouts.get(conv).text(conv.messages) == template.render(message_dicts(conv), conv.tools)


def test_what_a_plain_template_may_do_with_a_content() -> None:
    """Written as it is (alone, joined, chosen by an inline if), tested for its type, or a
    content's truth in an if; the message itself read by key, iterated, narrowed, measured."""
    ok = [
        "{% for m in messages %}{{ '<' + m['role'] + '>' + m['content'] ~ '\\n' }}{% endfor %}",
        "{% for m in messages %}{% if m.content %}{{ m.content if m.content is string else '' }}{% endif %}{% endfor %}",
        "{% for m in messages if m.content %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}",
        "{% set rest = messages[1:] %}{% for m in rest | selectattr('role', 'equalto', 'user') %}{{ m.content }}{% endfor %}",
        "{% for m in messages %}{% if loop.first and messages[0].role == 'system' %}S{% endif %}{{ m.name is defined }}"
        "{{ messages | length }}{% if 'tool_calls' in m %}{% for c in m.tool_calls %}{{ c.function | tojson }}{% endfor %}{% endif %}"
        "{{ m.content }}{% endfor %}",
    ]
    for source in ok:
        assert plain_contents(source), source
    assert not plain_contents("{% for m in messages %}{{ m.content + 1 }}")  # does not parse: not plain


def test_tokenize_renders_a_plain_templates_shape_not_each_conversation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """300 conversations of one shape: a plain template (SmolLM2's) is rendered for the shape's
    layout only; one that trims (Llama 3.1's) is rendered again for each conversation."""
    renders: list[str] = []
    real = ChatTemplate.render

    def counted(self: ChatTemplate, *args: Any, **kwargs: Any) -> str:
        renders.append(self.name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ChatTemplate, "render", counted)
    convs = [Conversation(id=f"c{i}", messages=[Message(role="user", content=f"q{i} "), Message(role="assistant", content=f" a{i}")])
             for i in range(300)]  # fmt: skip
    counts = {}
    for name in ("smollm2", "llama-3.1"):
        folder = str(rt.write_folder(tmp_path, name))
        tok = get_tokenizer(folder)
        renders.clear()
        Encoder(tok, folder).encode_batch(convs)
        counts[name] = len(renders)
    assert counts["smollm2"] < 10 and counts["llama-3.1"] >= 300, counts


# -- message by message ------------------------------------------------------------------------

LOCAL_REAL = {"phi-4", "smollm2"}
LOCAL_BUILTIN = {"chatml", "alpaca", "metharme"}
SHAPES = st.lists(st.builds(lambda role, empty, train, named: Message(role=role, content="" if empty else "x y", train=train,
                                                                      name="n" if named else None),
                            st.sampled_from(["system", "user", "assistant", "tool"]), st.booleans(), st.sampled_from([None, True, False]),
                            st.booleans()),
                  min_size=1, max_size=9)  # fmt: skip


def _rendering_every_prefix(template: ChatTemplate) -> ChatTemplate:
    import dataclasses

    generic = dataclasses.replace(template, verbatim=False)
    generic.__dict__["local"] = False
    return generic


def test_the_templates_that_render_message_by_message() -> None:
    from chatloom.tokens.chat_templates.syntax import message_by_message

    assert {name for name in rt.NAMES if message_by_message(rt.source(name))} == LOCAL_REAL
    assert {name for name in BUILTINS if message_by_message(builtin_source(name))} == LOCAL_BUILTIN


@pytest.fixture(scope="module")
def local_templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Any]]:
    return _loaded(tmp_path_factory.mktemp("local"), LOCAL_REAL, LOCAL_BUILTIN)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(LOCAL_REAL | LOCAL_BUILTIN)), st.lists(SHAPES, min_size=1, max_size=4), st.booleans())
def test_a_message_by_message_templates_layouts_are_those_of_rendering_every_prefix(
    local_templates: dict[str, tuple[Any, Any]], name: str, shapes: list[list[Message]], tools: bool
) -> None:
    """Each prefix's frame grown by what the new message adds to the first, for shapes met in
    any order (a longer one built on a shorter's frame): the layouts (and the refusals) of
    rendering every prefix."""
    template, tok = local_templates[name]
    assert template.local or template.verbatim
    fast, slow = Layouts(template, tok), Layouts(_rendering_every_prefix(template), tok)
    for messages in shapes:
        conv = Conversation(messages=messages, tools=[rt.WEATHER] if tools else None)
        assert laid_out(fast, conv) == laid_out(slow, conv), name


# Each makes a message's render depend on more than itself, the first message and loop.first; the
# reader must refuse it. A chat shows that the identity the layouts would rely on fails.
NOT_LOCAL = {
    "loop.last": "{% for m in messages %}{{ m.content }}{% if not loop.last %}|{% endif %}<|im_end|>{% endfor %}",
    "loop.index": "{% for m in messages %}{{ loop.index }}:{{ m.content }}<|im_end|>{% endfor %}",
    "the number of messages": "{% for m in messages %}{{ messages | length }}{{ m.content }}<|im_end|>{% endfor %}",
    "the message before": "{% for m in messages %}{% if not loop.first %}{{ messages[loop.index0 - 1].role }}{% endif %}"
                          "{{ m.content }}<|im_end|>{% endfor %}",
    "a count kept across messages": "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{{ ns.n }}"
                                    "{{ m.content }}<|im_end|>{% endfor %}",
    "the last message, before": "{{ messages[-1].role }}{% for m in messages %}{{ m.content }}<|im_end|>{% endfor %}",
    "text after the loop": "{% for m in messages %}{{ m.content }}<|im_end|>{% endfor %}[end]",
    "the chat after the loop": "{% for m in messages %}{{ m.content }}<|im_end|>{% endfor %}"
                               "{% if add_generation_prompt %}{{ messages | length }}{% endif %}",
    # found by a review of the reader
    "a cycler": "{% set c = cycler('A', 'B') %}{% for m in messages %}{{ c.next() }}{{ m.content }}<|im_end|>{% endfor %}",
    "a joiner": "{% set j = joiner('|') %}{% for m in messages %}{% if m.role == 'user' %}{{ j() }}{% endif %}{{ m.content }}"
                "<|im_end|>{% endfor %}",
    "a break": "{% for m in messages %}{{ m.content }}<|im_end|>{% if m.role == 'assistant' %}{% break %}{% endif %}{% endfor %}",
    "loop in a nested loop's else": "{% for m in messages %}{% for x in [] %}{% else %}{{ loop.index }}{% endfor %}{{ m.content }}"
                                    "<|im_end|>{% endfor %}",
    "loop in a nested loop's filter": "{% for m in messages %}{% for x in [1] if loop.index == 2 %}TWO{% endfor %}{{ m.content }}"
                                      "<|im_end|>{% endfor %}",
    "a joiner behind a stateless name": "{% set namespace = joiner %}{% set range = namespace('|') %}{% for m in messages %}"
                                        "{% if m.role == 'user' %}{{ range() }}{% endif %}{{ m.content }}<|im_end|>{% endfor %}",
}


@pytest.mark.parametrize("how", list(NOT_LOCAL))
def test_each_template_that_is_not_message_by_message_is_refused_and_is_not(how: str) -> None:
    from chatloom.tokens.chat_templates.syntax import message_by_message

    source = NOT_LOCAL[how]
    assert not message_by_message(source), how
    template = ChatTemplate(how, source, {})

    def fails(roles: list[str]) -> bool:
        m = [{"role": role, "content": text} for role, text in zip(roles, "abcd")]

        def grown(j: int, gen: bool = False) -> str:  # render(m[:j]) as a message-by-message template would give it
            head = template.render(m[:1])
            added = template.render([m[0], m[j - 1]])[len(head):]
            prompt = template.render(m[:1], add_generation_prompt=True)[len(head):] if gen else ""
            return template.render(m[: j - 1]) + added + prompt

        return any(grown(j, gen) != template.render(m[:j], add_generation_prompt=gen) for j in (2, 3, 4) for gen in (False, True))

    assert fails(["user", "assistant", "user", "assistant"]) or fails(["system", "user", "user", "assistant"]), how


def test_a_long_chats_prefixes_are_grown_message_by_message(local_templates: dict[str, tuple[Any, Any]]) -> None:
    """SmolLM2's template (its default system prompt on the first message only): a 40-message
    chat's prefixes are grown by two short renders each (no prefix is rendered whole), and the
    layout is the one of rendering every prefix."""
    template, tok = local_templates["smollm2"]
    msgs = [Message(role="user" if i % 2 == 0 else "assistant", content=f"message {i}") for i in range(40)]
    conv = Conversation(messages=msgs)
    layouts = Layouts(template, tok)
    assert layouts.ends  # (found once, by rendering a 4-message probe)
    longest: list[int] = []
    render = layouts._render

    def spy(messages: Any, *args: Any, **kwargs: Any) -> Any:
        longest.append(len(messages))
        return render(messages, *args, **kwargs)

    layouts._render = spy  # type: ignore[method-assign]
    assert laid_out(layouts, conv) == laid_out(Layouts(_rendering_every_prefix(template), tok), conv)
    assert longest and max(longest) <= 2, sorted(set(longest))
