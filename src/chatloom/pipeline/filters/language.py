"""The language filter: the language of the user and assistant text (py3langid, offline)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ...model import Conversation
from ..base import Context, Filter, Params, ParamsError


class LanguageParams(Params):
    keep: list[str] = Field(min_length=1)
    min_confidence: float = Field(0.9, ge=0, le=1)  # below it the detector is unsure (short chats): see ``unsure``
    unsure: Literal["keep", "drop"] = "keep"


class Language(Filter[LanguageParams]):
    """The language of the user and assistant text (py3langid, offline) must be one of ``keep``."""

    name = "language"
    summary = "keep conversations in the given languages (py3langid, offline)"

    def __init__(self, params: LanguageParams, context: Context) -> None:
        super().__init__(params, context)
        import py3langid

        self._identifier = py3langid.langid.LanguageIdentifier.from_model_file(py3langid.langid.MODEL_FILE, norm_probs=True)
        known = set(self._identifier.nb_classes)
        for i, code in enumerate(params.keep):
            if code not in known:  # it would drop every conversation
                raise ParamsError(f"unknown language '{code}'; the detector knows ISO 639-1 codes: {', '.join(sorted(known))}", "keep", i)

    def keep(self, conv: Conversation) -> bool | tuple[bool, str]:
        text = " ".join(m.content for m in conv.messages if m.role in ("user", "assistant"))
        lang, prob = self._identifier.classify(text[:2000])  # a few hundred words decide it; more costs time only
        if lang in self.params.keep:
            return True
        if prob < self.params.min_confidence:
            if self.params.unsure == "drop":
                return False, "language unsure"
            self.stats["unsure, kept"] += 1
            return True
        return False, f"language {lang}"
