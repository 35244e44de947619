"""The cleanup transform: mojibake repair (ftfy), trailing spaces, runs of blank lines; and
``map_contents``, which the transforms that rewrite every message's text share."""

from __future__ import annotations

import re
from collections.abc import Callable

from msgspec.structs import replace

from ...model import Conversation
from ..base import Params, Transform


def map_contents(conv: Conversation, fn: Callable[[str], str]) -> tuple[Conversation, int]:
    """``conv`` with ``fn`` applied to every message's content, and how many messages changed
    (``conv`` itself when none did)."""
    changed = [m if (text := fn(m.content)) == m.content else replace(m, content=text) for m in conv.messages]
    n = sum(a is not b for a, b in zip(changed, conv.messages))
    return (replace(conv, messages=changed) if n else conv), n


class CleanupParams(Params):
    ftfy: bool = True
    whitespace: bool = True


class Cleanup(Transform[CleanupParams]):
    name = "cleanup"
    summary = "text cleanup: mojibake repair (ftfy), trailing spaces, runs of blank lines"

    def apply(self, conv: Conversation) -> Conversation | None:
        use_ftfy, whitespace = self.params.ftfy, self.params.whitespace

        def clean(text: str) -> str:
            if use_ftfy and not text.isascii():  # ASCII has no mojibake
                import ftfy

                text = ftfy.fix_text(text)
            if whitespace:
                text = re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t]+\n", "\n", text)).strip()
            return text

        conv, n = map_contents(conv, clean)
        self.stats["turns cleaned"] += n
        return conv
