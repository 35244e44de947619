"""Generation shared by ``chatloom chat`` and ``chatloom serve``: prompt, sampling, streaming.

    gen = Generator(*load("tiny:llama"))
    prompt = gen.chat_prompt([{"role": "user", "content": "hi"}], max_tokens=64)  # trimmed to fit
    [reply] = gen.complete(prompt.ids, Sampling(temperature=0, max_tokens=64))
    stream = gen.stream(prompt.ids, Sampling(seed=1))                            # text as it comes
    for delta in stream: print(delta, end="")
    stream.result.usage                                                          # after the end

- The prompt is the tokenizer's own chat template (``apply_chat_template(messages, tools=…,
  add_generation_prompt=True)``). A history longer than the context (the model's positions minus
  ``max_tokens``) loses its oldest turns first, whole (a user message and the replies and tool
  results after it); the system prompt and the newest turn stay.
- One worker thread runs the model (``batching``): requests that wait together run as one
  left-padded batch when they sample alike. A ``threading.Event`` passed as ``cancel`` stops a
  reply between two tokens (a client that left, Ctrl+C); one still waiting does not start.
- ``stop`` strings end a reply and are not part of it (as OpenAI's API does); a stream holds back
  the few characters that could be the start of one.
- ``best_of=N`` samples N candidates and keeps the ``n`` with the highest mean log-probability
  per token (under the model itself, before temperature and top-k/top-p).
- Log-probabilities are the model's own (log-softmax of its logits); they are computed only when
  asked for (``logprobs`` or ``best_of``), since keeping every step's logits costs memory.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import UsageError
from .batching import Batcher, Job, best
from .streaming import Stream, cut_at_stop

DEFAULT_CONTEXT = 2048
RESERVE = 512  # what trimming keeps free for the reply when max_tokens is not given


class PromptTooLong(UsageError):
    """Even the system prompt and the newest turn do not fit the context."""


class Sampling(BaseModel):
    """How to pick tokens. ``temperature`` 0 is greedy; ``top_k`` 0 is off."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(1.0, ge=0, le=2, description="0: greedy")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling")
    top_k: int = Field(0, ge=0, description="0: off")
    repetition_penalty: float = Field(1.0, gt=0, description="1: off")
    max_tokens: int | None = Field(None, ge=1, description="None: up to the context's end")
    seed: int | None = Field(None, description="the same seed and prompt give the same reply")
    stop: list[str] = Field(default_factory=list, max_length=8, description="strings that end the reply")
    logprobs: bool = False
    top_logprobs: int = Field(0, ge=0, le=20)

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, value: list[str]) -> list[str]:
        if any(not s for s in value):
            raise ValueError("a stop string cannot be empty")
        return value


@dataclass
class TokenLogprob:
    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class Completion:
    """One reply: its text, its tokens (the end-of-turn token included when it came) and why it ended."""

    text: str
    token_ids: list[int]
    finish_reason: str  # stop | length | cancelled
    prompt_tokens: int
    logprobs: list[TokenLogprob] | None = None
    mean_logprob: float | None = None  # per token, over token_ids (computed with logprobs or best_of)

    @property
    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": len(self.token_ids),
                "total_tokens": self.prompt_tokens + len(self.token_ids)}


@dataclass
class Prompt:
    ids: list[int]
    messages: list[dict[str, Any]]  # what was kept
    dropped: int = 0  # messages left out to fit the context


