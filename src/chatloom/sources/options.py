"""The importer options: one frozen ``ImportOptions``, its defaults written here once and checked
when it is made (durations parsed, the date order one of three), so no importer reads a dict by
string keys or repeats a default.

    options = ImportOptions(me=("Ana", "Ana (work)"), session_gap="2h")
    source = get_source("whatsapp", options)
    ImportOptions.from_mapping({"me": ["Ana"], "min_turns": 1})   # a recipe's ``options:``

The command line's flags take their defaults from ``ImportOptions()``; a recipe's ``options:``
mapping is read by ``from_mapping``, where a key that is none of these is an error naming it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ..errors import ParamError, UsageError

DATE_FORMATS = ("dmy", "mdy", "ymd")


def parse_duration(text: str | int | float) -> float:
    """``90``, ``"90s"``, ``"5m"``, ``"1h"``, ``"2d"`` → seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = str(text).strip().lower()
    try:
        if t and t[-1] in units:
            return float(t[:-1]) * units[t[-1]]
        return float(t)
    except ValueError:
        raise UsageError(f"'{text}' is not a duration; write it as 90s, 5m, 1h or 2d") from None


@dataclass(frozen=True)
class ImportOptions:
    """What the importers may be told; each reads the ones it knows (message streams: Discord,
    WhatsApp, Telegram read the first five)."""

    me: tuple[str, ...] = ()  # your name(s) in a chat export (case-insensitive): their messages become the assistant's
    merge_gap: str | float = "5m"  # one speaker's messages this close together are one turn
    session_gap: str | float = "1h"  # a silence this long starts a new conversation
    min_turns: int = 2  # shorter conversations (from chat exports) are dropped
    date_format: str | None = None  # dmy, mdy or ymd: the date order of TXT/CSV exports when the file cannot tell
    attachments: bool = True  # attachments, stickers and embeds as [attachment: NAME]; False drops them
    all_branches: bool = False  # ChatGPT: every regenerated branch, not only the active one
    text_blocks: bool = False  # -f text: one conversation per blank-line block, not per file
    # derived once, when made
    merge: timedelta = field(init=False, repr=False, compare=False)
    session: timedelta = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        me = (self.me,) if isinstance(self.me, str) else tuple(self.me) if isinstance(self.me, list | tuple) else self.me
        if not (isinstance(me, tuple) and all(isinstance(name, str) for name in me)):
            raise ParamError("{me} must be a name or a list of names, not {value!r}", value=self.me)
        object.__setattr__(self, "me", me)
        object.__setattr__(self, "merge", timedelta(seconds=parse_duration(self.merge_gap)))
        object.__setattr__(self, "session", timedelta(seconds=parse_duration(self.session_gap)))
        if self.date_format is not None and self.date_format not in DATE_FORMATS:
            raise ParamError("{date_format} must be dmy, mdy or ymd, not '{value}'", value=self.date_format)
        if isinstance(self.min_turns, bool) or not isinstance(self.min_turns, int) or self.min_turns < 1:
            raise ParamError("{min_turns} must be a whole number of 1 or more, not {value!r}", value=self.min_turns)
        for name in ("attachments", "all_branches", "text_blocks"):
            if not isinstance(getattr(self, name), bool):
                raise ParamError(f"{{{name}}} must be true or false, not {{value!r}}", value=getattr(self, name))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> ImportOptions:
        """The options a mapping (a recipe's ``options:``) gives; a key that is none of them is an
        error that names it and the keys there are."""
        known = [f.name for f in dataclasses.fields(cls) if f.init]
        for key in mapping:
            if key not in known:
                raise UsageError(f"unknown importer option '{key}'; the options are: {', '.join(known)}")
        return cls(**mapping)

    def but(self, **changes: Any) -> ImportOptions:
        """These options with some changed (checked as when made)."""
        return self.from_mapping({**{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}, **changes})


def options_of(options: ImportOptions | None = None, **changes: Any) -> ImportOptions:
    """``options`` (else the defaults) with ``changes``: the keyword shorthand of ``get_source``
    and ``plan`` (``get_source("whatsapp", me=["Ana"])``)."""
    if options is None:
        return ImportOptions.from_mapping(changes)
    return options.but(**changes) if changes else options
