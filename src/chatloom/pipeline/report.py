"""The build report's token counts: ``counted`` passes conversations through and records each
one's ChatML token count, for ``report.json`` and the histograms of ``report.html`` (which
``chatloom.reports.render_build_report`` renders)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..model import Conversation
from ..parallel import batched


def counted(convs: Iterable[Conversation], tokenizer: str, sink: list[int], batch: int = 512) -> Iterator[Conversation]:
    """Pass ``convs`` through, appending each one's ChatML token count to ``sink`` (in batches)."""
    from ..tokens.tokenizer import get_tokenizer

    tok = get_tokenizer(tokenizer)
    for chunk in batched(convs, batch):
        sink.extend(tok.chatml_counts([[(m.role, m.content) for m in c.messages] for c in chunk]))
        yield from chunk
