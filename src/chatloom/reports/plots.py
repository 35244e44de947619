"""Charts as PNG, through matplotlib (imported when a chart is drawn: it takes a second).

``token_histogram`` writes ``stats --plot``'s file; ``histograms_png`` returns the bytes that the
build report shows inline, inputs and output on one axis.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

from ..fileio import atomic_write


def token_histogram(counts: Sequence[int], path: str | os.PathLike[str], *, title: str) -> None:
    """A histogram of tokens per conversation, with the median and p95 marked, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    values = np.asarray(counts)
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    if len(values):
        low, high = max(int(values.min()), 1), max(int(values.max()), 2)
        if high / low > 50:  # long tails (real chats have them) read better on a log axis
            bins = np.geomspace(low, high, 60)
            ax.set_xscale("log")
        else:
            bins = min(80, max(10, len(values) // 20))
        ax.hist(np.maximum(values, 1), bins=bins, color="#4C72B0", edgecolor="white", linewidth=0.4)
        for q, style in ((50, "-"), (95, "--")):
            v = np.percentile(values, q)
            ax.axvline(v, color="#C44E52", linestyle=style, linewidth=1.2, label=f"p{q}: {v:,.0f}")
        ax.legend(frameon=False)
    else:
        ax.text(0.5, 0.5, "no conversations", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("tokens per conversation")
    ax.set_ylabel("conversations")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    with atomic_write(path) as fp:
        fig.savefig(fp, format="png")
    plt.close(fig)


def histograms_png(before: Sequence[int], after: Sequence[int], tokenizer: str) -> bytes:
    """Two histograms of tokens per conversation on one axis — the inputs (grey) and the output
    (blue) — as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
    both = np.asarray([*before, *after, 1])
    low, high = max(int(both.min()), 1), max(int(both.max()), 2)
    bins = np.geomspace(low, high, 60) if high / low > 50 else 40
    if high / low > 50:
        ax.set_xscale("log")
    for values, label, color in ((before, "inputs", "#BBBBBB"), (after, "output", "#4C72B0")):
        if len(values):
            ax.hist(np.maximum(np.asarray(values), 1), bins=bins, color=color, alpha=0.8, label=f"{label} ({len(values):,})")
    ax.set_xlabel(f"tokens per conversation ({tokenizer}, ChatML)")
    ax.set_ylabel("conversations")
    return _finished(fig, ax)


def _finished(fig, ax) -> bytes:  # type: ignore[no-untyped-def]
    """The legend and the spines as every chart here has them, then the PNG bytes (the figure closed)."""
    import matplotlib.pyplot as plt

    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def loss_png(metrics: Sequence[dict], path: str | os.PathLike[str] | None = None) -> bytes:
    """Training loss (per logged step) and validation loss (per evaluation) against the step, as
    PNG bytes; written to ``path`` too when given (``loss.png`` of a training run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
    train = [(m["step"], m["loss"]) for m in metrics if m.get("loss") is not None]
    val = [(m["step"], m["eval_loss"]) for m in metrics if m.get("eval_loss") is not None]
    if train:
        ax.plot(*zip(*train), color="#4C72B0", linewidth=1.2, label="train loss")
    if val:
        ax.plot(*zip(*val), color="#C44E52", marker="o", linewidth=1.5, label="validation loss")
    if not train and not val:
        ax.text(0.5, 0.5, "no step logged", ha="center", va="center", transform=ax.transAxes)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("loss (trained tokens)")
    png = _finished(fig, ax)
    if path is not None:
        with atomic_write(path) as fp:
            fp.write(png)
    return png
