"""LLM assist: a reply, or the continuation of a reply, streamed into the editor (SSE).

    POST /api/chats/ID/generate   If-Match   {mode: reply|continue, index, prefix, suffix, n, …}
    POST /api/generations/GEN/stop

The endpoint is any OpenAI-compatible server (``chatloom serve`` included), taken from the
command line's ``--endpoint/--base-url/--model``, else the dataset's ``endpoint`` setting (a
saved endpoint's name, or base URL, model and the key's *name*). The key is read on the server
(the key store or the environment) and never reaches the browser or the dataset.

- **reply**: a chat completion over the messages above ``index``, with the chat's tools; it
  becomes message ``index`` (a new one when ``index`` is past the end).
- **continue**: a text completion of the dataset's chat template rendered up to the assistant
  turn, with ``prefix`` (the text before the cursor) appended and ``suffix`` (after it) sent as
  ``suffix`` when there is one (an endpoint that refuses it is asked again without).

Events: ``start`` {gen}, ``delta`` {i, text} per piece of candidate ``i``, then ``done``
{revision, texts, stopped} or ``error`` {error}. Stop (the button, Esc, the page closing) ends
the upstream request; whatever came is saved all the same, as a revision whose message's
``meta.generated`` records the model, the parameters and ``stopped``. Candidates past the first
are kept in ``meta.alternatives``.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec
import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..errors import ChatloomError, ConflictError, NotFoundError
from ..model import Message

router = APIRouter()
_running: dict[str, asyncio.Event] = {}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_KEYLIKE = re.compile(r"(?i)(?<![A-Za-z0-9])(sk|hf|rk|pk|key|api|gsk|xai)[-_][A-Za-z0-9_-]{16,}|bearer\s+\S{8,}")
_ENDPOINT_KEYS = {"name", "base_url", "model", "key", "key_env", "temperature", "max_tokens", "extra_body"}


def checked_endpoint(value: Any) -> dict[str, Any]:
    """An endpoint setting as the settings page sends it: known fields only, a key's name (never a key)."""
    from ..generate.settings import Endpoint, shown_name

    if not isinstance(value, dict) or not set(value) <= _ENDPOINT_KEYS:
        raise HTTPException(400, f"endpoint: only {', '.join(sorted(_ENDPOINT_KEYS))}")
    value = {k: v for k, v in value.items() if v not in (None, "", {})}
    if "name" not in value and not ("base_url" in value and "model" in value):
        raise HTTPException(400, "endpoint: a saved endpoint's name, or a base URL and a model")
    # a key typed into any field (its name, the variable's name, the model, the URL, the extra
    # body) is refused before it could be saved, shown or sent back
    for field in ("name", "key", "key_env"):
        if field in value and (not isinstance(value[field], str) or shown_name(value[field]) != value[field]):
            raise HTTPException(400, f"endpoint: {field}: that looks like a key; give the key's name ('chatloom keys set NAME')")
    if "key_env" in value and not _ENV_NAME.fullmatch(value["key_env"]):
        raise HTTPException(400, "endpoint: key_env: the name of an environment variable (letters, digits, '_')")
    if _KEYLIKE.search(orjson.dumps(value).decode()):
        raise HTTPException(400, "endpoint: one of its fields holds what looks like a key; keys go in the key store ('chatloom keys set NAME')")
    try:
        Endpoint(**{"base_url": "", "model": "", **{k: v for k, v in value.items() if k != "name"}})
    except (ChatloomError, TypeError) as err:
        raise HTTPException(400, f"endpoint: {err}") from None
    return value


