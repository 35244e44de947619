"""The phrases filter: assistant turns with LLM slop or refusals. The shipped lists are text files
in ``phrase_lists/`` beside this module: one phrase a line, lower case, ``#`` comments."""

from __future__ import annotations

import re
from importlib import resources
from typing import Literal

from pydantic import Field, model_validator

from ...model import Conversation
from ..base import Context, Filter, Params


def phrase_list(name: str) -> list[str]:
    """A shipped phrase list (``slop``, ``refusals``): one phrase a line, ``#`` comments."""
    text = resources.files("chatloom.pipeline.filters").joinpath(f"phrase_lists/{name}.txt").read_text(encoding="utf-8")
    return [line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#")]


class PhrasesParams(Params):
    lists: list[Literal["slop", "refusals"]] = ["slop", "refusals"]
    extra: list[str] = []  # your own phrases (none empty: an empty phrase is in every turn)
    max_hits: int = Field(0, ge=0)  # more hits than this drops the conversation

    @model_validator(mode="after")
    def _some_phrases(self) -> PhrasesParams:
        if any(not p.strip() for p in self.extra):
            raise ValueError("extra: an empty phrase is in every reply; remove it")
        if not self.lists and not self.extra:
            raise ValueError("no phrases to look for: give lists, extra or both")
        return self


class Phrases(Filter[PhrasesParams]):
    """Drop conversations whose assistant turns use phrases from a list: ``slop`` (the tics of LLM
    prose), ``refusals`` (I'm sorry, but as an AI…), both shipped, plus your own."""

    name = "phrases"
    summary = "drop assistant turns with LLM slop or refusal phrases (shipped lists, extendable)"

    def __init__(self, params: PhrasesParams, context: Context) -> None:
        super().__init__(params, context)
        self._lists: dict[str, list[str]] = {name: phrase_list(name) for name in params.lists}
        if params.extra:
            self._lists["extra"] = [p.lower() for p in params.extra]
        self._re = {name: re.compile("|".join(re.escape(p) for p in phrases)) for name, phrases in self._lists.items() if phrases}

    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        text = "\n".join(m.content.lower().replace("\u2019", "'") for m in conv.messages if m.role == "assistant")
        for name, pattern in self._re.items():
            if len(pattern.findall(text)) > self.params.max_hits:
                return False, f"{name} phrases"
        return True
