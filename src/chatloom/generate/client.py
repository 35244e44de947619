"""Sending one chat request to an OpenAI-compatible endpoint, dependably: the ``openai`` SDK's
async client (its own retries off: ours are journaled), request and token rate limits
(``aiolimiter``), and retries with exponential backoff and full jitter on 429, 5xx, 408/409,
timeouts and dropped connections, honouring ``Retry-After`` (``retry-after-ms`` first). A 429
pauses every request, not only the one that met it: the limit is the endpoint's, not the
request's.

A request ends in an ``Outcome``: the response (as JSON) and its usage, or the error that ended
it after ``max_attempts``; a refused key or an unknown model is ``Fatal``, since every other
request would meet it too. Every error text goes through ``scrub``: a server may echo the key.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import ChatloomError
from .settings import Endpoint, scrub

#: the chat completion parameters the SDK takes by name; anything else goes in ``extra_body``
KNOWN = frozenset({
    "model", "messages", "temperature", "max_tokens", "max_completion_tokens", "n", "tools", "tool_choice", "seed",
    "top_p", "stop", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "response_format", "user",
})  # fmt: skip
RETRY_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
FATAL_STATUS = frozenset({401, 403, 404})
LONGEST_WAIT = 300.0  # a Retry-After longer than this is cut to it


class Fatal(ChatloomError):
    """An error every request of the run would meet (a refused key, an unknown model)."""


class BudgetReached(Exception):
    """The run's token budget is spent: what is not sent stays pending."""


@dataclass
class Limits:
    """How hard to press an endpoint."""

    concurrency: int = 8
    rpm: float | None = None
    tpm: float | None = None
    timeout: float = 120.0
    max_attempts: int = 6
    backoff: float = 1.0
    backoff_max: float = 60.0


@dataclass
class Outcome:
    """How a request ended: a response, an error (after ``attempts``), or neither (``stopped``:
    the run stopped between attempts; the request stays pending)."""

    response: dict[str, Any] | None
    usage: dict[str, Any] | None
    attempts: int
    error: str | None = None
    stopped: bool = False


def estimate_tokens(body: dict[str, Any]) -> int:
    """A cheap upper-ish estimate of a request's tokens for the token rate limit: its text's
    characters / 4 per message plus 4, plus what it may answer (``max_tokens`` × ``n``)."""
    prompt = sum(len(str(m.get("content") or "")) // 4 + 4 for m in body.get("messages", ()))
    answer = (body.get("max_tokens") or body.get("max_completion_tokens") or 256) * (body.get("n") or 1)
    return prompt + answer


def retry_after(headers: Any) -> float | None:
    """Seconds a response asks to wait: ``retry-after-ms``, else ``retry-after`` (seconds or an
    HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):  # neither seconds nor a date: not an answer
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class Client:
    """One endpoint's async client, with its limits. ``close()`` when done."""

    def __init__(self, endpoint: Endpoint, limits: Limits, stop: asyncio.Event | None = None):
        import openai
        from aiolimiter import AsyncLimiter

        self.endpoint = endpoint
        self.limits = limits
        key = endpoint.api_key()
        self.secrets = [key] if key else []
        # max_retries=0: the journal counts attempts and the retries wait on the shared pause
        self.sdk = openai.AsyncOpenAI(base_url=endpoint.base_url, api_key=key or "none", max_retries=0, timeout=limits.timeout)
        self.rpm = AsyncLimiter(limits.rpm, 60) if limits.rpm else None
        self.tpm = AsyncLimiter(limits.tpm, 60) if limits.tpm else None
        self.retried = 0  # attempts that were tried again (the run's summary)
        self._pause_until = 0.0
        self.stop = stop or asyncio.Event()  # set: no new attempt starts (Ctrl+C)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the run stops first; False when it stopped."""
        if seconds <= 0:
            return not self.stop.is_set()
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)
        except TimeoutError:
            return True
        return False

    async def close(self) -> None:
        await self.sdk.close()

    def scrub(self, text: str) -> str:
        return scrub(text, self.secrets)

    async def _wait_turn(self, body: dict[str, Any]) -> bool:
        """Wait for the shared pause (a 429) and the rate limits; False when the run stopped."""
        while (wait := self._pause_until - time.monotonic()) > 0:
            if not await self._sleep(wait):
                return False
        if self.rpm is not None and not await self._unless_stopped(self.rpm.acquire(1)):
            return False
        if self.tpm is not None and not await self._unless_stopped(self.tpm.acquire(min(float(estimate_tokens(body)), self.tpm.max_rate))):
            return False
        return not self.stop.is_set()

    async def _unless_stopped(self, waiting: Any) -> bool:
        """Await ``waiting`` (a rate limit's turn, up to a minute) unless the run stops first:
        False then, and the turn is not taken."""
        turn = asyncio.ensure_future(waiting)
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({turn, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if turn.done():
            return True
        turn.cancel()
        await asyncio.gather(turn, return_exceptions=True)
        return False

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(max, base·2^(attempt-1))]."""
        return random.uniform(0, min(self.limits.backoff_max, self.limits.backoff * 2 ** (attempt - 1)))

    async def complete(self, body: dict[str, Any]) -> Outcome:
        """Send ``body`` (a chat completion request) until it succeeds, fails for good or has
        used ``max_attempts``."""
        import openai

        args = {k: v for k, v in body.items() if k in KNOWN}
        extra = {k: v for k, v in body.items() if k not in KNOWN}
        attempt = 0
        while True:
            if not await self._wait_turn(body):
                return Outcome(None, None, attempt, stopped=True)
            attempt += 1
            try:
                # the raw response: its JSON as the server sent it, without building the SDK's
                # pydantic objects and dumping them back (a third of the client's time per request)
                raw = await self.sdk.chat.completions.with_raw_response.create(**args, extra_body=extra or None)
            except openai.APIStatusError as err:
                status = err.status_code
                text = self.scrub(f"HTTP {status}: {_message(err)}")
                if status in FATAL_STATUS:
                    raise Fatal(f"{self.endpoint.base_url}: {text}") from None
                if status not in RETRY_STATUS or attempt >= self.limits.max_attempts:
                    return Outcome(None, None, attempt, text)
                asked = retry_after(err.response.headers)
                wait = min(asked, LONGEST_WAIT) if asked is not None else self._backoff(attempt)
                if status == 429:  # the endpoint's limit: everyone waits
                    self._pause_until = max(self._pause_until, time.monotonic() + wait)
            except openai.APIConnectionError as err:  # timeouts included
                text = self.scrub(f"{type(err).__name__}: {err}")
                if attempt >= self.limits.max_attempts:
                    return Outcome(None, None, attempt, text)
                wait = self._backoff(attempt)
            except openai.APIError as err:  # a 200 whose body is no chat completion (a proxy's page)
                return Outcome(None, None, attempt, self.scrub(f"{type(err).__name__}: {err}"))
            else:
                try:
                    response = orjson.loads(raw.content)
                except orjson.JSONDecodeError:
                    response = None
                if not isinstance(response, dict) or not isinstance(response.get("choices"), list):
                    return Outcome(None, None, attempt, "the server's answer is not a chat completion")
                return Outcome(response, response.get("usage"), attempt)
            self.retried += 1
            if not await self._sleep(wait):
                return Outcome(None, None, attempt, stopped=True)


def _message(err: Any) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return str(getattr(err, "message", err))