def endpoint(config: Any, setting: dict[str, Any] | None) -> Any:
    """The assist's ``Endpoint``: the command line's, else the dataset's setting."""
    from ..generate.settings import Endpoint, get_endpoint

    chosen = config.endpoint or setting or {}
    if not chosen:
        raise HTTPException(409, "no LLM endpoint: set one on the settings page, or start the studio with --endpoint or --base-url")
    try:
        if chosen.get("name") and not chosen.get("base_url"):
            ep = get_endpoint(chosen["name"])
            for k in ("temperature", "max_tokens", "extra_body", "model"):
                if chosen.get(k) is not None:
                    setattr(ep, k, chosen[k])
            return ep
        return Endpoint(**{k: v for k, v in chosen.items() if k in _ENDPOINT_KEYS - {"name"}})
    except ChatloomError as err:
        raise HTTPException(409, str(err)) from None


class Ask(msgspec.Struct):
    mode: str = "reply"  # reply, continue
    index: int | None = None  # the message written (reply: default the end; continue: required)
    prefix: str = ""
    suffix: str = ""
    n: int = 1
    temperature: float | None = None
    max_tokens: int | None = None


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@router.post("/api/generations/{gen_id}/stop")
def stop(gen_id: str) -> Any:
    found = _running.get(gen_id)
    if found is not None:
        found.set()
    return {"stopping": found is not None}


