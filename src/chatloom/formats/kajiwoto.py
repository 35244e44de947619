"""``kajiwoto``: kajitool's 10-column CSV, no header (``chatloom.sources.kajiwoto`` reads it).

A conversation imported from such a CSV keeps its row in ``meta.kajiwoto``; while its last pair
is unchanged the row is written back as it was, so import → export gives the same bytes. An edited
one keeps its other columns with the new pair. Any other conversation becomes one new row (no ID)
per user → assistant pair, each following up the pair before it (``History``). ``{{user}}`` and
``{{char}}`` become ``%{name}`` and ``%{kajiname}`` again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from ..model import Conversation, Message
from ..sources.kajiwoto import COLUMNS, placeholders
from .base import NO_PAIR, RowsFormat, plain_messages, user_assistant_pairs

NEW_ROW = {"id": "", "asm": "emotion_any", "attachment": "attachment_any", "daytime": "daytime_any", "last_seen": "seen_any",
           "deleted": "false", "history": "EMPTY", "duplicate_ids": "EMPTY"}  # fmt: skip


def kajiwoto_text(text: str) -> str:
    return text.replace("{{char}}", "%{kajiname}").replace("{{user}}", "%{name}")


class KajiwotoFormat(RowsFormat):
    name = "kajiwoto"
    summary = "Kajiwoto dataset CSV as kajitool writes it (10 columns); imported rows come back byte for byte"

    def rows(self, conv: Conversation, dropped: Counter[str]) -> Iterator[list[str]]:
        kept = conv.meta.get("kajiwoto")
        if isinstance(kept, dict) and set(kept) == set(COLUMNS):
            row = {k: str(kept[k]) for k in COLUMNS}
            last = conv.messages[-2:]
            if [(m.role, m.content) for m in last] != [("user", placeholders(row["user_message"])), ("assistant", placeholders(row["message"]))]:
                row |= self._edited(conv, dropped)
            yield [row[k] for k in COLUMNS]
            return
        pairs = user_assistant_pairs(_without_system(conv, dropped), dropped)
        if not pairs:
            dropped[NO_PAIR] += 1
        for i, (user, reply) in enumerate(pairs):
            history = kajiwoto_text(pairs[i - 1][0]) if i else "EMPTY"
            if i and (";" in history or history in ("", "EMPTY")):  # History is a ';'-joined list
                dropped["follow-up links (the earlier message is empty or has a ';')"] += 1
                history = "EMPTY"
            yield [{**NEW_ROW, "user_message": kajiwoto_text(user), "message": kajiwoto_text(reply), "history": history}[k] for k in COLUMNS]

    def _edited(self, conv: Conversation, dropped: Counter[str]) -> dict[str, str]:
        """An imported conversation that was edited since: its last pair, in the row it came from."""
        pairs = user_assistant_pairs(_without_system(conv, dropped), Counter())
        if not pairs:
            return {}
        return {"user_message": kajiwoto_text(pairs[-1][0]), "message": kajiwoto_text(pairs[-1][1])}


def _without_system(conv: Conversation, dropped: Counter[str]) -> list[Message]:
    """The messages a row can hold: no tools, no names, no system messages (all counted)."""
    messages = plain_messages(conv, dropped)
    kept = [m for m in messages if m.role != "system"]
    if len(kept) < len(messages):
        dropped["system messages"] += len(messages) - len(kept)
    return kept
