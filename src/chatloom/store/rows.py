"""Rows ↔ ``Conversation`` / ``Message``: the columns each read names, and the codecs between them.

A conversation row is read as a ``ConvRow`` (a named tuple whose fields are the columns, in the
order ``CONV_COLUMNS`` selects them), so code says ``row.msg_start``, never ``row[14]``.

A message row is read by unpacking, in the order ``MSG_COLUMNS`` selects it:

    for pk, role, content, name, extra in db.execute(f"SELECT {MSG_COLUMNS} FROM messages …"):

Messages are the hot path (a full read makes one per row): unpacking costs nothing, where a
``sqlite3.Row`` or a named tuple per message made ``iter_conversations`` 15-20% slower.

The fields most messages lack (tool_calls, tool_call_id, train, meta) share one JSON column,
``extra``; list and dict fields of a conversation are JSON text, NULL when empty.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from ..model import Conversation, Message


class ConvRow(NamedTuple):
    """A ``conversations`` row, every column (see migrations.py for what each holds)."""

    pk: int
    id: str
    digest: str
    revision: int
    deleted: int
    title: str | None
    language: str | None
    tags: str | None
    tools: str | None
    source: str | None
    meta: str | None
    created_at: str | None
    updated_at: str | None
    modified_at: str
    msg_start: int
    n_messages: int
    seq: int  # the change number of its last write (the changes feed's order: migration 8)


class Existing(NamedTuple):
    """What an import needs to know of a conversation already stored."""

    pk: int
    id: str
    digest: str
    deleted: int
    tags: str | None


CONV_COLUMNS = ", ".join(ConvRow._fields)
EXISTING_COLUMNS = ", ".join(Existing._fields)
INSERT_CONVERSATION = f"INSERT INTO conversations ({CONV_COLUMNS}) VALUES ({', '.join('?' * len(ConvRow._fields))})"

#: read as ``pk, role, content, name, extra`` (see the module docstring)
MSG_COLUMNS = "pk, role, content, name, extra"
#: written as the tuples ``message_rows`` makes
INSERT_MESSAGES = "INSERT INTO messages (conv, role, content, name, extra) VALUES (?, ?, ?, ?, ?)"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(value: Any) -> str | None:
    """A list or dict as JSON text; None when empty."""
    return orjson.dumps(value).decode() if value else None


def loads(text: str | None, default: Any) -> Any:
    return orjson.loads(text) if text else default


def to_message(role: str, content: str, name: str | None, extra: str | None) -> Message:
    if extra is None:
        return Message(role=role, content=content, name=name)
    return Message(role=role, content=content, name=name, **orjson.loads(extra))


def to_conversation(row: ConvRow, messages: list[Message]) -> Conversation:
    return Conversation(
        id=row.id,
        messages=messages,
        title=row.title,
        language=row.language,
        tags=loads(row.tags, []),
        tools=loads(row.tools, []),
        source=loads(row.source, {}),
        meta=loads(row.meta, {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def conv_row(pk: int, conv: Conversation, dg: str, revision: int, modified_at: str, msg_start: int) -> ConvRow:
    """The row that stores ``conv`` (live) as conversation ``pk``, its messages from ``msg_start``.

    Built positionally, in ``ConvRow``'s field order (one per added conversation on the bulk
    path: keywords cost 4x as much); every read of it goes by name, and a test reads it back."""
    return _new_tuple(ConvRow, (
        pk, conv.id, dg, revision, 0, conv.title, conv.language, orjson.dumps(conv.tags).decode(),
        dumps(conv.tools), dumps(conv.source), dumps(conv.meta), conv.created_at, conv.updated_at,
        modified_at, msg_start, len(conv.messages), 0,
    ))  # fmt: skip


_new_tuple = tuple.__new__


def extra(m: Message) -> str | None:
    """tool_calls, tool_call_id, train and meta as one JSON object; None when all are empty."""
    if m.tool_calls is None and m.tool_call_id is None and m.train is None:  # the common case
        return orjson.dumps({"meta": m.meta}).decode() if m.meta else None
    fields = {"tool_calls": m.tool_calls, "tool_call_id": m.tool_call_id, "train": m.train, "meta": m.meta}
    return orjson.dumps({k: v for k, v in fields.items() if v is not None and v != {}}).decode()


def message_rows(conv: Conversation, conv_pk: int) -> list[tuple[Any, ...]]:
    """``conv``'s messages as the tuples ``INSERT_MESSAGES`` takes."""
    return [(conv_pk, m.role, m.content, m.name, extra(m)) for m in conv.messages]
