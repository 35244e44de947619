"""Export formats: a Format writes conversations to a binary file.

Each format is one small class. A format that cannot hold something counts what it dropped in
the ``WriteReport`` rather than losing it silently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar

from ..model import Conversation


@dataclass
class WriteReport:
    written: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


class Format:
    name: ClassVar[str]
    summary: ClassVar[str] = ""
    extension: ClassVar[str] = ".jsonl"

    def __init__(self, **options: Any):
        self.options = options

    def write(self, convs: Iterable[Conversation], fp: IO[bytes]) -> WriteReport:
        raise NotImplementedError
