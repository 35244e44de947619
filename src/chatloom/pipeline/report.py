"""``report.html``: the build's report for a person — counts, reasons, token-length histograms
before and after, and examples of what each step dropped. One self-contained file (the pictures
are inline); every piece of chat text in it is escaped."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..model import Conversation
from ..parallel import batched


def counted(convs: Iterable[Conversation], tokenizer: str, sink: list[int], batch: int = 512) -> Iterator[Conversation]:
    """Pass ``convs`` through, appending each one's ChatML token count to ``sink`` (in batches)."""
    from ..tokens.tokenizer import get_tokenizer

    tok = get_tokenizer(tokenizer)
    for chunk in batched(convs, batch):
        sink.extend(tok.chatml_counts([[(m.role, m.content) for m in c.messages] for c in chunk]))
        yield from chunk


def histograms_png(before: Sequence[int], after: Sequence[int], tokenizer: str) -> bytes:
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
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _quantiles(values: Sequence[int]) -> str:
    if not values:
        return "—"
    import numpy as np

    p50, p95 = np.percentile(values, [50, 95])
    return f"{len(values):,} conversations · {sum(values):,} tokens · p50 {p50:,.0f} · p95 {p95:,.0f} · max {max(values):,}"


def render_html(report: dict[str, Any], before: Sequence[int], after: Sequence[int], tokenizer: str,
                examples: dict[tuple[str, str], list[Conversation]]) -> str:
    e = html.escape
    rows = []
    for step in report["steps"]:
        dropped = "<br>".join(f"{n:,} × {e(reason)}" for reason, n in step["dropped"].items()) or "—"
        changed = "<br>".join(f"{n:,} × {e(what)}" for what, n in step["stats"].items()) or "—"
        rows.append(f"<tr><td>{e(step['where'])}</td><td><b>{e(step['step'])}</b></td><td class=n>{step['seen']:,}</td>"
                    f"<td class=n>{step['kept']:,}</td><td>{dropped}</td><td>{changed}</td><td class=n>{step['seconds']:.2f} s</td></tr>")
    samples = []
    for (where, reason), convs in examples.items():
        for conv in convs:
            turns = "".join(f"<div class='turn {e(m.role)}'><span class=role>{e(m.role)}</span> {e(m.content[:400])}"
                            f"{'…' if len(m.content) > 400 else ''}</div>" for m in conv.messages[:6])
            more = f"<div class=more>… {len(conv.messages) - 6} more turns</div>" if len(conv.messages) > 6 else ""
            samples.append(f"<details><summary>{e(where)} · {e(reason)} · <code>{e(conv.id or '')}</code></summary>{turns}{more}</details>")
    png = base64.b64encode(histograms_png(before, after, tokenizer)).decode()
    inputs = ", ".join(f"{e(k)}: {v:,}" for k, v in report["inputs"].items())
    files = "<br>".join(f"<code>{e(k)}</code>: {v:,}" for k, v in report["output"]["files"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>chatloom build report</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }}
table {{ border-collapse: collapse; width: 100%; }} td, th {{ border-bottom: 1px solid #ddd; padding: 4px 8px; vertical-align: top; text-align: left; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }} code {{ font-size: 12px; }}
details {{ margin: 4px 0; }} .turn {{ margin: 2px 0 2px 1em; white-space: pre-wrap; }} .role {{ color: #888; font-size: 12px; }}
.assistant .role {{ color: #3a7; }} .more {{ color: #888; margin-left: 1em; }}
</style></head><body>
<h1>Build report</h1>
<p>inputs: {inputs} · output: <b>{report['output']['conversations']:,}</b> conversations ({e(report['output']['format'])}) ·
dropped: {report['dropped']:,} · seed {report['seed']}</p>
<p>{files}</p>
<h2>Tokens per conversation</h2>
<p>inputs: {_quantiles(before)}<br>output: {_quantiles(after)}</p>
<img alt="token-length histograms of the inputs and the output" src="data:image/png;base64,{png}">
<h2>Steps</h2>
<table><tr><th>where</th><th>step</th><th>seen</th><th>kept</th><th>dropped</th><th>changed</th><th>time</th></tr>
{"".join(rows)}</table>
<h2>Examples of what was dropped</h2>
{"".join(samples) or "<p>nothing was dropped</p>"}
<p><small>Every dropped conversation is in rejected.jsonl with its step and reason.</small></p>
</body></html>
"""
