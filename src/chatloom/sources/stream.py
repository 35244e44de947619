"""Message streams (Discord, WhatsApp, Telegram) → conversations (DESIGN §3, "Who is who").

A stream importer only parses its file into ``Post``s, in order, one chat at a time; this module
decides who is who and where a conversation ends, the same way for every platform, as its
``ImportOptions`` say (``sources/options.py``; the command line's ``--me``, ``--merge-gap``, …):

- ``me`` (one name or several; case-insensitive) marks the speaker whose posts become
  ``assistant`` turns; everyone else is ``user``, with ``name`` kept so group chats stay readable;
- consecutive posts of one speaker within ``merge_gap`` (default 5 min) are one turn, joined
  with a newline;
- a silence longer than ``session_gap`` (default 1 h) starts a new conversation;
- conversations with fewer than ``min_turns`` turns (default 2), or without a ``me`` turn, are
  dropped and counted.

Without ``me`` nothing is imported: the file is read, its speakers are listed with their
counts, and the user is asked to choose (``ask_for_me``), rather than guessing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import msgspec

from ..errors import ParamError
from ..model import Conversation, Message
from .base import Reader
from .dates import iso
from .options import ImportOptions


class Post(msgspec.Struct, gc=False):
    """One message as a platform exported it (a Struct untracked by the garbage collector: a
    chat export makes millions of them, and they hold no cycles)."""

    author: str
    text: str
    time: datetime | None = None
    id: str | None = None
    reply_to: str | None = None


DISCRIMINATOR = re.compile(r"#\d{4}$")  # a Discord tag: "Adam#7077"; names are kept without it


def me_names(names: Iterable[str]) -> set[str]:
    """``me`` names as matched: casefolded, and a Discord tag ("Adam#7077") also without the
    "#7077" (DiscordChatExporter writes names without it)."""
    found = set()
    for name in names:
        found.add(name.casefold())
        found.add(DISCRIMINATOR.sub("", name).casefold())
    return found


class Sessionizer:
    """Turns the posts of one chat into conversations; counts speakers and drops in ``reader``."""

    def __init__(self, options: ImportOptions, reader: Reader):
        self.me = me_names(options.me)
        self.merge_gap = options.merge
        self.session_gap = options.session
        self.min_turns = options.min_turns
        self.reader = reader

    def conversations(self, posts: Iterable[Post], *, fmt: str, chat_id: str, file: str, title: str | None = None,
                      meta: dict[str, Any] | None = None) -> Iterator[Conversation]:  # fmt: skip
        """One pass over the posts: turns are merged and sessions cut as they come."""
        speakers = self.reader.speakers
        if not self.me:  # counting speakers only: see ``ask_for_me``
            speakers.update(post.author for post in posts)
            return
        role_of = _Roles(self.me)
        gap, merge_gap = self.session_gap, self.merge_gap
        names: list[str] = []  # the authors of a session's posts, counted in one call when it ends
        messages: list[Message] = []
        # The open turn: its author (None: no session is open), text and meta. Merged posts are
        # added to a local string, which CPython extends in place.
        author_of_turn: str | None = None
        text, turn_meta = "", {}
        first: Post | None = None  # the session's first post
        prev: Post | None = None  # the post before this one
        last: datetime | None = None  # the latest time seen in this session
        for post in posts:
            author, when = post.author, post.time
            names.append(author)
            if author_of_turn is not None:
                before = prev.time  # type: ignore[union-attr]  # when not None, also the session's latest time
                if when is not None and before is not None:
                    since = when - before
                    cut = since > gap
                    merge = not cut and author == author_of_turn and since <= merge_gap
                else:
                    cut = when is not None and last is not None and when - last > gap
                    merge = not cut and author == author_of_turn
                if merge:
                    text += "\n" + post.text
                    prev, last = post, when or last
                    continue
                messages.append(Message(role=role_of[author_of_turn], content=text, name=author_of_turn, meta=turn_meta))  # type: ignore[arg-type]
                if cut:
                    names.pop()  # this post opens the next session
                    speakers.update(names)
                    conv = self._conversation(messages, first, prev, fmt, chat_id, file, title, meta)  # type: ignore[arg-type]
                    if conv is not None:
                        yield conv
                    names, messages, first, last = [author], [], post, None
            else:
                first = post
            # a new turn
            author_of_turn, text = author, post.text
            turn_meta = {} if when is None else {"time": iso(when)}
            if post.id is not None:
                turn_meta["id"] = post.id
            if post.reply_to is not None:
                turn_meta["reply_to"] = post.reply_to
            prev, last = post, when or last
        if author_of_turn is not None:
            messages.append(Message(role=role_of[author_of_turn], content=text, name=author_of_turn, meta=turn_meta))  # type: ignore[arg-type]
            speakers.update(names)
            conv = self._conversation(messages, first, prev, fmt, chat_id, file, title, meta)  # type: ignore[arg-type]
            if conv is not None:
                yield conv

    def _conversation(self, messages: list[Message], first: Post, final: Post, fmt: str, chat_id: str, file: str,
                      title: str | None, meta: dict[str, Any] | None) -> Conversation | None:  # fmt: skip
        """A session's messages as a conversation, or None when it is dropped (counted)."""
        if len(messages) < self.min_turns:
            self.reader.dropped[f"fewer than {self.min_turns} turns"] += 1
            return None
        if not any(m.role == "assistant" for m in messages):
            self.reader.dropped["no message from --me"] += 1
            return None
        anchor = first.id if first.id is not None else (iso(first.time) if first.time else "0")
        return Conversation(
            id=f"{fmt}:{chat_id}:{anchor}",
            messages=messages,
            title=title,
            source={"format": fmt, "file": file, "locator": f"{chat_id}@{anchor}"},
            meta=dict(meta or {}),
            created_at=iso(first.time) if first.time else None,
            updated_at=iso(final.time) if final.time else None,
        )


