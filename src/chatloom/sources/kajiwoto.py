"""``kajiwoto``: a Kajiwoto dataset CSV as kajitool writes it.

Ten columns, no header: ``ID, UserMessage, Message, ASM, Attachment, Daytime, LastSeen, Deleted,
History, DuplicateIDs``; lists are joined by ``;`` and an empty list is ``EMPTY``. ``History`` names
the earlier user messages a follow-up continues: each becomes a context pair (that message and
its reply) before the row's own pair. ``%{name}`` (the user) and ``%{kajiname}`` (the character)
become ``{{user}}`` and ``{{char}}``; ``%{a|b}`` variants are kept for the build step to expand.
The whole row is kept in ``meta.kajiwoto`` so the CSV can be written back exactly.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..model import Conversation, Message
from .base import Reader, Source, csv_rows, read_text

COLUMNS = ("id", "user_message", "message", "asm", "attachment", "daytime", "last_seen", "deleted", "history", "duplicate_ids")


def placeholders(text: str) -> str:
    return text.replace("%{kajiname}", "{{char}}").replace("%{name}", "{{user}}")


def split_list(value: str) -> list[str]:
    return [] if value in ("", "EMPTY") else value.split(";")


def conversations(rows: list[tuple[int, list[str]]], bad: Callable[[int, str], None],
                  source: Callable[[int, list[str]], dict[str, Any]], *, keep: bool = False) -> Iterator[Conversation]:
    """One conversation per (locator, row) of the 10 columns: the earlier pairs its History names
    (each that message and the first reply to it among ``rows``), then its own pair; a row whose
    History names a message no row has is ``bad`` (and skipped, unless ``keep``: then it keeps the
    pairs that were found). Kajiwoto's remote builds its rows with this too."""
    replies: dict[str, str] = {}
    for _, row in rows:
        replies.setdefault(row[1], row[2])
    for n, row in rows:
        messages = []
        for earlier in split_list(row[8]):
            if earlier not in replies:
                bad(n, f"History names '{earlier}', which no row of this file has as its user message")
                if keep:
                    continue
                break
            messages += [Message(role="user", content=placeholders(earlier)), Message(role="assistant", content=placeholders(replies[earlier]))]
        else:
            messages += [Message(role="user", content=placeholders(row[1])), Message(role="assistant", content=placeholders(row[2]))]
            yield Conversation(id=f"kajiwoto:{row[0]}" if row[0] else None, messages=messages, source=source(n, row),
                               meta={"kajiwoto": dict(zip(COLUMNS, row))})  # fmt: skip


class KajiwotoSource(Source):
    name = "kajiwoto"
    summary = "Kajiwoto dataset CSV as written by kajitool (10 columns, History as context turns)"
    extensions = (".csv",)

    def detect(self, path: Path, head: bytes) -> bool:
        try:
            first = next(csv.reader(io.StringIO(head.decode("utf-8", errors="ignore").lstrip("\ufeff"), newline="")))  # quoted newlines too
        except (StopIteration, csv.Error, IndexError):
            return False
        return len(first) == 10 and first[7].lower() in ("true", "false") and (first[3].startswith("emotion_") or first[5].startswith("daytime_"))

    def read(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        text, size = read_text(path)
        rows = []
        for n, row in csv_rows(text, path, reader):
            if not row:
                continue
            if len(row) != 10:
                reader.bad(n, f"expected 10 columns (kajitool's layout), got {len(row)}")
                continue
            if row[7].lower() not in ("true", "false"):  # the one column with a type of its own
                reader.bad(n, f"Deleted (column 8): expected true or false, got '{row[7][:40]}'")
                continue
            rows.append((n, row))
        yield from conversations(rows, reader.bad, lambda n, row: {"format": self.name, "file": path.name, "locator": f"line {n}"})
        reader.advance(size)
