"""The three generators: ``ReplyJob`` (fill or regenerate assistant turns of the dataset's own
conversations), ``QAJob`` (answer questions in a persona's voice, or rewrite short answers) and
``SelfChatJob`` (two personas talk about seed topics).

Each gives its items, keyed by what they are made from (the same input gives the same keys, so a
re-run finds its journal), and runs one item through ``Context.call``. A completion's conversation
is written in the request's own transaction, tagged ``generated``, with ``meta.generated``: the
run, the endpoint, the model, the parameters, the prompt's hash and the usage.
"""

from __future__ import annotations

import difflib
import hashlib
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..errors import UsageError
from ..jsonl import bare_messages
from ..model import Conversation, Message
from ..store import PlannedRequest, Store
from .inputs import Persona, Question, Templates
from .runner import Context, Item, ItemFailed, Write, choice_text
from .settings import Endpoint

TAG = "generated"
#: request fields chatloom sets itself: an extra body may not
RESERVED = frozenset({"model", "messages", "stream", "n", "tools"})


def digest_of(*parts: Any) -> str:
    """A short, stable hash of JSON-able parts (item keys, request hashes)."""
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


@dataclass
class Settings:
    """What every request of a run carries: the endpoint and the parameters (each given one wins
    over the endpoint's default), the system prompt, and the templates."""

    endpoint: Endpoint
    templates_dir: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    n: int = 1
    seed: int | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)
    system: str | None = None
    keep_system: bool = True
    tags: tuple[str, ...] = ()
    templates: Templates = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.templates = Templates(Path(self.templates_dir) if self.templates_dir else None)
        ours = sorted(RESERVED & {*self.endpoint.extra_body, *self.extra_body})
        if ours:
            raise UsageError(
                f"extra body fields {', '.join(ours)}: chatloom sets these itself (--model, --n; replies are not streamed)"
            )

    def record(self) -> dict[str, Any]:
        """What a run records of its settings (``from_record`` makes them again): never a key."""
        return {"endpoint": self.endpoint.public(), "templates_dir": self.templates_dir, "parameters": self.parameters(),
                "system": self.system, "keep_system": self.keep_system, "tags": list(self.tags)}  # fmt: skip

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> Settings:
        p = r.get("parameters", {})
        return cls(Endpoint(**r["endpoint"]), r.get("templates_dir"), p.get("temperature"), p.get("max_tokens"), p.get("n", 1),
                   p.get("seed"), p.get("extra_body", {}), r.get("system"), r.get("keep_system", True), tuple(r.get("tags", ())))  # fmt: skip

    def parameters(self) -> dict[str, Any]:
        ep = self.endpoint
        p = {"temperature": self.temperature if self.temperature is not None else ep.temperature,
             "max_tokens": self.max_tokens if self.max_tokens is not None else ep.max_tokens,
             "n": self.n if self.n != 1 else None, "seed": self.seed}  # fmt: skip
        p = {k: v for k, v in p.items() if v is not None}
        extra = {**ep.extra_body, **self.extra_body}
        if extra:
            p["extra_body"] = extra
        return p

    def body(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        p = self.parameters()
        body: dict[str, Any] = {"model": self.endpoint.model, "messages": messages}
        body.update({k: v for k, v in p.items() if k != "extra_body"})
        if tools:
            body["tools"] = tools
        body.update(p.get("extra_body", {}))
        return body

    def planned(
        self, key: str, item: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> PlannedRequest:
        body = self.body(messages, tools)
        return PlannedRequest(key, item, digest_of(body), body)

    def generated(self, run: str, planned: PlannedRequest, response: dict[str, Any]) -> dict[str, Any]:
        """``meta.generated`` of what a completion wrote."""
        choices = response.get("choices") or [{}]
        return {"run": run, "endpoint": self.endpoint.name or self.endpoint.base_url,
                "model": response.get("model") or self.endpoint.model, "parameters": self.parameters(),
                "prompt_hash": planned.request_hash, "usage": response.get("usage"),
                "finish_reason": choices[0].get("finish_reason")}  # fmt: skip

    def reply(self, response: dict[str, Any], *, name: str | None = None, meta: dict[str, Any] | None = None) -> Message:
        """The assistant message of choice 0; the other choices (``n``) go in its
        ``meta.alternatives``."""
        text, calls = choice_text(response)
        extra = dict(meta or {})
        others = [choice_text(response, i) for i in range(1, len(response.get("choices") or []))]
        if others:
            extra["alternatives"] = [{"content": t, **({"tool_calls": c} if c else {})} for t, c in others]
        return Message(role="assistant", content=text.strip() if not calls else text, name=name, tool_calls=calls, meta=extra)


class Job:
    """A generator: its items, and how one item is made (one request by default)."""

    kind = ""
    batchable = True

    def __init__(self, settings: Settings, run: str = ""):
        self.settings = settings
        self.run = run

    def items(self) -> list[Item]:
        raise NotImplementedError

    def planned(self, item: Item) -> PlannedRequest:
        """The one request of ``item`` (the jobs whose items are one request)."""
        raise NotImplementedError

    def write(self, item: Item, planned: PlannedRequest) -> Write:
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        """What names the run (with the settings): the input, not its contents."""
        return {}

    def rebuild(self) -> dict[str, Any]:
        """What makes this job again from a run's record (``chatloom generate collect``)."""
        return {}

    async def run_item(self, item: Item, ctx: Context) -> None:
        planned = self.planned(item)
        await ctx.call(planned, self.write(item, planned))


# -- qa ---------------------------------------------------------------------------------------


class QAJob(Job):
    """One conversation per question: [system], user: the question, assistant: the reply."""

    kind = "qa"

    def __init__(
        self,
        settings: Settings,
        questions: list[Question],
        path: Path,
        run: str = "",
        *,
        fields: dict[str, str | None] | None = None,
    ):
        super().__init__(settings, run)
        self.questions = questions
        self.path = path
        self.fields = fields or {}

    def rebuild(self) -> dict[str, Any]:
        return {"path": str(self.path.resolve()), **self.fields}

    def identity(self) -> dict[str, Any]:
        return {"questions": self.path.name, "qa_template": self.settings.templates.source("qa.jinja")}

    def items(self) -> list[Item]:
        seen: Counter[tuple[str, str | None]] = Counter()
        out = []
        for q in self.questions:
            seen[(q.question, q.answer)] += 1  # the same question twice is two items
            out.append(Item(digest_of("qa", q.question, q.answer, seen[(q.question, q.answer)]), q))
        return out

    def _system(self) -> list[dict[str, Any]]:
        return [{"role": "system", "content": self.settings.system}] if self.settings.system else []

    def planned(self, item: Item) -> PlannedRequest:
        q: Question = item.data
        prompt = self.settings.templates.render("qa.jinja", question=q.question, answer=q.answer, record=q.record)
        return self.settings.planned(item.key, item.key, [*self._system(), {"role": "user", "content": prompt}])

    def write(self, item: Item, planned: PlannedRequest) -> Write:
        q: Question = item.data
        s = self.settings

        def write(store: Store, response: dict[str, Any]) -> str:
            generated = s.generated(self.run, planned, response)
            messages = [Message(role="system", content=s.system)] if s.system and s.keep_system else []
            messages += [Message(role="user", content=q.question), s.reply(response)]
            meta: dict[str, Any] = {"generated": generated}
            if q.answer is not None:
                meta["short_answer"] = q.answer
            conv = Conversation(id=f"gen:{self.run}:{item.key}", messages=messages, tags=[TAG, *s.tags], meta=meta,
                                source={"format": "generate-qa", "file": str(self.path), "locator": f"line {q.line}"})  # fmt: skip
            store.put(conv, op="generate")
            return conv.id  # type: ignore[return-value]

        return write


# -- reply ------------------------------------------------------------------------------------


class ReplyJob(Job):
    """Fill the missing last assistant turn of conversations, or regenerate chosen assistant
    turns (the old text stays in the history), with the conversation's own tools."""

    kind = "reply"

    def __init__(self, settings: Settings, store: Store, ids: list[str], *, mode: str = "fill", turns: str = "last", run: str = "",
                 selection: dict[str, Any] | None = None):  # fmt: skip
        super().__init__(settings, run)
        self.store = store
        self.ids = list(dict.fromkeys(ids))  # an id given twice is one conversation
        self.mode = mode
        self.turns = turns
        self.selection = selection or {}
        self.skipped = 0
        self.missing = 0

    def identity(self) -> dict[str, Any]:
        return {"mode": self.mode, "turns": self.turns, **self.selection}

    def rebuild(self) -> dict[str, Any]:
        return {"ids": self.ids, "mode": self.mode, "turns": self.turns, "selection": self.selection}

    def _targets(self, conv: Conversation) -> list[int]:
        msgs = conv.messages
        if self.mode == "fill":
            if not msgs:
                return []
            last = msgs[-1]
            if last.role == "assistant":
                return [len(msgs) - 1] if not last.content.strip() and not last.tool_calls and len(msgs) > 1 else []
            return [len(msgs)] if last.role in ("user", "tool") else []
        assistant = [i for i, m in enumerate(msgs) if m.role == "assistant" and i > 0]
        if self.turns == "last":
            return assistant[-1:]
        if self.turns == "all":
            return assistant
        wanted = {int(t) for t in self.turns.split(",") if t.strip()}
        return [i for i in assistant if i in wanted]

    def _prompt(self, conv: Conversation, index: int) -> list[dict[str, Any]]:
        history = bare_messages(conv.messages[:index])
        if self.settings.system:
            if history and history[0]["role"] == "system":
                history = history[1:]
            history = [{"role": "system", "content": self.settings.system}, *history]
        return history

    def items(self) -> list[Item]:
        """One item per turn to write, keyed by the conversation, the turn and what is above it:
        all of it to fill; to regenerate, all but the assistant turns (which this same run may be
        regenerating: the item stays the same item when an earlier turn got its new text)."""
        out = []
        found = 0
        for conv in self.store.iter_conversations(ids=self.ids, skip_missing=True):  # one deleted since: not an item
            found += 1
            targets = self._targets(conv)
            if not targets:
                self.skipped += 1
            for index in targets:
                above = [digest_of(m) for m in bare_messages(conv.messages[:index])]
                kept = [d for d, m in zip(above, conv.messages, strict=False) if self.mode == "fill" or m.role != "assistant"]
                key = digest_of("reply", conv.id, index, kept, self.mode)
                out.append(Item(key, (conv.id, index, above, conv)))
        self.missing = len(self.ids) - found
        return out

    def _ours(self, m: Message) -> bool:
        """An assistant turn this run wrote (an earlier turn of the same regenerate)."""
        return m.role == "assistant" and (m.meta.get("generated") or {}).get("run") == self.run

    def planned(self, item: Item) -> PlannedRequest:
        _, index, _, conv = item.data
        return self.settings.planned(item.key, item.key, self._prompt(conv, index), conv.tools or None)

    def write(self, item: Item, planned: PlannedRequest) -> Write:
        conv_id, index, above, _ = item.data
        s = self.settings

        def write(store: Store, response: dict[str, Any]) -> str:
            entry = store.entry(conv_id)
            conv = entry.conversation
            if entry.deleted:
                raise ItemFailed(f"{conv_id} was deleted since the request was made")
            now = bare_messages(conv.messages[:index])
            if len(now) < index or any(digest_of(d) != was and not self._ours(m)
                                       for m, d, was in zip(conv.messages, now, above, strict=False)):  # fmt: skip
                raise ItemFailed(f"{conv_id} changed above message {index} since the request was made; run again to ask anew")
            generated = s.generated(self.run, planned, response)
            old = conv.messages[index] if index < len(conv.messages) else None
            if old is not None and old.role != "assistant":
                raise ItemFailed(f"{conv_id}: message {index} is no longer an assistant message")
            if self.mode == "fill" and old is not None and (old.content.strip() or old.tool_calls):
                raise ItemFailed(f"{conv_id}: message {index} was written since the request was made; it is kept")
            new = s.reply(response, name=old.name if old else None, meta={**(old.meta if old else {}), "generated": generated})
            messages = list(conv.messages)
            if old is None:
                messages.append(new)
            else:
                messages[index] = new
            conv.messages = messages
            conv.meta = {**conv.meta, "generated": generated}
            conv.tags = list(dict.fromkeys([*conv.tags, TAG, *s.tags]))
            store.put(conv, op="generate")
            return conv_id

        return write


# -- selfchat ---------------------------------------------------------------------------------

GOODBYE = re.compile(
    r"\b(good\s?-?bye|bye(\s?bye)?|farewell|see you|see ya|take care|talk (to you )?(later|soon)|gotta go|"
    r"have a (good|great|nice|lovely) (day|night|evening|one)|good\s?night)\b",
    re.IGNORECASE,
)


def _norm(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def stop_rule(lines: list[tuple[int, str]], text: str, turn: int, turns: int) -> tuple[bool, bool, str]:
    """(the conversation ends here, the new line is kept, why): a repeat (the same words as an
    earlier line, or, for a line of 40 characters or more, ≥ 90% alike one of the last four) ends
    it without the line; a goodbye from the second line on ends it with the line; the planned
    number of turns ends it."""
    norm = _norm(text)
    if (
        any(norm == _norm(t) for _, t in lines)
        or len(norm) >= 40
        and any(difflib.SequenceMatcher(None, norm, _norm(t)).ratio() >= 0.9 for _, t in lines[-4:])
    ):
        return True, False, "repeat"
    if turn >= 1 and GOODBYE.search(text):
        return True, True, "goodbye"
    return turn + 1 >= turns, True, "turns"


class SelfChatJob(Job):
    """Two personas talk about each seed topic; ``assistant`` (0 or 1) is the persona whose
    lines become the assistant's. Each line is one request, journaled: a stopped conversation
    goes on from its last line."""

    kind = "selfchat"
    batchable = False

    def __init__(self, settings: Settings, personas: tuple[Persona, Persona], topics: list[str], *, turns: tuple[int, int],
                 per_topic: int = 1, assistant: int = 1, seed: int = 0, run: str = "", topics_file: str = ""):  # fmt: skip
        super().__init__(settings, run)
        self.personas = personas
        self.topics = topics
        self.turns = turns
        self.per_topic = per_topic
        self.assistant = assistant
        self.seed = seed
        self.topics_file = topics_file

    def identity(self) -> dict[str, Any]:
        t = self.settings.templates
        return {"personas": [p.as_dict() for p in self.personas], "topics": self.topics_file, "turns": list(self.turns),
                "assistant": self.personas[self.assistant].name, "seed": self.seed,
                "templates": [t.source("persona.jinja"), t.source("opening.jinja")]}  # fmt: skip

    def items(self) -> list[Item]:
        out = []
        seen: Counter[str] = Counter()
        for topic in self.topics:
            seen[topic] += 1  # a topic listed twice is twice the conversations
            for k in range(self.per_topic):
                key = digest_of("selfchat", topic, k, seen[topic], [p.as_dict() for p in self.personas], self.seed)
                turns = random.Random(key).randint(*self.turns)
                out.append(Item(key, (topic, turns)))
        return out

    def system(self, speaker: int, topic: str) -> str:
        me, other = self.personas[speaker], self.personas[1 - speaker]
        if me.system:
            return me.system
        return self.settings.templates.render("persona.jinja", persona=me.as_dict(), other=other.as_dict(), topic=topic)

    def view(self, speaker: int, topic: str, lines: list[tuple[int, str]]) -> list[dict[str, Any]]:
        """The conversation so far as ``speaker`` sees it: its lines are the assistant's."""
        msgs: list[dict[str, Any]] = [{"role": "system", "content": self.system(speaker, topic)}]
        if speaker == 0:
            opening = self.settings.templates.render("opening.jinja", persona=self.personas[0].as_dict(),
                                                     other=self.personas[1].as_dict(), topic=topic)  # fmt: skip
            msgs.append({"role": "user", "content": opening})
        msgs += [{"role": "assistant" if who == speaker else "user", "content": text} for who, text in lines]
        return msgs

    def planned_turn(self, item: Item, lines: list[tuple[int, str]]) -> PlannedRequest:
        topic, _ = item.data
        turn = len(lines)
        return self.settings.planned(f"{item.key}/{turn:03d}", item.key, self.view(turn % 2, topic, lines))

    def planned(self, item: Item) -> PlannedRequest:
        return self.planned_turn(item, [])

    async def run_item(self, item: Item, ctx: Context) -> None:
        topic, turns = item.data
        lines: list[tuple[int, str]] = []
        for turn in range(turns):
            planned = self.planned_turn(item, lines)
            response = await ctx.call(planned, self._finish(item, list(lines), turn, planned))
            if response is None:
                return
            text = choice_text(response)[0].strip()
            end, keep, _ = stop_rule(lines, text, turn, turns)
            if keep:
                lines.append((turn % 2, text))
            if end:
                return

    def _finish(self, item: Item, lines: list[tuple[int, str]], turn: int, planned: PlannedRequest) -> Write:
        topic, turns = item.data
        s = self.settings

        def write(store: Store, response: dict[str, Any]) -> str | None:
            text = choice_text(response)[0].strip()
            end, keep, why = stop_rule(lines, text, turn, turns)
            if not end:
                return None
            final = [*lines, (turn % 2, text)] if keep else list(lines)
            while final and final[-1][0] != self.assistant:  # training data ends on a reply, not on the user's line
                final.pop()
            if not final:
                raise ItemFailed(f"the conversation ended ({why}) before {self.personas[self.assistant].name} said anything")
            names = [p.name for p in self.personas]
            messages = [Message(role="system", content=self.system(self.assistant, topic))] if s.keep_system else []
            messages += [
                Message(role="assistant" if who == self.assistant else "user", content=t, name=names[who]) for who, t in final
            ]
            meta = {"generated": s.generated(self.run, planned, response),
                    "selfchat": {"topic": topic, "personas": names, "assistant": names[self.assistant], "turns": turns,
                                 "lines": len(final), "ended": why}}  # fmt: skip
            conv = Conversation(id=f"gen:{self.run}:{item.key}", messages=messages, title=topic[:120], tags=[TAG, *s.tags], meta=meta,
                                source={"format": "generate-selfchat", "file": self.topics_file, "locator": topic[:80]})  # fmt: skip
            store.put(conv, op="generate")
            return conv.id

        return write