@router.post("/api/chats/{conv_id:path}/generate")
async def generate(conv_id: str, request: Request) -> Any:
    from ..generate.settings import scrub
    from .api import _encoder, _if_match, decoded

    base = _if_match(request)
    ask = await decoded(request, Ask)
    if ask.mode not in ("reply", "continue") or not 1 <= ask.n <= 8:
        raise HTTPException(400, "mode: reply or continue; n: 1 to 8")
    pool = request.app.state.pool

    def read() -> tuple[Any, dict[str, Any] | None, Any, Any]:
        with pool.store() as store:
            e = store.entry(conv_id)
            return e, store.get_setting("endpoint"), store.get_setting("tokenizer"), store.get_setting("template")

    try:
        entry, setting, tokenizer, template = await run_in_threadpool(read)
    except NotFoundError as err:
        raise HTTPException(404, str(err)) from None
    if entry.deleted:
        raise HTTPException(410, f"{conv_id}: deleted")
    if entry.revision != base:
        raise HTTPException(412, "conflict: someone saved this chat since you opened it; reload it first")
    conv = entry.conversation
    n_msgs = len(conv.messages)
    index = n_msgs if ask.index is None else ask.index
    if not 0 <= index <= n_msgs or (ask.mode == "continue" and (index == n_msgs or conv.messages[index].role != "assistant")):
        raise HTTPException(400, f"index {index}: {'continue needs an assistant message' if ask.mode == 'continue' else 'out of range'}")
    ep = endpoint(request.app.state.config, setting)
    history = conv.messages[:index]
    params = {k: v for k, v in {"temperature": ask.temperature if ask.temperature is not None else ep.temperature,
                                "max_tokens": ask.max_tokens or ep.max_tokens or 512, "n": ask.n}.items() if v is not None}  # fmt: skip
    prompt = None
    if ask.mode == "continue":
        from .api import DEFAULT_TOKENIZER

        enc = _encoder(tokenizer or DEFAULT_TOKENIZER, template)
        dicts = [{"role": m.role, "content": m.content, **({"name": m.name} if m.name else {})} for m in history]
        prompt = enc.template.render(dicts, conv.tools or None, add_generation_prompt=True) + ask.prefix
    gen_id = secrets.token_hex(8)
    stopped = asyncio.Event()
    _running[gen_id] = stopped
    try:
        key = ep.api_key()
    except ChatloomError as err:
        raise HTTPException(409, str(err)) from None

    async def events() -> AsyncIterator[bytes]:
        import openai

        sdk = openai.AsyncOpenAI(base_url=ep.base_url, api_key=key or "none", max_retries=0, timeout=120)
        texts = [""] * ask.n
        calls: list[dict[int, dict[str, Any]]] = [{} for _ in range(ask.n)]
        finish: list[str | None] = [None] * ask.n
        stream: Any = None
        error: str | None = None
        started = time.time()
        try:
            yield _sse("start", {"gen": gen_id})
            extra = dict(ep.extra_body or {})
            if ask.mode == "reply":
                messages = [msgspec.to_builtins(m) for m in history]
                for m in messages:
                    m.pop("meta", None), m.pop("train", None)
                kw: dict[str, Any] = {"tools": conv.tools} if conv.tools else {}
                stream = await sdk.chat.completions.create(model=ep.model, messages=messages, stream=True, extra_body=extra or None,
                                                           **params, **kw)  # fmt: skip
            else:
                try:
                    stream = await sdk.completions.create(model=ep.model, prompt=prompt, stream=True, extra_body=extra or None,
                                                          **params, **({"suffix": ask.suffix} if ask.suffix else {}))  # fmt: skip
                except openai.BadRequestError:
                    if not ask.suffix:
                        raise
                    stream = await sdk.completions.create(model=ep.model, prompt=prompt, stream=True, extra_body=extra or None, **params)
            async for chunk in stream:
                if stopped.is_set():
                    break
                for choice in chunk.choices:
                    i = choice.index if choice.index < ask.n else 0
                    piece = (choice.delta.content if ask.mode == "reply" else choice.text) or ""
                    for call in (getattr(choice.delta, "tool_calls", None) or []) if ask.mode == "reply" else []:
                        slot = calls[i].setdefault(call.index, {"id": call.id, "type": "function", "function": {"name": "", "arguments": ""}})
                        if call.id:
                            slot["id"] = call.id
                        if call.function is not None:
                            slot["function"]["name"] += call.function.name or ""
                            slot["function"]["arguments"] += call.function.arguments or ""
                    if choice.finish_reason:
                        finish[i] = choice.finish_reason
                    if piece:
                        texts[i] += piece
                        yield _sse("delta", {"i": i, "text": piece})
        except openai.APIError as err:
            error = scrub(f"{type(err).__name__}: {getattr(err, 'message', err)}", [key] if key else [])
        except (OSError, ValueError) as err:
            error = scrub(f"{type(err).__name__}: {err}", [key] if key else [])
        finally:
            _running.pop(gen_id, None)
            was_stopped = stopped.is_set() or any(f is None for f in finish)
            saved = None
            if any(texts) or any(calls[0]):  # saved before anything is awaited: a closed page cancels every await here
                saved = _save(pool, conv, base, index, ask, texts, calls[0], ep, params, was_stopped, time.time() - started)
            with anyio.CancelScope(shield=True):
                if stream is not None:
                    await stream.close()  # the upstream request ends here, whether it finished, was stopped or the page left
                await sdk.close()
        if error is not None:
            yield _sse("error", {"error": error, **(saved or {})})
        elif saved is not None and "error" in saved:
            yield _sse("error", saved)
        else:
            yield _sse("done", {**(saved or {"revision": base}), "texts": texts, "stopped": was_stopped})

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip


def _save(pool: Any, conv: Any, base: int, index: int, ask: Ask, texts: list[str], calls: dict[int, dict[str, Any]], ep: Any,
          params: dict[str, Any], stopped: bool, seconds: float) -> dict[str, Any]:
    """The generated text (all of it, or what came before the stop) as a revision on ``base``."""
    generated = {"model": ep.model, "base_url": ep.base_url, "params": params, "mode": ask.mode, "stopped": stopped,
                 "seconds": round(seconds, 2), "by": "studio"}  # fmt: skip
    meta = {"generated": generated, **({"alternatives": texts[1:]} if len(texts) > 1 else {})}
    if ask.mode == "reply":
        msg = Message(role="assistant", content=texts[0], tool_calls=[calls[k] for k in sorted(calls)] or None, meta=meta)
        if index < len(conv.messages):
            conv.messages[index] = msg
        else:
            conv.messages.append(msg)
    else:
        old = conv.messages[index]
        old.content = ask.prefix + texts[0] + ask.suffix
        old.meta = {**old.meta, **meta}
    try:
        with pool.store() as store:
            return {"revision": store.put(conv, base_revision=base, op="generate")}
    except ConflictError as err:
        return {"error": f"{err}; the generated text is not saved", "text": texts[0]}
