"""OpenAI's request and response shapes, as far as ``chatloom serve`` speaks them.

Requests are validated at the edge (pydantic): a bad field is a 400 whose ``param`` names its path
(``messages.0.role``). Fields OpenAI has and this server ignores (``frequency_penalty``,
``response_format``, ``user``, …) are accepted and ignored, so that any SDK version can talk to it.
Two fields are chatloom's own: ``top_k`` and ``repetition_penalty``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .generation import Completion, Sampling

MAX_N = 8


class APIError(Exception):
    """An error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Request):
    type: str
    text: str | None = None


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def as_template_input(self) -> dict[str, Any]:
        """The message as a chat template reads it: text content, ``developer`` read as ``system``."""
        content = self.content
        if isinstance(content, list):
            if any(p.type != "text" for p in content):
                raise APIError(400, "only text content parts are supported by this model", param="messages")
            content = "".join(p.text or "" for p in content)
        message: dict[str, Any] = {"role": "system" if self.role == "developer" else self.role, "content": content or ""}
        for key in ("name", "tool_calls", "tool_call_id"):
            if getattr(self, key) is not None:
                message[key] = getattr(self, key)
        return message


class StreamOptions(_Request):
    include_usage: bool = False


class _Sampled(_Request):
    model: str
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    repetition_penalty: float | None = Field(None, gt=0)
    n: int = Field(1, ge=1, le=MAX_N)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    def sampling(self, max_tokens: int | None, logprobs: bool, top_logprobs: int) -> Sampling:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        values = {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
                  "repetition_penalty": self.repetition_penalty}
        return Sampling(**{k: v for k, v in values.items() if v is not None}, max_tokens=max_tokens, seed=self.seed,
                        stop=stop, logprobs=logprobs, top_logprobs=top_logprobs)


class ChatRequest(_Sampled):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None

    def to_sampling(self) -> Sampling:
        return self.sampling(self.max_completion_tokens or self.max_tokens, self.logprobs, self.top_logprobs or 0)


class CompletionRequest(_Sampled):
    prompt: str | list[str]
    suffix: str | None = None
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for this endpoint
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool = False
    best_of: int | None = Field(None, ge=1, le=MAX_N)

    def to_sampling(self) -> Sampling:
        return self.sampling(self.max_tokens, self.logprobs is not None, self.logprobs or 0)


# -- responses --------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def model_card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "chatloom"}


def usage(prompt_tokens: int, completions: list[Completion]) -> dict[str, int]:
    completion_tokens = sum(len(c.token_ids) for c in completions)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_logprobs(done: Completion) -> dict[str, Any] | None:
    if done.logprobs is None:
        return None

    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    return {"content": [{**entry(t.token, t.logprob), "top_logprobs": [entry(tok, lp) for tok, lp in t.top]}
                        for t in done.logprobs], "refusal": None}


def text_logprobs(done: Completion, offset: int) -> dict[str, Any] | None:
    if done.logprobs is None:
        return None
    offsets = []
    for t in done.logprobs:
        offsets.append(offset)
        offset += len(t.token)
    return {"tokens": [t.token for t in done.logprobs], "token_logprobs": [t.logprob for t in done.logprobs],
            "top_logprobs": [dict(t.top) for t in done.logprobs], "text_offset": offsets}


def finish(done: Completion) -> str:
    return "length" if done.finish_reason == "length" else "stop"


def chat_response(name: str, completions: list[Completion], prompt_tokens: int) -> dict[str, Any]:
    return {
        "id": new_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()), "model": name,
        "choices": [{"index": i, "message": {"role": "assistant", "content": c.text, "refusal": None},
                     "logprobs": chat_logprobs(c), "finish_reason": finish(c)} for i, c in enumerate(completions)],
        "usage": usage(prompt_tokens, completions),
    }


def chat_chunk(cid: str, created: int, name: str, index: int, delta: dict[str, Any],
               finish_reason: str | None = None, logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": name,
            "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}]}


def text_response(name: str, choices: list[tuple[str, Completion, dict[str, Any] | None]], prompt_tokens: int) -> dict[str, Any]:
    return {
        "id": new_id("cmpl"), "object": "text_completion", "created": int(time.time()), "model": name,
        "choices": [{"index": i, "text": text, "logprobs": lp, "finish_reason": finish(c)}
                    for i, (text, c, lp) in enumerate(choices)],
        "usage": usage(prompt_tokens, [c for _, c, _ in choices]),
    }


def text_chunk(cid: str, created: int, name: str, index: int, text: str, finish_reason: str | None = None,
               logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": cid, "object": "text_completion", "created": created, "model": name,
            "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}]}