class _Roles(dict[str, str]):
    """author → role: ``assistant`` for a ``me`` name (case-insensitive), else ``user``; each
    author is casefolded once, on first sight."""

    def __init__(self, me: set[str]):
        super().__init__()
        self.me = me

    def __missing__(self, author: str) -> str:
        role = self[author] = "assistant" if author.casefold() in self.me else "user"
        return role


def me_absent(options: ImportOptions, reader: Reader) -> bool:
    """Whether ``me`` was given and is none of the speakers the reader counted."""
    me = me_names(options.me)
    return bool(me) and bool(reader.speakers) and not any(name.casefold() in me for name in reader.speakers)


def speaker_list(reader: Reader) -> tuple[str, str]:
    """The speakers with their counts (the 12 busiest), and the busiest one's name."""
    top = reader.speakers.most_common(12)
    listing = ", ".join(f"{name} ({n:,})" for name, n in top)
    more = f", and {len(reader.speakers) - len(top)} more" if len(reader.speakers) > len(top) else ""
    return listing + more, top[0][0] if top else "NAME"


def ask_for_me(reader: Reader) -> None:
    """Raise the question 'who are you?' with the speakers and their counts."""
    listing, example = speaker_list(reader)
    raise ParamError(
        "{file}: who are you in this chat? Speakers: {listing}. "
        "Pass {me} '{example}' (repeatable): their messages become the assistant's turns",
        file=reader.file, listing=listing, example=example,
    )  # fmt: skip


def me_missing(options: ImportOptions, reader: Reader) -> ParamError | None:
    """What to say when ``me`` was given and is none of the speakers the reader counted."""
    if not me_absent(options, reader):
        return None
    listing, example = speaker_list(reader)
    return ParamError(
        "{me} {names} is none of its speakers: {listing}; pass {me} '{example}' or another of them",
        names=", ".join(f"'{m}'" for m in options.me), listing=listing, example=example,
    )  # fmt: skip
