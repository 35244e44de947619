"""The system prompt and the persona (``{{char}}``, ``{{user}}``): seeded per conversation, with
``%{a|b}`` variants (Kajiwoto's syntax) expanded. A task's ``system_prompts``, ``char`` and ``user``
become these two steps."""

from __future__ import annotations

import random
import re
from typing import Literal

from msgspec.structs import replace
from pydantic import Field

from ...model import Conversation, Message
from ..base import Params, Transform
from .cleanup import map_contents

_VARIANT = re.compile(r"%\{([^{}]*\|[^{}]*)\}")


def expand_variants(text: str, rng: random.Random) -> str:
    """``%{a|b}`` → one of the alternatives (Kajiwoto's syntax), chosen by ``rng``."""
    return _VARIANT.sub(lambda m: rng.choice(m.group(1).split("|")), text)


def conv_rng(seed: int, conv: Conversation, salt: str) -> random.Random:
    """A random generator for one conversation: the same seed and id give the same choices,
    whatever the order or the shard the conversation is processed in."""
    return random.Random(f"{seed}:{salt}:{conv.id}")


class SystemPromptParams(Params):
    prompts: list[str] = Field(min_length=1)
    mode: Literal["replace", "add", "keep"] = "replace"  # keep: only where there is none


class SystemPrompt(Transform[SystemPromptParams]):
    name = "system_prompt"
    summary = "set the system prompt: one of a list (seeded), with %{a|b} variants expanded"

    def apply(self, conv: Conversation) -> Conversation | None:
        has = bool(conv.messages) and conv.messages[0].role == "system"
        mode = self.params.mode
        if has and mode == "keep":
            return conv
        rng = conv_rng(self.context.seed, conv, "system_prompt")
        prompt = expand_variants(rng.choice(self.params.prompts), rng)
        rest = conv.messages[1:] if has and mode == "replace" else conv.messages
        self.stats["system prompts replaced" if has and mode == "replace" else "system prompts added"] += 1
        return replace(conv, messages=[Message(role="system", content=prompt), *rest])


class PersonaParams(Params):
    char: str | None = None
    user: str | None = None


class Persona(Transform[PersonaParams]):
    name = "persona"
    summary = "{{char}} and {{user}} → names; %{a|b} variants expanded (seeded)"

    def apply(self, conv: Conversation) -> Conversation | None:
        rng = conv_rng(self.context.seed, conv, "persona")
        char, user = self.params.char, self.params.user

        def personal(text: str) -> str:
            text = expand_variants(text, rng)
            if char is not None:
                text = text.replace("{{char}}", char)
            return text.replace("{{user}}", user) if user is not None else text

        conv, n = map_contents(conv, personal)
        self.stats["turns personalized"] += n
        return conv
