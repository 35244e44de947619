"""The HTML pages, one function a page: ``render_build_report`` and ``render_inspect``.

Every page comes from one Jinja environment over ``templates/`` (``base.html`` is the layout;
partials are ``_*.html``). Autoescape is on: chat text is untrusted and reaches a page only
through ``{{ … }}``, escaped. Undefined names fail (``StrictUndefined``): a template that names
something it was not given is an error, not a silent blank. A page is self-contained — styles
inline, pictures as ``data:`` URLs — so it opens from disk or as an e-mail attachment.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2

from ..model import Conversation
from .plots import histograms_png

InspectToken = tuple[int, str, int, bool]
"""One token of ``inspect``: its id, its text, 1 where the loss counts, whether it is special."""


@functools.cache
def environment() -> jinja2.Environment:
    """The one environment that renders every page (the studio's too): autoescape on, strict."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("chatloom.reports", "templates"),
        autoescape=True,  # every template, .html or not: nothing here is meant to be unescaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["thousands"] = lambda n: f"{n:,}"  # 7,168
    return env


def render(template: str, **context: Any) -> str:
    """Render one template of ``templates/`` with ``context``."""
    return environment().get_template(template).render(**context)


def token_summary(values: Sequence[int]) -> str:
    """``4,018 conversations · 1,234,567 tokens · p50 120 · p95 700 · max 9,000``, or ``—``."""
    if not values:
        return "—"
    import numpy as np

    p50, p95 = np.percentile(values, [50, 95])
    return f"{len(values):,} conversations · {sum(values):,} tokens · p50 {p50:,.0f} · p95 {p95:,.0f} · max {max(values):,}"


def render_build_report(report: Mapping[str, Any], before: Sequence[int], after: Sequence[int], tokenizer: str,
                        examples: Mapping[tuple[str, str], list[Conversation]]) -> str:
    """A build's ``report.html``: counts, token-length histograms of the inputs (``before``) and the
    output (``after``), the steps table and a few dropped conversations by (where, reason).

    :param report: the build's report, as ``report.json`` holds it.
    :param before: tokens per input conversation; ``after``: per output conversation.
    :param tokenizer: the name the counts were made with (the chart's axis says it).
    :param examples: a few dropped conversations for each (step's place, reason).
    """
    png = base64.b64encode(histograms_png(before, after, tokenizer)).decode()
    samples = [(where, reason, conv) for (where, reason), convs in examples.items() for conv in convs]
    return render("build_report.html", report=report, png=png, samples=samples,
                  before=token_summary(before), after=token_summary(after))


def render_diff(a: str, b: str, counts: Mapping[str, int], result: Any, details: Mapping[str, Any]) -> str:
    """``chatloom diff --html``: what was added, removed and changed, turn by turn, words marked."""
    return render("diff.html", a=a, b=b, counts=counts, result=result, details=details)


def render_inspect(tokens: Sequence[InspectToken], title: str) -> str:
    """``chatloom inspect --html``: every token with its id under it, colored by the loss mask."""
    return render("inspect.html", tokens=tokens, title=title)


def render_train_report(title: str, figures: Sequence[tuple[str, str]], loss_png: bytes, samples: Sequence[Mapping[str, str]],
                        config: str) -> str:
    """A training run's ``report.html``: its figures, the loss curves, and held-out prompts answered
    by the base and the tuned model side by side (the chat text is escaped)."""
    return render("train_report.html", title=title, figures=list(figures), loss_png=base64.b64encode(loss_png).decode(),
                  samples=list(samples), config=config)