def context_length(model: Any, tok: Any) -> int:
    """The model's positions (``max_position_embeddings``, GPT-2's ``n_positions``), else the tokenizer's limit."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(model.config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tok, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else DEFAULT_CONTEXT


def turns(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """The leading system messages, and the rest in turns: each user message with what follows it."""
    start = 0
    while start < len(messages) and messages[start].get("role") == "system":
        start += 1
    groups: list[list[dict[str, Any]]] = []
    for message in messages[start:]:
        if message.get("role") == "user" or not groups:
            groups.append([])
        groups[-1].append(message)
    return messages[:start], groups


def trim(messages: list[dict[str, Any]], budget: int, count: Any) -> tuple[list[dict[str, Any]], int]:
    """``messages`` without their oldest whole turns, so that ``count(kept) <= budget``; the system
    messages and the newest turn always stay. Returns (kept, how many messages were dropped)."""
    system, groups = turns(messages)

    def kept(k: int) -> list[dict[str, Any]]:
        return system + [m for g in groups[k:] for m in g]

    if count(messages) <= budget:
        return messages, 0
    lo, hi = 1, max(len(groups) - 1, 0)  # the fewest turns to drop: binary search (the count falls as turns go)
    if hi < lo or count(kept(hi)) > budget:
        raise PromptTooLong(f"the prompt is {count(kept(hi))} tokens with only the system prompt and the last turn; "
                            f"the context leaves {budget} (shorten the message or lower max_tokens)")
    while lo < hi:
        mid = (lo + hi) // 2
        if count(kept(mid)) <= budget:
            hi = mid
        else:
            lo = mid + 1
    result = kept(lo)
    return result, len(messages) - len(result)


class Generator:
    """A model and its tokenizer, ready to answer; one generation at a time."""

    def __init__(self, model: Any, tokenizer: Any):
        self.model = model
        self.tok = tokenizer
        self.context = context_length(model, tokenizer)
        self.batcher = Batcher(self)
        eos = model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            self.eos.add(tokenizer.eos_token_id)
        pad = model.generation_config.pad_token_id
        self.pad = pad if pad is not None else (tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos, default=0))

    # -- prompts ----------------------------------------------------------------------------

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> list[int]:
        """The prompt's token ids, as the tokenizer's chat template renders the messages."""
        from jinja2 import TemplateError

        kwargs: dict[str, Any] = {"add_generation_prompt": True, "tokenize": True, "return_dict": False}
        if tools:
            kwargs["tools"] = tools
        if not getattr(self.tok, "chat_template", None):
            raise UsageError("the tokenizer has no chat template (use the plain-text completions endpoint, or a chat model)")
        try:
            ids = self.tok.apply_chat_template(messages, **kwargs)
        except TemplateError as err:
            raise UsageError(f"the chat template refused the messages: {err}") from None
        if hasattr(ids, "keys"):  # a BatchEncoding on some versions
            ids = ids["input_ids"]
        return list(ids)

    def reserve(self, max_tokens: int | None) -> int:
        return max_tokens if max_tokens is not None else min(RESERVE, self.context // 4)

    def chat_prompt(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None,
                    max_tokens: int | None = None) -> Prompt:
        """The prompt for ``messages``, its oldest turns dropped until it leaves ``max_tokens`` free."""
        budget = self.context - self.reserve(max_tokens)
        if budget <= 0:
            raise UsageError(f"max_tokens {max_tokens} leaves no room for the prompt: the context is {self.context} tokens")
        rendered: dict[int, list[int]] = {}

        def count(kept: list[dict[str, Any]]) -> int:
            if len(kept) not in rendered:  # kept lists differ only by how many oldest messages went
                rendered[len(kept)] = self.render(kept, tools)
            return len(rendered[len(kept)])

        kept, dropped = trim(messages, budget, count)
        return Prompt(rendered[len(kept)], kept, dropped)

    def text_prompt(self, text: str) -> list[int]:
        ids = list(self.tok(text)["input_ids"])
        if not ids:
            raise UsageError("the prompt is empty")
        return ids

    def limit(self, prompt_ids: list[int], sampling: Sampling) -> int:
        room = self.context - len(prompt_ids)
        if room <= 0:
            raise PromptTooLong(f"the prompt is {len(prompt_ids)} tokens; the context holds {self.context}")
        return min(room, sampling.max_tokens or room)

    # -- generating -------------------------------------------------------------------------

    @property
    def active(self) -> int:
        """Requests generating now (one batch)."""
        return self.batcher.running

    @property
    def waiting(self) -> int:
        """Requests waiting for the batch that runs to end."""
        return self.batcher.waiting

    @property
    def cancelled(self) -> int:
        """Requests stopped by their cancel event, since the start."""
        return self.batcher.cancelled

    def generate_kwargs(self, sampling: Sampling, max_new: int, scores: bool, rows: Any) -> dict[str, Any]:
        from transformers import StoppingCriteriaList

        kw: dict[str, Any] = {
            "max_new_tokens": max_new, "use_cache": True, "return_dict_in_generate": True, "output_logits": scores,
            "stopping_criteria": StoppingCriteriaList([rows]), "pad_token_id": self.pad, "do_sample": sampling.temperature > 0,
        }
        if sampling.temperature > 0:
            kw.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
        if sampling.repetition_penalty != 1.0:
            kw["repetition_penalty"] = sampling.repetition_penalty
        return kw

    def completion(self, ids: list[int], reason: str, job: Job) -> Completion:
        """A row's reply: its text without special tokens, cut at its first stop string."""
        text = self.tok.decode(ids, skip_special_tokens=True)
        cut = cut_at_stop(text, job.sampling.stop) if job.sampling.stop else None
        if cut is not None:
            text, reason = cut, "stop"
        return Completion(text, list(ids), reason, len(job.prompt_ids))

    def score(self, done: Completion, logits: Any, row: int, sampling: Sampling) -> None:
        import torch

        chosen: list[TokenLogprob] = []
        for step, token in enumerate(done.token_ids):
            lp = torch.log_softmax(logits[step][row].float(), dim=-1)
            entry = TokenLogprob(self.tok.decode([token]), float(lp[token]))
            if sampling.top_logprobs:
                values, indices = lp.topk(sampling.top_logprobs)
                entry.top = [(self.tok.decode([int(i)]), float(v)) for v, i in zip(values, indices)]
            chosen.append(entry)
        done.mean_logprob = sum(c.logprob for c in chosen) / len(chosen) if chosen else -math.inf
        done.logprobs = chosen if sampling.logprobs else None

    def job(self, prompt_ids: list[int], sampling: Sampling, *, rows: int = 1, scores: bool = False,
            cancel: threading.Event | None = None, stream: bool = False) -> Job:
        """Queue a generation (see ``batching``); ``job.done`` is set when its results are in."""
        import queue

        return self.batcher.submit(Job(prompt_ids, sampling, rows=rows, limit=self.limit(prompt_ids, sampling),
                                       scores=scores, cancel=cancel or threading.Event(),
                                       stream=queue.Queue() if stream else None))

    def complete(self, prompt_ids: list[int], sampling: Sampling, *, n: int = 1, best_of: int | None = None,
                 cancel: threading.Event | None = None) -> list[Completion]:
        """``n`` replies to the prompt; with ``best_of``, the ``n`` best of that many candidates."""
        pool = max(best_of or n, n)
        job = self.job(prompt_ids, sampling, rows=pool, scores=sampling.logprobs or pool > n, cancel=cancel)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return best(job.results, n) if pool > n else job.results

    def stream(self, prompt_ids: list[int], sampling: Sampling, cancel: threading.Event | None = None) -> Stream:
        """A reply as it comes: iterate for the text; ``.result`` holds the whole ``Completion`` after."""
        return Stream(self.job(prompt_ids, sampling, scores=sampling.logprobs, cancel=cancel, stream=True))
