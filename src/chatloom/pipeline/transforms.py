"""The built-in transforms: each returns the changed conversation and counts what it changed."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Literal

from msgspec.structs import replace
from pydantic import Field

from ..model import Conversation, Message
from .base import Params, Transform

_VARIANT = re.compile(r"%\{([^{}]*\|[^{}]*)\}")


def expand_variants(text: str, rng: random.Random) -> str:
    """``%{a|b}`` → one of the alternatives (Kajiwoto's syntax), chosen by ``rng``."""
    return _VARIANT.sub(lambda m: rng.choice(m.group(1).split("|")), text)


def conv_rng(seed: int, conv: Conversation, salt: str) -> random.Random:
    """A random generator for one conversation: the same seed and id give the same choices,
    whatever the order or the shard the conversation is processed in."""
    return random.Random(f"{seed}:{salt}:{conv.id}")


def map_contents(conv: Conversation, fn: Callable[[str], str]) -> tuple[Conversation, int]:
    """``conv`` with ``fn`` applied to every message's content, and how many messages changed
    (``conv`` itself when none did)."""
    changed = [m if (text := fn(m.content)) == m.content else replace(m, content=text) for m in conv.messages]
    n = sum(a is not b for a, b in zip(changed, conv.messages))
    return (replace(conv, messages=changed) if n else conv), n


class MergeTurns(Transform):
    name = "merge_turns"
    summary = "merge consecutive turns of one role into one (joined by a newline)"

    class Params(Params):
        separator: str = "\n"

    def apply(self, conv: Conversation) -> Conversation | None:
        out: list[Message] = []
        for m in conv.messages:
            if out and m.role == out[-1].role and m.role in ("user", "assistant") and not (m.tool_calls or out[-1].tool_calls):
                out[-1] = replace(out[-1], content=f"{out[-1].content}{self.params.separator}{m.content}")  # type: ignore[attr-defined]
                self.stats["turns merged"] += 1
            else:
                out.append(m)
        return replace(conv, messages=out) if len(out) != len(conv.messages) else conv


class SystemPrompt(Transform):
    name = "system_prompt"
    summary = "set the system prompt: one of a list (seeded), with %{a|b} variants expanded"

    class Params(Params):
        prompts: list[str] = Field(min_length=1)
        mode: Literal["replace", "add", "keep"] = "replace"  # keep: only where there is none

    def apply(self, conv: Conversation) -> Conversation | None:
        has = bool(conv.messages) and conv.messages[0].role == "system"
        if has and self.params.mode == "keep":  # type: ignore[attr-defined]
            return conv
        rng = conv_rng(self.context.seed, conv, "system_prompt")
        prompt = expand_variants(rng.choice(self.params.prompts), rng)  # type: ignore[attr-defined]
        rest = conv.messages[1:] if has and self.params.mode == "replace" else conv.messages  # type: ignore[attr-defined]
        self.stats["system prompts replaced" if has and self.params.mode == "replace" else "system prompts added"] += 1  # type: ignore[attr-defined]
        return replace(conv, messages=[Message(role="system", content=prompt), *rest])


class Persona(Transform):
    name = "persona"
    summary = "{{char}} and {{user}} → names; %{a|b} variants expanded (seeded)"

    class Params(Params):
        char: str | None = None
        user: str | None = None

    def apply(self, conv: Conversation) -> Conversation | None:
        rng = conv_rng(self.context.seed, conv, "persona")
        char, user = self.params.char, self.params.user  # type: ignore[attr-defined]

        def personal(text: str) -> str:
            text = expand_variants(text, rng)
            if char is not None:
                text = text.replace("{{char}}", char)
            return text.replace("{{user}}", user) if user is not None else text

        conv, n = map_contents(conv, personal)
        self.stats["turns personalized"] += n
        return conv


class Truncate(Transform):
    """Fit ``max_tokens`` (the recipe's, unless given) by dropping the oldest whole turns; the system
    prompt stays and the rest starts on a user turn. A conversation whose last exchange alone is too
    long is dropped. What is cut is counted."""

    name = "truncate"
    summary = "fit max_tokens: drop the oldest whole turns, keep the system prompt (counted)"
    drop_reason = "over max_tokens even after truncation"

    class Params(Params):
        max_tokens: int | None = Field(None, ge=1)

    def apply(self, conv: Conversation) -> Conversation | None:
        from ..tokens.tokenizer import get_tokenizer

        limit = self.params.max_tokens or self.context.max_tokens  # type: ignore[attr-defined]
        if limit is None:
            return conv
        tok = get_tokenizer(self.context.tokenizer)
        system = [m for m in conv.messages if m.role == "system"]
        rest = [m for m in conv.messages if m.role != "system"]
        lengths = tok.chatml_counts([[(m.role, m.content)] for m in conv.messages])
        by_msg = dict(zip(map(id, conv.messages), lengths))
        total = sum(lengths)
        if total <= limit:
            return conv
        budget = limit - sum(by_msg[id(m)] for m in system)
        kept = total - sum(by_msg[id(m)] for m in system)
        for j in range(len(rest)):
            if kept <= budget and rest[j].role == "user":
                self.stats["conversations truncated"] += 1
                self.stats["turns cut"] += j
                return replace(conv, messages=system + rest[j:])
            kept -= by_msg[id(rest[j])]
        return None


class Window(Transform):
    """One example per assistant turn: the conversation up to and including it (for prompt /
    generation formats such as metharme). Emits several conversations: see ``expand``."""

    name = "window"
    summary = "one example per assistant turn (the conversation up to it)"

    class Params(Params):
        min_context: int = Field(1, ge=0)  # turns before the assistant turn

    def apply(self, conv: Conversation) -> Conversation | None:
        return conv  # the pipeline calls expand()

    def expand(self, conv: Conversation) -> list[Conversation]:
        out = []
        for k, m in enumerate(conv.messages):
            if m.role == "assistant" and sum(x.role != "system" for x in conv.messages[:k]) >= self.params.min_context:  # type: ignore[attr-defined]
                out.append(replace(conv, id=f"{conv.id}@{k}", messages=conv.messages[: k + 1]))
        self.stats["windows"] += len(out)
        return out


class FixRoles(Transform):
    name = "fix_roles"
    summary = "repair role alternation: merge same-role runs, drop turns before the first user turn and after the last assistant"
    drop_reason = "no user → assistant exchange left"

    def apply(self, conv: Conversation) -> Conversation | None:
        system = [m for m in conv.messages if m.role == "system"]
        chat = [m for m in conv.messages if m.role in ("user", "assistant")]
        merged: list[Message] = []
        for m in chat:
            if merged and merged[-1].role == m.role:
                merged[-1] = replace(merged[-1], content=f"{merged[-1].content}\n{m.content}")
            else:
                merged.append(m)
        while merged and merged[0].role != "user":
            merged.pop(0)
        while merged and merged[-1].role != "assistant":
            merged.pop()
        if not merged:
            return None
        out = system + merged
        if len(out) != len(conv.messages):
            self.stats["conversations repaired"] += 1
        return replace(conv, messages=out) if len(out) != len(conv.messages) else conv


class Cleanup(Transform):
    name = "cleanup"
    summary = "text cleanup: mojibake repair (ftfy), trailing spaces, runs of blank lines"

    class Params(Params):
        ftfy: bool = True
        whitespace: bool = True

    def apply(self, conv: Conversation) -> Conversation | None:
        use_ftfy, whitespace = self.params.ftfy, self.params.whitespace  # type: ignore[attr-defined]

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
