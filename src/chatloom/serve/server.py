"""An OpenAI-compatible HTTP server for one model (FastAPI + uvicorn).

    sock = listen("127.0.0.1", 8000)
    app = create_app(Generator(*load("tiny:llama")), model_name="tiny:llama", token=None)
    serve(app, sock, host="127.0.0.1", on_start=print)

Routes: ``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/chat/completions``,
``POST /v1/completions`` (``stream: true`` on both: server-sent events, ``data: {chunk}`` lines
ending with ``data: [DONE]``) and ``GET /health`` (the generations running and waiting).

- Errors have OpenAI's shape and status: 400 a bad request, 401 a missing or wrong token, 404 an
  unknown model or route.
- With a token every request needs ``Authorization: Bearer TOKEN``; it is compared in constant
  time and never written to a log or an error.
- One worker thread runs the model; requests that wait together (and sample alike) run as one
  left-padded batch (``batching``). A client that disconnects stops its reply at the next token,
  streaming or not; the other rows of its batch go on.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import UsageError
from . import schema
from .generation import Completion, Generator, Sampling
from .schema import APIError, ChatRequest, CompletionRequest

log = logging.getLogger("chatloom.serve")
FIM = (("<fim_prefix>", "<fim_suffix>", "<fim_middle>"), ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"))
_END = object()
T = TypeVar("T")


def create_app(gen: Generator, *, model_name: str, token: str | None) -> FastAPI:
    created = int(time.time())
    vocab = gen.tok.get_vocab()
    fim = next((names for names in FIM if all(n in vocab for n in names)), None)

    async def authorize(request: Request) -> None:
        if token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise APIError(401, "Missing or incorrect API key: send the server's token as 'Authorization: Bearer TOKEN'",
                           code="invalid_api_key")

    app = FastAPI(title="chatloom", dependencies=[Depends(authorize)], docs_url=None, redoc_url=None, openapi_url=None)
    app.state.generator = gen

    @app.exception_handler(APIError)
    async def _api_error(request: Request, err: APIError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        if first.get("type") == "json_invalid":
            return _api_error_response(APIError(400, "We could not parse the JSON body of your request."))
        param = ".".join(loc) or None
        message = f"{param}: {first.get('msg', 'invalid value')}" if param else "The request body must be a JSON object."
        return _api_error_response(APIError(400, message, param=param))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if err.status_code == 404 else "invalid_request_error"
        return _api_error_response(APIError(err.status_code, f"{request.method} {request.url.path}: {err.detail}", type=kind))

    @app.exception_handler(UsageError)
    async def _usage(request: Request, err: UsageError) -> JSONResponse:
        return _api_error_response(APIError(400, str(err)))

    @app.exception_handler(Exception)
    async def _internal(request: Request, err: Exception) -> JSONResponse:
        log.exception("internal error on %s", request.url.path)
        return _api_error_response(APIError(500, "The server had an error while processing your request.", type="server_error"))

    def check_model(name: str) -> None:
        if name != model_name:
            raise APIError(404, f"The model '{name}' does not exist; this server has '{model_name}'", param="model",
                           code="model_not_found")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_name, "active_generations": gen.active, "waiting": gen.waiting,
                "cancelled_generations": gen.cancelled, "batches": gen.batcher.batches}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [schema.model_card(model_name, created)]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str) -> dict[str, Any]:
        check_model(name)
        return schema.model_card(model_name, created)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(req: ChatRequest, request: Request) -> Any:
        check_model(req.model)
        sampling = _sampling(req)
        messages = [m.as_template_input() for m in req.messages]
        prompt = await run_in_threadpool(gen.chat_prompt, messages, tools=req.tools, max_tokens=sampling.max_tokens)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return _sse(_chat_events(gen, request, model_name, prompt.ids, sampling, req.n, include_usage))
        cancel = threading.Event()
        done = await _guarded(request, cancel, lambda: gen.complete(prompt.ids, sampling, n=req.n, cancel=cancel))
        return schema.chat_response(model_name, done, len(prompt.ids))

    @app.post("/v1/completions", response_model=None)
    async def completions(req: CompletionRequest, request: Request) -> Any:
        check_model(req.model)
        sampling = _sampling(req)
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if not prompts:
            raise APIError(400, "prompt: give at least one prompt", param="prompt")
        if req.suffix:
            if fim is None:
                raise APIError(400, "this model does not support infill (its tokenizer has no fill-in-the-middle tokens)",
                               param="suffix")
            prompts = [f"{fim[0]}{p}{fim[1]}{req.suffix}{fim[2]}" for p in prompts]
        if req.best_of is not None and req.best_of < req.n:
            raise APIError(400, "best_of must be at least n", param="best_of")
        if req.stream and req.best_of and req.best_of > req.n:
            raise APIError(400, "best_of cannot be used with stream", param="best_of")
        ids = [await run_in_threadpool(gen.text_prompt, p) for p in prompts]
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return _sse(_text_events(gen, request, model_name, ids, prompts, sampling, req.n, req.echo, include_usage))
        cancel = threading.Event()
        choices: list[tuple[str, Completion, dict[str, Any] | None]] = []
        for prompt_text, prompt_ids in zip(prompts, ids):
            done = await _guarded(request, cancel, lambda p=prompt_ids: gen.complete(p, sampling, n=req.n, best_of=req.best_of,
                                                                                      cancel=cancel))
            head = prompt_text if req.echo else ""
            choices += [(head + c.text, c, schema.text_logprobs(c, len(head))) for c in done]
        return schema.text_response(model_name, choices, sum(len(i) for i in ids))

    return app


def _api_error_response(err: APIError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status)


def _sampling(req: ChatRequest | CompletionRequest) -> Sampling:
    from pydantic import ValidationError

    try:
        return req.to_sampling()
    except ValidationError as err:
        first = err.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise APIError(400, f"{param}: {first['msg']}", param=param) from None


async def _guarded(request: Request, cancel: threading.Event, work: Callable[[], T]) -> T:
    """Run ``work`` in a thread; a client that disconnects meanwhile sets ``cancel`` (also while
    its request still waits for the model: it then never starts)."""
    task = asyncio.ensure_future(run_in_threadpool(work))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.2)
            if done:
                return task.result()
            if await request.is_disconnected():
                cancel.set()
    finally:
        if not task.done():
            cancel.set()


def _sse(events: AsyncIterator[Any]) -> StreamingResponse:
    async def lines() -> AsyncIterator[bytes]:
        async for event in events:
            yield b"data: " + (event if isinstance(event, bytes) else orjson.dumps(event)) + b"\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _pieces(gen: Generator, request: Request, prompt_ids: list[int], sampling: Sampling,
                  cancel: threading.Event) -> AsyncIterator[str | Completion]:
    """The text of one streamed reply as it comes, then its ``Completion``; stops when the client leaves."""
    stream = gen.stream(prompt_ids, sampling, cancel)
    it = iter(stream)
    try:
        while True:
            piece = await _guarded(request, cancel, lambda: next(it, _END))
            if piece is _END:
                break
            if await request.is_disconnected():
                return
            yield piece
        assert stream.result is not None
        yield stream.result
    finally:
        cancel.set()  # a no-op once generation ended; else it stops it (the client left, or an error)


async def _chat_events(gen: Generator, request: Request, name: str, prompt_ids: list[int], sampling: Sampling, n: int,
                       include_usage: bool) -> AsyncIterator[Any]:
    cid, created = schema.new_id("chatcmpl"), int(time.time())
    results: list[Completion] = []
    for index in range(n):  # n > 1: the choices one after another, seeded seed, seed+1, …
        seeded = sampling if sampling.seed is None or index == 0 else sampling.model_copy(update={"seed": sampling.seed + index})
        yield schema.chat_chunk(cid, created, name, index, {"role": "assistant", "content": ""})
        async for piece in _pieces(gen, request, prompt_ids, seeded, threading.Event()):
            if isinstance(piece, Completion):
                results.append(piece)
                yield schema.chat_chunk(cid, created, name, index, {}, schema.finish(piece), schema.chat_logprobs(piece))
            else:
                yield schema.chat_chunk(cid, created, name, index, {"content": piece})
    if len(results) < n:
        return  # the client left
    if include_usage:
        yield {"id": cid, "object": "chat.completion.chunk", "created": created, "model": name, "choices": [],
               "usage": schema.usage(len(prompt_ids), results)}
    yield b"[DONE]"


async def _text_events(gen: Generator, request: Request, name: str, ids: list[list[int]], prompts: list[str],
                       sampling: Sampling, n: int, echo: bool, include_usage: bool) -> AsyncIterator[Any]:
    cid, created = schema.new_id("cmpl"), int(time.time())
    results: list[Completion] = []
    for p, (prompt_ids, prompt_text) in enumerate(zip(ids, prompts)):
        for i in range(n):
            index = p * n + i
            seeded = sampling if sampling.seed is None or i == 0 else sampling.model_copy(update={"seed": sampling.seed + i})
            if echo:
                yield schema.text_chunk(cid, created, name, index, prompt_text)
            async for piece in _pieces(gen, request, prompt_ids, seeded, threading.Event()):
                if isinstance(piece, Completion):
                    results.append(piece)
                    lp = schema.text_logprobs(piece, len(prompt_text) if echo else 0)
                    yield schema.text_chunk(cid, created, name, index, "", schema.finish(piece), lp)
                else:
                    yield schema.text_chunk(cid, created, name, index, piece)
    if len(results) < n * len(ids):
        return
    if include_usage:
        yield {"id": cid, "object": "text_completion", "created": created, "model": name, "choices": [],
               "usage": schema.usage(sum(len(i) for i in ids), results)}
    yield b"[DONE]"


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` (port 0: a free one); taken before the model loads, so
    that a port in use fails at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        # IPPROTO_TCP, not 0: asyncio switches Nagle off (TCP_NODELAY) only on sockets that say
        # so, and with Nagle on every response waited ~40 ms for the client's delayed ACK
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    except OSError as err:
        raise UsageError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(128)  # connections made before uvicorn starts wait in the backlog
    except OSError as err:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return sock


def serve(app: FastAPI, sock: socket.socket, *, host: str, on_start: Callable[[str], None]) -> None:
    """Serve ``app`` on ``sock`` (from ``listen``) until Ctrl+C; ``on_start(url)`` once it serves."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:  # serving, with Ctrl+C handled: only now is the URL printed
                on_start(url(host, sock.getsockname()[1]))

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            app.state.generator.batcher.cancel_all()  # streams end at their next token, not cut off after 2 s
            await super().shutdown(sockets=sockets)

    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    Server(config).run(sockets=[sock])
