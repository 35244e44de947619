"""The HTML pages: chat text is escaped wherever it lands, and the templates are strict."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import pytest
import yaml

from chatloom.model import Conversation, Message
from chatloom.reports import environment, loss_png, render_build_report, render_inspect, render_train_report
from tests.conftest import conv, write_jsonl

BAD = "<script>alert(1)</script> say \"hi\" & 'bye'"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt; say &#34;hi&#34; &amp; &#39;bye&#39;"
TAGS = {"!doctype", "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "b", "br", "small", "code", "img",
        "table", "tr", "th", "td", "details", "summary", "div", "span", "pre"}


def assert_markup_is_ours(page: str) -> None:
    """Every ``<`` opens one of the pages' own tags and every ``&`` starts an entity: no chat
    text got in unescaped."""
    assert "<script" not in page.lower()
    opened = {m.lower() for m in re.findall(r"</?([!a-zA-Z][a-zA-Z0-9]*)", page)}
    assert opened <= TAGS, opened - TAGS
    assert page.count("<") == len(re.findall(r"</?[!a-zA-Z]", page))
    assert not re.search(r"&(?!(?:[a-zA-Z]+|#\d+|#x[0-9a-fA-F]+);)", page)


def _report(**changes: object) -> dict:  # type: ignore[type-arg]
    report = {"inputs": {BAD: 2}, "dropped": 1, "seed": 0,
              "output": {"conversations": 1, "format": "openai", "files": {"data/train.jsonl": 1}},
              "steps": [{"where": "filters[0]", "step": "turns", "seen": 2, "kept": 1, "dropped": {BAD: 1},
                         "stats": {}, "seconds": 0.004}]}
    report.update(changes)
    return report


def test_inspect_page_escapes_chat_text() -> None:
    page = render_inspect([(50257, "<|im_start|>", 0, True), (1, BAD, 1, False), (2, "a\nb", 1, False), (3, "", 0, False)],
                          title=f"x1 · {BAD}")
    assert_markup_is_ours(page)
    assert f"<title>x1 · {ESCAPED}</title>" in page and f"<h1>x1 · {ESCAPED}</h1>" in page
    assert ESCAPED.replace(" ", "&middot;") in page  # spaces show as dots, after escaping
    assert '<span class="t">a&#9166;<br>b</span>' in page  # a newline shows as ⏎ and breaks the line
    assert '<span class="t">&#8203;</span><span class="i">3</span>' in page  # an empty token keeps its place
    assert '<span class="tok special" title="id 50257 · not trained"><span class="t">&lt;|im_start|&gt;</span>' in page
    assert page.startswith("<!doctype html>\n") and page.endswith("</body></html>\n")


def test_inspect_html_from_the_cli_escapes_chat_text(tmp_path: Path, run) -> None:  # type: ignore[no-untyped-def]
    write_jsonl(tmp_path / "chats.jsonl", [conv(BAD, f"fine & {BAD}", id="x1")])
    run("import", str(tmp_path / "chats.jsonl"), "-d", "d.db")
    r = run("inspect", "-d", "d.db", "x1", "--html", str(tmp_path / "t.html"))
    assert r.exit_code == 0, r.stderr
    page = (tmp_path / "t.html").read_text()
    assert_markup_is_ours(page)
    assert "alert" in page and "&amp;" in page and "&#34;" in page


def test_build_report_escapes_rejected_examples() -> None:
    long = Conversation(id=f"c:{BAD}", messages=[Message(role="user", content=BAD * 40)] * 8)
    page = render_build_report(_report(), [10, 20], [10], "gpt2-chatml", {("filters[0]", BAD): [long]})
    assert_markup_is_ours(page)
    assert f"<summary>filters[0] · {ESCAPED} · <code>c:{ESCAPED}</code></summary>" in page
    assert f"<div class='turn user'><span class=role>user</span> {ESCAPED}" in page
    assert page.count("<div class='turn user'>") == 6 and "<div class=more>… 2 more turns</div>" in page
    assert "…</div>" in page  # a turn is cut at 400 characters
    assert f"<td>1 × {ESCAPED}</td><td>—</td><td class=n>0.00 s</td>" in page
    assert f"inputs: {ESCAPED}: 2 ·" in page
    assert "data:image/png;base64,iVBOR" in page  # the histograms, inline


def test_build_report_says_when_nothing_was_dropped() -> None:
    page = render_build_report(_report(dropped=0), [5], [5], "gpt2-chatml", {})
    assert "<h2>Examples of what was dropped</h2>\n<p>nothing was dropped</p>\n<p><small>" in page


def test_build_from_the_cli_escapes_rejected_examples(tmp_path: Path, run) -> None:  # type: ignore[no-untyped-def]
    write_jsonl(tmp_path / "chats.jsonl", [conv(BAD, id="lonely"), conv("hi", "hello", id="ok")])
    recipe = {"output": str(tmp_path / "out"), "inputs": [{"name": "mine", "file": str(tmp_path / "chats.jsonl")}],
              "filters": [{"turns": {"min": 2}}]}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    r = run("build", str(tmp_path / "r.yaml"))
    assert r.exit_code == 0, r.stderr
    page = (tmp_path / "out" / "report.html").read_text()
    assert_markup_is_ours(page)
    assert f"<span class=role>user</span> {ESCAPED}</div>" in page


def test_the_environment_escapes_and_is_strict() -> None:
    env = environment()
    assert env.undefined is jinja2.StrictUndefined
    assert env.from_string("{{ x }}").render(x=BAD) == ESCAPED  # autoescape on, for every template
    names = env.list_templates()
    assert {"base.html", "build_report.html", "inspect.html"} <= set(names)
    for name in names:
        env.get_template(name)  # every template parses
        assert name in ("base.html", "build_report.html", "inspect.html", "train_report.html", "diff.html") or name.startswith("_"), name
    with pytest.raises(jinja2.UndefinedError, match="seed"):
        render_build_report({k: v for k, v in _report().items() if k != "seed"}, [1], [1], "gpt2-chatml", {})
    with pytest.raises(jinja2.UndefinedError, match="title"):
        env.get_template("inspect.html").render(tokens=[])


def test_a_training_report_escapes_the_replies_the_prompts_and_the_config() -> None:
    metrics = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5, "eval_loss": 2.7}]
    png = loss_png(metrics)
    assert png.startswith(b"\x89PNG")
    page = render_train_report(BAD, [(BAD, BAD)], png, [{"prompt": BAD, "reference": BAD, "base": BAD, "tuned": BAD}], BAD)
    assert_markup_is_ours(page)
    assert page.count(ESCAPED) == 9  # the title twice, the figure's label and value, four texts of the sample, the config
