"""Text formats: the conversation already rendered as the prompt a model sees.

- ``chatml``: ``{"text": "<|im_start|>ROLE\\nCONTENT<|im_end|>\\n…"}``, the rendering chatloom
  counts tokens with.
- ``metharme``: ``{"prompt": "<|system|>…<|user|>…<|model|>", "generation": "…"}``: the prompt is
  everything before the last assistant turn, the generation that turn.
- ``pygmalion``: ``{"input": "CHAR's Persona: …\\n<START>\\nYou: …\\nCHAR:", "output": " …"}``. The
  persona is the opening system message (else ``meta.persona``); a speaker is named by the
  message's ``name``, else the ``char`` / ``user`` option (``Assistant`` / ``You``), and
  ``{{char}}`` / ``{{user}}`` placeholders become those names.

None of them holds tool calls, tool messages or tool schemas: they are dropped and counted.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..model import Conversation, Message
from .base import EMPTY, JsonlFormat, leading_system, plain_messages, until_last_reply

COMPLETION = {"type": "completion", "field": "text"}  # axolotl: train on the whole text
PRETRAIN = {"columns": {"prompt": "text"}}  # LLaMA-Factory: a text column (the pt stage)


class ChatMLFormat(JsonlFormat):
    name = "chatml"
    summary = "JSONL of {text}: the conversation in ChatML (<|im_start|>role … <|im_end|>)"
    llamafactory = PRETRAIN
    axolotl = COMPLETION

    def record(self, conv: Conversation, dropped: Counter[str]) -> dict[str, Any] | None:
        messages = plain_messages(conv, dropped)
        if not messages:
            dropped[EMPTY] += 1
            return None
        return {"text": "".join(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages)}


_METHARME = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|model|>"}


class MetharmeFormat(JsonlFormat):
    name = "metharme"
    summary = "Metharme JSONL: {prompt: '<|system|>…<|user|>…<|model|>', generation: the last reply}"
    llamafactory = {"formatting": "alpaca", "columns": {"prompt": "prompt", "response": "generation"}}
    axolotl = {"type": "metharme"}

    def record(self, conv: Conversation, dropped: Counter[str]) -> dict[str, Any] | None:
        messages = until_last_reply(plain_messages(conv, dropped), dropped)
        if messages is None:
            return None
        prompt = "".join(_METHARME[m.role] + m.content for m in messages[:-1])
        return {"prompt": prompt + _METHARME["assistant"], "generation": messages[-1].content}


class PygmalionFormat(JsonlFormat):
    name = "pygmalion"
    summary = "Pygmalion JSONL: {input: \"CHAR's Persona: …\\n<START>\\nYou: …\\nCHAR:\", output}"
    llamafactory = {"formatting": "alpaca", "columns": {"prompt": "input", "response": "output"}}
    axolotl = {"type": {"field_instruction": "input", "field_output": "output", "format": "{instruction}", "no_input_format": "{instruction}"}}

    def record(self, conv: Conversation, dropped: Counter[str]) -> dict[str, Any] | None:
        system, messages = leading_system(plain_messages(conv, dropped, names=True), dropped)
        kept = until_last_reply(messages, dropped)
        if kept is None:
            return None
        char = self._speaker(kept[-1])
        persona, scenario = system or _text(conv.meta.get("persona")), _text(conv.meta.get("scenario"))
        lines = [f"{char}'s Persona: {persona}"] if persona else []
        if scenario:
            lines.append(f"Scenario: {scenario}")
        lines.append("<START>")
        lines += [f"{self._speaker(m)}: {m.content}" for m in kept[:-1]]
        lines.append(f"{char}:")
        user = self.options.get("user") or "You"
        fill = lambda text: text.replace("{{char}}", char).replace("{{user}}", user)  # noqa: E731
        return {"input": fill("\n".join(lines)), "output": fill(" " + kept[-1].content)}

    def _speaker(self, m: Message) -> str:
        if m.name:
            return m.name
        return (self.options.get("char") or "Assistant") if m.role == "assistant" else (self.options.get("user") or "You")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
