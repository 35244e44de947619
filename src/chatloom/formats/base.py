"""Export formats: a Format writes conversations to a binary file (or, ``folder = True``, a folder).

Each format is one small class. A format that cannot hold something counts what it dropped in
the ``WriteReport`` (reason → count) rather than losing it silently. ``llamafactory`` and
``axolotl`` say how those trainers read the export as is (``chatloom.formats.snippets``).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

import orjson

from ..model import Conversation, Message


@dataclass
class WriteReport:
    written: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


class Format:
    name: ClassVar[str]
    summary: ClassVar[str] = ""
    extension: ClassVar[str] = ".jsonl"
    #: writes a folder (``write_folder``) instead of a file (``write``)
    folder: ClassVar[bool] = False
    #: the option that ``-f NAME:VALUE`` sets (``template:chatml`` sets ``template``)
    argument: ClassVar[str | None] = None
    #: LLaMA-Factory's dataset_info.json entry, less ``file_name``; None: it cannot read this format
    llamafactory: ClassVar[dict[str, Any] | None] = None
    #: axolotl's ``datasets:`` entry, less ``path`` and ``ds_type``; None: it cannot read this format
    axolotl: ClassVar[dict[str, Any] | None] = None

    def __init__(self, **options: Any):
        self.options = options

    @property
    def label(self) -> str:
        """The name as ``-f`` takes it (``template:chatml``)."""
        return f"{self.name}:{self.options[self.argument]}" if self.argument and self.options.get(self.argument) else self.name

    def write(self, convs: Iterable[Conversation], fp: IO[bytes]) -> WriteReport:
        raise NotImplementedError

    def write_folder(self, parts: dict[str, Iterable[Conversation]], folder: Path) -> dict[str, WriteReport]:
        """Folder formats: write ``parts`` (``{"data": …}``, or ``{"train": …, "val": …}`` for a
        split) into ``folder``, which the caller creates and later renames into place."""
        raise NotImplementedError

    def part_path(self, folder: Path, part: str) -> Path:
        """Folder formats: where ``write_folder`` put a part."""
        return folder if part == "data" else folder / part


class JsonlFormat(Format):
    """One JSON object a line; subclasses turn a conversation into its record (or None: skipped)."""

    def write(self, convs: Iterable[Conversation], fp: IO[bytes]) -> WriteReport:
        report = WriteReport()
        for conv in convs:
            record = self.record(conv, report.dropped)
            if record is None:
                continue
            fp.write(orjson.dumps(record) + b"\n")
            report.written += 1
        return report

    def record(self, conv: Conversation, dropped: Counter[str]) -> dict[str, Any] | None:
        raise NotImplementedError


class RowsFormat(Format):
    """A CSV file (UTF-8, ``\n`` line ends, quoted where needed); subclasses turn a conversation
    into its rows (none: skipped)."""

    extension = ".csv"
    header: ClassVar[tuple[str, ...] | None] = None

    def write(self, convs: Iterable[Conversation], fp: IO[bytes]) -> WriteReport:
        report = WriteReport()
        with text_stream(fp) as text:
            out = csv.writer(text, lineterminator="\n")
            if self.header:
                out.writerow(self.header)
            for conv in convs:
                rows = list(self.rows(conv, report.dropped))
                out.writerows(rows)
                report.written += bool(rows)
        return report

    def rows(self, conv: Conversation, dropped: Counter[str]) -> Iterable[Sequence[Any]]:
        raise NotImplementedError


@contextmanager
def text_stream(fp: IO[bytes]) -> Iterator[IO[str]]:
    """The binary file as UTF-8 text for the ``csv`` module (newlines untranslated); ``fp`` stays open."""
    text = io.TextIOWrapper(fp, encoding="utf-8", newline="")
    try:
        yield text
        text.flush()
    finally:
        text.detach()


# -- what a format cannot hold: dropped and counted ------------------------------------------------

NO_REPLY = "conversations without an assistant reply"
NO_PAIR = "conversations without a user turn and a reply to it"
EMPTY = "conversations with no message left to write"
AFTER_REPLY = "messages after the last assistant reply"
NAMES = "speaker names"
TRAIN_FLAGS = "train flags"
TOOL_CALLS = "tool calls"
TOOL_MESSAGES = "tool messages"
TOOL_SCHEMAS = "tool schemas"
LATE_SYSTEM = "system messages after the first turn"
MERGED = "turn boundaries (consecutive turns of one role joined)"


def train_flags(messages: Iterable[Message], dropped: Counter[str]) -> None:
    """Count the ``train`` flags that differ from the default policy (a format without them loses them)."""
    n = sum(1 for m in messages if m.train is not None and m.train != (m.role == "assistant"))
    if n:
        dropped[TRAIN_FLAGS] += n


def plain_messages(conv: Conversation, dropped: Counter[str], *, names: bool = False, train: bool = False) -> list[Message]:
    """The messages of a format without tools: tool calls, tool messages and tool schemas are
    dropped and counted (an assistant turn that only called tools goes with them); speaker names
    too unless ``names``, and train flags unless ``train``."""
    out = []
    for m in conv.messages:
        if m.role == "tool":
            dropped[TOOL_MESSAGES] += 1
            continue
        if m.tool_calls:
            dropped[TOOL_CALLS] += len(m.tool_calls)
            if not m.content:
                continue
        if m.name is not None and not names:
            dropped[NAMES] += 1
        out.append(m)
    if conv.tools:
        dropped[TOOL_SCHEMAS] += len(conv.tools)
    if not train:
        train_flags(out, dropped)
    return out


def leading_system(messages: list[Message], dropped: Counter[str], *, keep_late: bool = False) -> tuple[str, list[Message]]:
    """Split off the system messages that open a conversation (joined by a blank line).

    A system message further on is dropped and counted, unless ``keep_late`` (it stays in the list).
    """
    i = 0
    while i < len(messages) and messages[i].role == "system":
        i += 1
    system = "\n\n".join(m.content for m in messages[:i])
    rest = messages[i:]
    if not keep_late:
        late = sum(1 for m in rest if m.role == "system")
        if late:
            dropped[LATE_SYSTEM] += late
            rest = [m for m in rest if m.role != "system"]
    return system, rest


def until_last_reply(messages: list[Message], dropped: Counter[str]) -> list[Message] | None:
    """The messages up to and including the last assistant turn (the rest counted); None when
    there is no assistant turn (the conversation is counted)."""
    last = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "assistant"), None)
    if last is None:
        dropped[NO_REPLY] += 1
        return None
    if last + 1 < len(messages):
        dropped[AFTER_REPLY] += len(messages) - last - 1
    return messages[: last + 1]


def alternating(messages: list[Message], dropped: Counter[str]) -> list[tuple[str, str]]:
    """(role, text) turns with consecutive turns of one role joined by a newline (counted)."""
    turns: list[tuple[str, str]] = []
    for m in messages:
        if turns and turns[-1][0] == m.role:
            turns[-1] = (m.role, turns[-1][1] + "\n" + m.content)
            dropped[MERGED] += 1
        else:
            turns.append((m.role, m.content))
    return turns


def user_assistant_pairs(messages: list[Message], dropped: Counter[str]) -> list[tuple[str, str]]:
    """(user text, assistant reply) pairs of user/assistant messages. Consecutive turns of one
    role are joined; an assistant turn with no user turn before it and a last user turn with no
    reply are dropped and counted."""
    pairs = []
    pending: str | None = None
    for role, text in alternating(messages, dropped):
        if role == "user":
            pending = text
        elif pending is None:
            dropped["assistant turns with no user turn before them"] += 1
        else:
            pairs.append((pending, text))
            pending = None
    if pending is not None and pairs:  # with no pair at all, the caller counts the conversation
        dropped[AFTER_REPLY] += 1
    return pairs


def call_arguments(call: dict[str, Any]) -> Any:
    """A tool call's arguments as an object (LLaMA-Factory and LIMA-GUI write dicts); a string
    that is not JSON stays a string."""
    args = (call.get("function") or {}).get("arguments", "")
    if isinstance(args, str):
        try:
            return orjson.loads(args) if args.strip() else {}
        except orjson.JSONDecodeError:
            return args
    return args
