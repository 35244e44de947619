"""What a person looks at rather than reads: HTML pages and PNG charts.

- ``pages.py``: the HTML pages — ``render_build_report`` (a build's ``report.html``) and
  ``render_inspect`` (``chatloom inspect --html``), ``render_train_report`` (a training run's
  ``report.html``), one function a page, each returning the page.
- ``templates/``: the Jinja templates they render. ``base.html`` is the one layout (head, styles,
  body) that every page extends — the web studio's pages too; a partial is named ``_*.html``.
  Autoescape is on, so chat text (untrusted) reaches a page only escaped.
- ``plots.py``: charts as PNG through matplotlib (``stats --plot``, the build report's histograms, a run's ``loss.png``).

This package is given its data: it may import ``tokens/`` and ``formats/``, never ``pipeline/``
(the pipeline calls reports, not the reverse).
"""

from __future__ import annotations

from .pages import environment, render_build_report, render_inspect, render_train_report
from .plots import histograms_png, loss_png, token_histogram

__all__ = ["environment", "histograms_png", "loss_png", "render_build_report", "render_inspect", "render_train_report",
           "token_histogram"]
