"""The dashboard's pieces: the token-length histogram as inline SVG (the p50/p95 marks of
``chatloom stats --plot``; no charting library), and the duplicates the build would drop, found
on demand with the build's own exact and near dedup."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..store import Store


def histogram(counts: Sequence[int], *, limit: int | None = None, bins: int = 40) -> dict[str, Any]:
    """What the template draws: bars (x, y, width, height, range, n) on a 600×200 plot with a log
    x axis, the p50/p95 marks, and how many conversations are over ``limit``."""
    if not counts:
        return {"bars": [], "marks": [], "n": 0, "over": 0, "ticks": []}
    a = np.asarray(counts, dtype=np.int64)
    lo, hi = max(int(a.min()), 1), max(int(a.max()), 2)
    edges = np.unique(np.geomspace(lo, hi + 1, bins + 1).astype(np.int64))
    n, _ = np.histogram(np.clip(a, lo, hi), bins=edges)
    width, height = 600.0, 200.0
    span = math.log(edges[-1]) - math.log(edges[0]) or 1.0

    def x(v: float) -> float:
        return round((math.log(max(v, edges[0])) - math.log(edges[0])) / span * width, 1)

    top = max(int(n.max()), 1)
    bars = [{"x": x(edges[i]), "w": max(x(edges[i + 1]) - x(edges[i]) - 1, 1), "h": round(int(c) / top * height, 1),
             "y": round(height - int(c) / top * height, 1), "n": int(c), "range": f"{edges[i]:,}–{edges[i + 1] - 1:,}"}
            for i, c in enumerate(n)]  # fmt: skip
    p50, p95 = (int(v) for v in np.percentile(a, [50, 95]))
    marks = [{"x": x(p50), "label": f"p50 {p50:,}"}, {"x": x(p95), "label": f"p95 {p95:,}"}]
    if limit:
        marks.append({"x": x(limit), "label": f"limit {limit:,}"})
    ticks = [{"x": x(v), "label": f"{v:,}"} for v in (10**k for k in range(0, 8)) if edges[0] <= v <= edges[-1]]
    return {"bars": bars, "marks": marks, "n": len(a), "over": int((a > limit).sum()) if limit else 0, "ticks": ticks,
            "p50": p50, "p95": p95, "max": int(a.max())}  # fmt: skip


def find_duplicates(store: Store, task: Any, *, threshold: float = 0.8, shown: int = 200) -> dict[str, Any]:
    """Exact duplicates (same normalized turns, as ``exact_dedup``) and near ones among the rest
    (MinHash + LSH, as ``near_dedup``): each group's ids, the first one kept as the build keeps it."""
    from ..pipeline.filters import minhash
    from ..pipeline.filters.dedup import conversation_text, normalize

    task.total = store.count()
    ids: list[str] = []
    texts: list[str] = []
    exact: dict[bytes, list[str]] = {}
    for i, conv in enumerate(store.iter_conversations()):
        key = hashlib.blake2b("\x00".join(f"{m.role}\x01{normalize(m.content)}" for m in conv.messages).encode(), digest_size=16).digest()
        exact.setdefault(key, []).append(conv.id or "")
        if len(exact[key]) == 1:  # an exact copy is not counted again as a near one (the build runs exact first)
            ids.append(conv.id or "")
            texts.append(conversation_text(conv))
        task.done = i + 1
    exact_groups = [g for g in exact.values() if len(g) > 1]
    keepers = minhash.near_duplicates(texts, threshold=threshold, ngram=5, permutations=128, seed=0, transitive=False)
    near: dict[int, list[str]] = {}
    for i, k in enumerate(keepers):
        if k >= 0:
            near.setdefault(int(k), [ids[int(k)]]).append(ids[i])
    return {"exact": exact_groups[:shown], "exact_groups": len(exact_groups), "exact_extra": sum(len(g) - 1 for g in exact_groups),
            "near": list(near.values())[:shown], "near_groups": len(near), "near_extra": sum(len(g) - 1 for g in near.values()),
            "threshold": threshold}  # fmt: skip
