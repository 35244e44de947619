"""An OpenAI-compatible HTTP server for tests: a real socket on 127.0.0.1 that the official ``openai``
SDK talks to unchanged, with faults on demand.

    with Stub(latency=0.1, fault=sequence("429", "drop")) as stub:
        client = openai.OpenAI(base_url=stub.base_url, api_key="x", max_retries=0)
        client.chat.completions.create(model="stub", messages=[{"role": "user", "content": "hi"}])
        # -> RateLimitError, then APIConnectionError, then "echo: hi"
        stub.completed()  # Counter({"hi": 1})

Routes (all under ``/v1``):

- ``GET /models``, ``GET /models/{id}``: one model, ``Stub(model=...)``.
- ``POST /chat/completions``: ``reply(body) -> str | dict`` answers (default ``"echo: " +`` the last
  user message). A dict may hold ``content``, ``tool_calls`` (``[{"name", "arguments"}]``, used when
  the request has ``tools``) and ``finish_reason``. ``n`` choices get `` #i`` appended for i > 0;
  ``max_tokens`` (or ``max_completion_tokens``) cuts the reply to that many words, finish_reason
  ``length``. Tokens are words: ``prompt_tokens`` counts the words of every message. ``stream: true``
  answers server-sent events, word by word (``stream_options.include_usage`` adds the usage chunk).
- ``/files`` and ``/batches``: the Batch API (upload, create, retrieve, list, cancel, content). A
  batch is ``validating`` when created, ``in_progress`` for its first ``batch_polls`` retrievals,
  then runs every line through the same completion and is ``completed`` (``batch_polls=0``: done
  at once). As OpenAI does: successful lines go to ``output_file_id``; lines answered with an
  error status go to ``error_file_id`` as ``{"response": {"status_code": 400, "body": {"error":
  ...}}, "error": null}``; lines never run (``batch_fail`` returned ``"expired"``) go there too as
  ``{"response": null, "error": {"code": "batch_expired", ...}}`` and the batch ends ``expired``.
  Either file id is null when it would be empty. A bad input file fails the batch with
  ``errors.data`` (``invalid_json_line``, ``duplicate_custom_id``, ``url_mismatch``).
  ``batches_supported=False`` answers 404 there, as vLLM does.

Faults apply to chat completions only. ``fault(n, body)`` is asked for each request (``n`` counts
chat completions from 0, across restarts) and answers None (normal) or one of:

- ``"429"``: rate limited, with ``Retry-After`` (whole seconds, rounded up) and ``retry-after-ms``
  from ``retry_after``; ``"quota"``: 429 ``insufficient_quota`` without them;
- ``"500"``, ``"503"`` or any other status code: an error in OpenAI's shape;
- ``"429-garbled"``: rate limited with ``Retry-After: soon`` (neither seconds nor a date);
- ``"html"``: status 200 with an HTML page (a proxy's error page), not a completion;
- ``"drop"``: the connection is closed without a response;
- ``"slow"``: the answer comes after ``slow_seconds`` more (for client timeouts).

``latency`` delays every chat completion, faults included. ``stop()`` closes the listening socket
and every open connection (requests in flight get no answer), and ``start()`` listens again on the
same port: a server that dies mid-run and comes back. ``upstream=URL`` proxies chat completions
(after the faults) and the model list to a real OpenAI-compatible server instead of ``reply``.

Every request is logged as a ``Request`` (time, method, path, body, outcome, n, headers): see
``requests``, ``requests_for``, ``completed`` and ``max_in_flight``.
"""

from __future__ import annotations

import json
import math
import re
import socket
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any

import httpx

Fault = Callable[[int, dict[str, Any]], str | None]
Reply = Callable[[dict[str, Any]], str | dict[str, Any]]

#: outcomes of a request that produced a completion
COMPLETED = frozenset({"ok", "slow", "batch"})

_EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
_ERRORS = {  # status -> (type, code, message) as OpenAI words them
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    404: ("invalid_request_error", None, "Not found."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again in a moment."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


# -- what a test reads ------------------------------------------------------------------------


def last_user(body: dict[str, Any] | None) -> str | None:
    """The text of the last user message of a chat request (its parts joined), or None."""
    for message in reversed((body or {}).get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message.get("content"))
    return None


@dataclass
class Request:
    """One request the stub received. ``outcome`` is ``"pending"`` while it is in flight, then
    ``"ok"``, ``"slow"``, ``"drop"``, ``"stopped"`` (the stub stopped under it), ``"unsent"`` (the
    answer could not be written: the stub stopped as it was sent), ``"batch"`` (a batch line that
    succeeded), ``"batch-failed"``, ``"batch-expired"``, or the status code sent."""

    time: float
    method: str
    path: str
    body: Any
    n: int | None = None  # the chat completion counter the fault plan saw
    outcome: str = "pending"
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str | None:
        return last_user(self.body) if isinstance(self.body, dict) else None


# -- fault plans ------------------------------------------------------------------------------


def sequence(*kinds: str | None) -> Fault:
    """Request ``n`` meets ``kinds[n]``; every request after them is normal."""
    return lambda n, body: kinds[n] if n < len(kinds) else None


def every(k: int, kind: str, *, offset: int = 0) -> Fault:
    """Every ``k``-th request (``n % k == offset``) meets ``kind``."""
    return lambda n, body: kind if n % k == offset else None


def for_content(kind: str, *contents: str, times: int = 1) -> Fault:
    """The first ``times`` requests whose last user message is one of ``contents`` meet ``kind``."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def plan(n: int, body: dict[str, Any]) -> str | None:
        key = last_user(body)
        if key not in contents:
            return None
        with lock:
            seen[key] += 1
            return kind if seen[key] <= times else None

    return plan


# -- the server -------------------------------------------------------------------------------


class _Drop(Exception):
    """Close the connection without an answer; ``outcome`` goes to the log."""

    def __init__(self, outcome: str):
        super().__init__(outcome)
        self.outcome = outcome


@dataclass
class _Answer:
    status: int
    body: bytes | Iterator[bytes]  # an iterator is sent chunked
    headers: dict[str, str] = field(default_factory=dict)
    outcome: str | None = None  # None: "ok" for 2xx, else the status
    entry: Request | None = None  # the log's entry: "unsent" when the answer cannot be written


def _json(status: int, obj: Any, headers: dict[str, str] | None = None, outcome: str | None = None) -> _Answer:
    return _Answer(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})}, outcome)


def _error_body(status: int, message: str | None = None, *, type: str | None = None, code: str | None = None) -> dict:
    default_type, default_code, default_message = _ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, f"Error {status}.")
    )
    return {
        "error": {
            "message": message or default_message,
            "type": type or default_type,
            "param": None,
            "code": code or default_code,
        }
    }


def _error(status: int, message: str | None = None, **kwargs: Any) -> _Answer:
    return _json(status, _error_body(status, message, **kwargs), {"x-request-id": _id("req_")})


def _not_found() -> _Answer:
    """A route the server lacks, as FastAPI servers (vLLM, ``chatloom serve``) answer it."""
    return _json(404, {"detail": "Not Found"})


def _id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def _words(text: str | None) -> int:
    return len((text or "").split())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 makes a burst of connections wait on SYN retries

    def __init__(self, port: int, stub: Stub):
        self.stub = stub
        self.stopped = threading.Event()
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:
        TCPServer.server_bind(self)  # HTTPServer's would look up the host's name
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        try:
            raw = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        try:
            answer = self.server.stub._handle(self.command, self.path, dict(self.headers.items()), raw, self.server.stopped)
        except _Drop:
            self.close_connection = True
            with suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            self._send(answer)
        except OSError:
            self.close_connection = True
            if answer.entry is not None:  # an answer the stop cut off is no completion (logged before it is sent,
                answer.entry.outcome = "unsent"  # so that a client that has it finds it logged)

    do_POST = do_DELETE = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, answer: _Answer) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if isinstance(answer.body, bytes):
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in answer.body:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")


def _multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """``{name: (filename, bytes)}`` of a multipart/form-data body."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        return {}
    fields = {}
    for part in raw.split(b"--" + match.group(1).encode())[1:-1]:
        head, _, data = part.partition(b"\r\n\r\n")
        disposition = head.decode("utf-8", "replace")
        name = re.search(r'\bname="([^"]*)"', disposition)
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        if name:
            fields[name.group(1)] = (filename.group(1) if filename else None, data.removesuffix(b"\r\n"))
    return fields


class Stub:
    """An OpenAI-compatible server on 127.0.0.1 in a background thread (see the module's docstring).

    :param model: the id ``/v1/models`` lists
    :param reply: ``reply(body) -> str | dict``; the default echoes the last user message
    :param api_key: when set, every request needs ``Authorization: Bearer <api_key>`` (else 401)
    :param echo_key: the 401's message quotes the key it refused (as some servers do)
    :param strict_model: answer 404 ``model_not_found`` to a chat completion for another model
    :param latency: seconds before answering each chat completion
    :param fault: ``fault(n, body) -> kind | None``, asked for each chat completion
    :param retry_after: the seconds a ``"429"`` asks to wait
    :param slow_seconds: how much later a ``"slow"`` request is answered
    :param batches_supported: False answers 404 on ``/v1/files`` and ``/v1/batches``
    :param batch_polls: retrievals that answer ``in_progress`` before a batch runs (0: runs when created)
    :param batch_fail: ``batch_fail(custom_id) -> bool | "expired"``: True puts that line in the error
        file with status 400; ``"expired"`` leaves it unrun and the batch ``expired``
    :param batch_reversed: write output lines in reverse input order (OpenAI promises no order)
    :param upstream: proxy chat completions and the model list to this base URL (``.../v1``)
    :param upstream_api_key: the key sent upstream; by default the request's own Authorization
    :param port: the port to listen on (0: a free one, kept across ``stop()`` and ``start()``)

    Every parameter is also an attribute a test may change while the stub runs.
    """

    def __init__(
        self,
        *,
        model: str = "stub-model",
        reply: Reply | None = None,
        api_key: str | None = None,
        echo_key: bool = False,
        strict_model: bool = False,
        latency: float = 0.0,
        fault: Fault | None = None,
        retry_after: float = 1.0,
        slow_seconds: float = 5.0,
        batches_supported: bool = True,
        batch_polls: int = 1,
        batch_fail: Callable[[str], bool | str] | None = None,
        batch_reversed: bool = False,
        upstream: str | None = None,
        upstream_api_key: str | None = None,
        port: int = 0,
    ):
        self.model = model
        self.reply = reply or (lambda body: f"echo: {last_user(body) or ''}")
        self.api_key = api_key
        self.echo_key = echo_key
        self.strict_model = strict_model
        self.latency = latency
        self.fault = fault
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self.batches_supported = batches_supported
        self.batch_polls = batch_polls
        self.batch_fail = batch_fail
        self.batch_reversed = batch_reversed
        self.upstream = upstream.rstrip("/") if upstream else None
        self.upstream_api_key = upstream_api_key
        self.port = port
        self._lock = threading.RLock()  # the log, the counters, files and batches
        self._life = threading.Lock()  # start and stop
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None
        self._log: list[Request] = []
        self._n = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._files: dict[str, dict[str, Any]] = {}
        self._contents: dict[str, bytes] = {}
        self._batches: dict[str, dict[str, Any]] = {}
        self._polls: Counter[str] = Counter()

    # -- lifecycle

    def start(self) -> Stub:
        """Listen (again) on ``port``; a no-op while running."""
        with self._life:
            if self._server is not None:
                return self
            server = _Server(self.port, self)
            self.port = server.server_address[1]
            if self.upstream and self._http is None:
                self._http = httpx.Client(timeout=httpx.Timeout(600, connect=5))
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"openai-stub:{self.port}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close every connection; requests in flight get no answer."""
        with self._life:
            server, thread, http = self._server, self._thread, self._http
            self._server = self._thread = self._http = None
        if server is None:
            return
        server.stopped.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join()
        if http is not None:
            http.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Stub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- what a test reads

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._log)

    def requests_for(
        self, predicate: Callable[[Request], bool] | None = None, *, path: str | None = None, outcome: str | None = None
    ) -> list[Request]:
        """The logged requests that match ``predicate``, ``path`` (``"/v1/chat/completions"``) and ``outcome``."""
        return [
            r
            for r in self.requests
            if (predicate is None or predicate(r))
            and (path is None or r.path == path)
            and (outcome is None or r.outcome == outcome)
        ]

    def completed(self, key: Callable[[Request], Any] = lambda r: r.key) -> Counter:
        """How many completions each key got (by default the last user message), batch lines included."""
        return Counter(key(r) for r in self.requests if r.outcome in COMPLETED and r.path == "/v1/chat/completions")

    def outcomes(self) -> Counter[str]:
        """How many chat completion requests ended each way."""
        return Counter(r.outcome for r in self.requests if r.path == "/v1/chat/completions")

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The most chat completions the stub was answering at once."""
        return self._max_in_flight

    @property
    def batches(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(b) for b in self._batches.values()]

    def file_content(self, file_id: str) -> bytes:
        with self._lock:
            return self._contents[file_id]

    def reset(self) -> None:
        """Forget the log and the counters (files and batches stay)."""
        with self._lock:
            self._log.clear()
            self._n = self._max_in_flight = 0

    # -- dispatch (handler threads)

    def _handle(self, method: str, target: str, headers: dict[str, str], raw: bytes, stopped: threading.Event) -> _Answer:
        path = target.split("?", 1)[0].rstrip("/")
        lower = {k.lower(): v for k, v in headers.items()}
        body: Any = None
        if raw and "multipart/form-data" not in lower.get("content-type", ""):
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
        entry = Request(time.time(), method, path, body, headers=lower)
        with self._lock:
            self._log.append(entry)
        try:
            answer = self._route(method, path, lower, body, raw, entry, stopped)
        except _Drop as drop:
            entry.outcome = drop.outcome
            raise
        except Exception as exc:
            traceback.print_exc()
            answer = _error(500, f"openai_stub: {type(exc).__name__}: {exc}")
        entry.outcome = answer.outcome or ("ok" if answer.status < 300 else str(answer.status))
        answer.entry = entry
        return answer

    def _route(
        self, method: str, path: str, headers: dict[str, str], body: Any, raw: bytes, entry: Request, stopped: threading.Event
    ) -> _Answer:
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            presented = (headers.get("authorization") or "").removeprefix("Bearer ")
            # echo_key: quote the refused key back, as some servers do (a client must not repeat it)
            message = f"Incorrect API key provided: {presented}." if self.echo_key else "Incorrect API key provided."
            return _error(401, message, code="invalid_api_key")
        parts = path.split("/")[1:]  # "", "v1", ...
        if parts[:1] != ["v1"]:
            return _not_found()
        parts = parts[1:]
        if method == "POST" and parts == ["chat", "completions"]:
            if not isinstance(body, dict):
                return _error(400, "We could not parse the JSON body of your request.")
            return self._chat(body, headers, entry, stopped)
        if method == "GET" and parts[:1] == ["models"]:
            return self._models(parts[1:], headers)
        if parts[:1] in (["files"], ["batches"]):
            if not self.batches_supported:
                return _not_found()
            if parts[0] == "files":
                return self._files_route(method, parts[1:], headers, raw)
            return self._batches_route(method, parts[1:], body)
        return _not_found()

    # -- models

    def _models(self, rest: list[str], headers: dict[str, str]) -> _Answer:
        if self.upstream:
            return self._relay("GET", "/models" + "".join("/" + p for p in rest), None, headers)
        model = {"id": self.model, "object": "model", "created": 0, "owned_by": "openai-stub"}
        if not rest:
            return _json(200, {"object": "list", "data": [model]})
        if rest == [self.model]:
            return _json(200, model)
        return _error(
            404, f"The model `{'/'.join(rest)}` does not exist or you do not have access to it.", code="model_not_found"
        )

    # -- chat completions

    def _chat(self, body: dict[str, Any], headers: dict[str, str], entry: Request, stopped: threading.Event) -> _Answer:
        with self._lock:
            entry.n = n = self._n
            self._n += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            fault = self.fault
            kind = fault(n, body) if fault is not None else None
            if self.latency:
                self._sleep(self.latency, stopped)
            if kind == "drop":
                raise _Drop("drop")
            if kind == "slow":
                self._sleep(self.slow_seconds, stopped)
            elif kind == "429":
                seconds = self.retry_after
                retry = {"Retry-After": str(math.ceil(seconds)), "retry-after-ms": str(round(seconds * 1000))}
                return _json(429, _error_body(429), {"x-request-id": _id("req_"), **retry})
            elif kind == "429-garbled":  # a Retry-After that is neither seconds nor a date
                return _json(429, _error_body(429), {"Retry-After": "soon"})
            elif kind == "html":  # a proxy's error page, with status 200
                return _Answer(200, b"<html><body>502 Bad Gateway</body></html>", {"Content-Type": "text/html"})
            elif kind == "quota":
                message = "You exceeded your current quota, please check your plan and billing details."
                return _error(429, message, type="insufficient_quota", code="insufficient_quota")
            elif kind is not None:
                return _error(int(kind))
            if self.upstream:
                answer = self._relay("POST", "/chat/completions", body, headers)
            elif body.get("stream"):
                status, result = self._complete(body)
                answer = _json(status, result) if status != 200 else self._stream(body, result)
            else:
                answer = _json(*self._complete(body), {"x-request-id": _id("req_")})
            if kind == "slow":
                answer.outcome = "slow"
            return answer
        finally:
            with self._lock:
                self._in_flight -= 1

    @staticmethod
    def _sleep(seconds: float, stopped: threading.Event) -> None:
        if stopped.wait(seconds):
            raise _Drop("stopped")

    def _complete(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``(status, chat.completion or error)`` from ``reply``: the answer to one request."""
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return 400, _error_body(400, "'messages' must be a non-empty array.")
        model = body.get("model") or self.model
        if self.strict_model and model != self.model:
            return 404, _error_body(
                404, f"The model `{model}` does not exist or you do not have access to it.", code="model_not_found"
            )
        n = body.get("n") or 1
        if not isinstance(n, int) or not 1 <= n <= 128:
            return 400, _error_body(400, f"Invalid 'n': {n!r}.")
        value = self.reply(body)
        value = {"content": value} if isinstance(value, str) else dict(value)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        choices, completion_tokens = [], 0
        for i in range(n):
            content = value.get("content")
            finish = value.get("finish_reason") or "stop"
            if content is not None and i:
                content = f"{content} #{i}"
            if content is not None and limit and _words(content) > limit:
                content, finish = " ".join(content.split()[:limit]), "length"
            message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
            if body.get("tools") and value.get("tool_calls"):
                message["tool_calls"] = [_tool_call(call) for call in value["tool_calls"]]
                finish = value.get("finish_reason") or "tool_calls"
                completion_tokens += sum(_words(call["function"]["arguments"]) for call in message["tool_calls"])
            completion_tokens += _words(content)
            choices.append({"index": i, "message": message, "logprobs": None, "finish_reason": finish})
        prompt_tokens = sum(_words(_text(m.get("content"))) for m in messages if isinstance(m, dict))
        return 200, {
            "id": _id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": None,
        }

    def _stream(self, body: dict[str, Any], completion: dict[str, Any]) -> _Answer:
        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            base = {
                "id": completion["id"],
                "object": "chat.completion.chunk",
                "created": completion["created"],
                "model": completion["model"],
            }
            return b"data: " + json.dumps({**base, "choices": choices, **extra}).encode() + b"\n\n"

        def events() -> Iterator[bytes]:
            for choice in completion["choices"]:
                i, message = choice["index"], choice["message"]
                yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
                for piece in re.findall(r"\s*\S+", message["content"] or ""):
                    yield chunk([{"index": i, "delta": {"content": piece}, "finish_reason": None}])
                for k, call in enumerate(message.get("tool_calls") or []):
                    yield chunk([{"index": i, "delta": {"tool_calls": [{"index": k, **call}]}, "finish_reason": None}])
                yield chunk([{"index": i, "delta": {}, "finish_reason": choice["finish_reason"]}])
            if (body.get("stream_options") or {}).get("include_usage"):
                yield chunk([], usage=completion["usage"])
            yield b"data: [DONE]\n\n"

        return _Answer(
            200, events(), {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "x-request-id": _id("req_")}
        )

    # -- proxy

    def _relay(self, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]) -> _Answer:
        status, content, upstream_headers = self._upstream(method, path, body, headers)
        keep = ("content-type", "retry-after", "retry-after-ms", "x-request-id")
        return _Answer(status, content, {k: v for k, v in upstream_headers.items() if k.lower() in keep})

    def _upstream(
        self, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        http = self._http
        if http is None:
            raise _Drop("stopped")
        send = {"Content-Type": "application/json"}
        if self.upstream_api_key:
            send["Authorization"] = f"Bearer {self.upstream_api_key}"
        elif self.api_key is None and "authorization" in headers:
            send["Authorization"] = headers["authorization"]
        try:
            response = http.request(method, self.upstream + path, json=body, headers=send)
        except httpx.HTTPError as exc:
            return (
                502,
                json.dumps(_error_body(502, f"openai_stub: upstream {self.upstream}: {exc!r}")).encode(),
                {"Content-Type": "application/json"},
            )
        return response.status_code, response.content, dict(response.headers)

    def _answer_line(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A batch line's answer: the built-in reply, or upstream's."""
        if not self.upstream:
            return self._complete({**body, "stream": False})
        status, content, _ = self._upstream("POST", "/chat/completions", {**body, "stream": False}, {})
        try:
            return status, json.loads(content)
        except ValueError:
            return status, _error_body(status, content.decode("utf-8", "replace"))

    # -- files

    def _files_route(self, method: str, rest: list[str], headers: dict[str, str], raw: bytes) -> _Answer:
        if method == "POST" and not rest:
            fields = _multipart(headers.get("content-type", ""), raw)
            if "file" not in fields or "purpose" not in fields:
                return _error(400, "A file and a purpose are required (multipart/form-data).")
            filename, data = fields["file"]
            return _json(200, self._add_file(filename or "upload", data, fields["purpose"][1].decode()))
        if method == "GET" and not rest:
            with self._lock:
                files = list(self._files.values())
            return _json(200, {"object": "list", "data": files, "has_more": False, "first_id": None, "last_id": None})
        with self._lock:
            file = self._files.get(rest[0]) if rest else None
            if file is None:
                return _error(404, f"No such File object: {rest[0] if rest else ''}")
            if method == "GET" and rest[1:] == ["content"]:
                return _Answer(200, self._contents[file["id"]], {"Content-Type": "application/octet-stream"})
            if method == "GET" and len(rest) == 1:
                return _json(200, file)
            if method == "DELETE" and len(rest) == 1:
                del self._files[file["id"]], self._contents[file["id"]]
                return _json(200, {"id": file["id"], "object": "file", "deleted": True})
        return _not_found()

    def _add_file(self, filename: str, data: bytes, purpose: str) -> dict[str, Any]:
        file = {
            "id": _id("file-"),
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }
        with self._lock:
            self._files[file["id"]] = file
            self._contents[file["id"]] = data
        return file

    # -- batches

    def _batches_route(self, method: str, rest: list[str], body: Any) -> _Answer:
        if method == "POST" and not rest:
            return self._create_batch(body if isinstance(body, dict) else {})
        if method == "GET" and not rest:
            with self._lock:
                batches = [dict(b) for b in reversed(self._batches.values())]
            ids = [b["id"] for b in batches]
            return _json(
                200,
                {
                    "object": "list",
                    "data": batches,
                    "has_more": False,
                    "first_id": ids[0] if ids else None,
                    "last_id": ids[-1] if ids else None,
                },
            )
        with self._lock:
            batch = self._batches.get(rest[0]) if rest else None
        if batch is None:
            return _error(404, f"No batch found with id '{rest[0] if rest else ''}'.")
        if method == "GET" and len(rest) == 1:
            return _json(200, self._poll(batch["id"]))
        if method == "POST" and rest[1:] == ["cancel"]:
            with self._lock:
                if batch["status"] in ("validating", "in_progress"):
                    now = int(time.time())
                    batch.update(status="cancelled", cancelling_at=now, cancelled_at=now)
                return _json(200, dict(batch))
        return _not_found()

    def _create_batch(self, body: dict[str, Any]) -> _Answer:
        input_file_id, endpoint = body.get("input_file_id"), body.get("endpoint")
        if endpoint != "/v1/chat/completions":
            return _error(400, f"Invalid endpoint {endpoint!r}: only /v1/chat/completions is supported here.")
        if body.get("completion_window") != "24h":
            return _error(400, "Invalid completion_window: only '24h' is supported.")
        with self._lock:
            if input_file_id not in self._files:
                return _error(404, f"No such File object: {input_file_id}")
        now = int(time.time())
        batch = {
            "id": _id("batch_"),
            "object": "batch",
            "endpoint": endpoint,
            "model": None,
            "errors": None,
            "input_file_id": input_file_id,
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + 24 * 3600,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "usage": None,
            "metadata": body.get("metadata"),
        }
        with self._lock:
            self._batches[batch["id"]] = batch
        return _json(200, self._poll(batch["id"], created=True))

    def _poll(self, batch_id: str, created: bool = False) -> dict[str, Any]:
        """The batch as a retrieval sees it, moving it on: ``batch_polls`` retrievals say
        ``in_progress``, the next runs it."""
        with self._lock:
            batch = self._batches[batch_id]
            if batch["status"] not in ("validating", "in_progress"):
                return dict(batch)
            if not created and self._polls[batch_id] < self.batch_polls:
                self._polls[batch_id] += 1
                batch.update(status="in_progress", in_progress_at=batch["in_progress_at"] or int(time.time()))
                return dict(batch)
            if created and self.batch_polls > 0:
                return dict(batch)
            batch.update(
                status="finalizing", in_progress_at=batch["in_progress_at"] or int(time.time()), finalizing_at=int(time.time())
            )
            data = self._contents[batch["input_file_id"]]
        self._run_batch(batch, data)
        with self._lock:
            return dict(batch)

    def _run_batch(self, batch: dict[str, Any], data: bytes) -> None:
        items, errors, seen = [], [], set()
        for number, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError:
                errors.append(_line_error("invalid_json_line", number, "This line is not parseable as valid JSON."))
                continue
            custom_id = item.get("custom_id") if isinstance(item, dict) else None
            if not isinstance(custom_id, str) or not isinstance(item.get("body"), dict):
                errors.append(_line_error("invalid_request", number, "Each line needs a custom_id and a body."))
            elif custom_id in seen:
                message = "The custom_id for this request is a duplicate of another request."
                errors.append(_line_error("duplicate_custom_id", number, message, "custom_id"))
            elif item.get("url") != batch["endpoint"]:
                message = "The provided URL for this request does not match the batch endpoint."
                errors.append(_line_error("url_mismatch", number, message, "url"))
            else:
                items.append(item)
            seen.add(custom_id)
        now = int(time.time())
        if errors or not items:
            errors = errors or [_line_error("empty_file", None, "The batch input file is empty.")]
            with self._lock:
                batch.update(status="failed", failed_at=now, errors={"object": "list", "data": errors})
            return
        output, failed, expired = [], [], False
        usage = {"input_tokens": 0, "output_tokens": 0}
        for item in items:
            custom_id, body = item["custom_id"], item["body"]
            verdict = self.batch_fail(custom_id) if self.batch_fail is not None else False
            line: dict[str, Any] = {"id": _id("batch_req_"), "custom_id": custom_id}
            if verdict == "expired":
                expired = True
                failed.append({**line, "response": None, "error": {"code": "batch_expired", "message": _EXPIRED_MESSAGE}})
                self._log_line(body, "batch-expired")
                continue
            if verdict:
                status, result = 400, _error_body(400, f"openai_stub: batch_fail({custom_id!r})")
            else:
                status, result = self._answer_line(body)
            line.update(response={"status_code": status, "request_id": _id("req_"), "body": result}, error=None)
            if status == 200:
                output.append(line)
                usage["input_tokens"] += result.get("usage", {}).get("prompt_tokens", 0)
                usage["output_tokens"] += result.get("usage", {}).get("completion_tokens", 0)
            else:
                failed.append(line)
            self._log_line(body, "batch" if status == 200 else "batch-failed")
        if self.batch_reversed:
            output.reverse()
            failed.reverse()
        out_id = self._add_file(f"{batch['id']}_output.jsonl", _jsonl(output), "batch_output")["id"] if output else None
        err_id = self._add_file(f"{batch['id']}_error.jsonl", _jsonl(failed), "batch_output")["id"] if failed else None
        now = int(time.time())
        with self._lock:
            batch.update(
                status="expired" if expired else "completed",
                model=items[0]["body"].get("model"),
                output_file_id=out_id,
                error_file_id=err_id,
                request_counts={"total": len(items), "completed": len(output), "failed": len(failed)},
                usage={
                    **usage,
                    "total_tokens": usage["input_tokens"] + usage["output_tokens"],
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens_details": {"reasoning_tokens": 0},
                },
                **({"expired_at": now} if expired else {"completed_at": now}),
            )

    def _log_line(self, body: dict[str, Any], outcome: str) -> None:
        with self._lock:
            self._log.append(Request(time.time(), "POST", "/v1/chat/completions", body, outcome=outcome))


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    """``{"name", "arguments"}`` (arguments a dict or a JSON string) or OpenAI's own shape -> OpenAI's shape."""
    function = call.get("function", call)
    arguments = function.get("arguments", {})
    return {
        "id": call.get("id") or _id("call_"),
        "type": "function",
        "function": {"name": function["name"], "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)},
    }


def _line_error(code: str, line: int | None, message: str, param: str | None = None) -> dict[str, Any]:
    """An entry of a failed batch's ``errors.data``."""
    return {"code": code, "line": line, "message": message, "param": param}


def _jsonl(lines: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)
