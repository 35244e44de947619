"""The studio's web app: ``create_app(dataset, ...)`` → a FastAPI app serving the pages
(``pages.py``), the JSON API (``api.py``), the LLM assist (``assist.py``) and the static files.

Every request, static files included, passes ``Guard`` first (a pure ASGI middleware, so
streams are not buffered):

- **Host**: only the names the server was started for (no DNS rebinding onto a loopback studio);
- **token** (when the studio is not on loopback, or one was given): ``Authorization: Bearer T``,
  or the cookie a ``?token=T`` link sets; compared in constant time, never logged;
- **CSRF**: a write (POST, PUT, PATCH, DELETE) from a browser carries ``X-CSRF-Token``, the
  value each page holds in ``<meta name=csrf>``; a cross-site page cannot read it. A write
  with a bearer token needs none (a browser never adds that header on its own), nor one from a
  program that sends ``X-Chatloom-Client`` (a cross-site page cannot send a header of its own
  without a CORS preflight, which this server never grants; and its Origin would not match).

The store is read and written through a small pool of connections (``Pool``), each a ``Store``
of its own: SQLite in WAL mode lets the readers run beside the one writer.
"""

from __future__ import annotations

import asyncio
import hmac
import queue
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.routing import Match

from ..errors import ChatloomError
from ..store import Store

HERE = Path(__file__).parent
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
TOKEN_COOKIE = "chatloom_token"


class Pool:
    """``size`` open ``Store``s of one dataset, lent one request at a time. Their commits leave
    the WAL's checkpoint to ``Checkpointer`` (up to ``BEHIND`` pages, past which a commit
    checkpoints, as SQLite's own default does at 1,000)."""

    BEHIND = 20_000  # 80 MB of 4 KiB pages: the background checkpoint has fallen behind

    def __init__(self, path: str | Path, size: int = 4):
        self.path = Path(path)
        self._free: queue.Queue[Store] = queue.Queue()
        for _ in range(size):
            store = Store(self.path)
            store.checkpoint_after(self.BEHIND)
            self._free.put(store)

    @contextmanager
    def store(self) -> Iterator[Store]:
        with self._lent(self._free.get()) as s:
            yield s

    @contextmanager
    def free(self) -> Iterator[Store | None]:
        """A store when one is free now, else None: never waits (for the event loop's own reads)."""
        try:
            s = self._free.get_nowait()
        except queue.Empty:
            yield None
            return
        with self._lent(s):
            yield s

    @contextmanager
    def _lent(self, s: Store) -> Iterator[Store]:
        try:
            yield s
        finally:
            s.reset()  # a request that failed mid-read: its snapshot ends here
            self._free.put(s)

    def close(self) -> None:
        while not self._free.empty():
            self._free.get_nowait().close()


class Checkpointer:
    """The WAL checkpointed in the background every ``every`` seconds, on a connection of its
    own, so that no save waits for it: at 1,000,000 chats, the commit that SQLite makes
    checkpoint (each WAL of 1,000 pages, every 25th save or so) took 50–290 ms, where a save
    takes 5–9 ms. Passive: it never waits for a reader or blocks a writer; what a reader's
    snapshot still needs is copied next time. Writes from other processes are copied too.
    Started and stopped by the app's lifespan (a server that serves it)."""

    def __init__(self, path: Path, every: float = 0.5):
        self.path, self.every = path, every
        self._stop = threading.Event()
        self.passes = 0  # passes that found pages in the WAL (tests look)
        self._thread = threading.Thread(target=self._run, name="studio-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        store: Store | None = None
        try:
            while not self._stop.wait(self.every):
                try:
                    if store is None:
                        store = Store(self.path)
                    log, _ = store.checkpoint()
                except ChatloomError:  # busy, or the file not there for a moment: next time
                    continue
                self.passes += log > 0
        finally:
            if store is not None:
                store.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


class LiveCount:
    """How many chats the dataset holds, as the header shows it: counting a million rows takes
    0.3–1.2 s, so a page reads the last count and a count older than ``max_age`` seconds is
    redone in the background (the first one is waited for). One count at a time, on a
    connection of its own: fifty pages asking at once do not start fifty counts, each with a
    page cache of its own (they did: 470 MiB of SQLite memory at the peak)."""

    def __init__(self, path: Path, max_age: float = 5.0):
        self.path, self.max_age = path, max_age
        self.value: int | None = None
        self._at = 0.0
        self._running = False
        self._lock = threading.Lock()  # guards _running
        self._counting = threading.Lock()  # one count at a time
        self._store: Store | None = None

    def get(self) -> int:
        if self.value is None:
            self._count()
        elif time.monotonic() - self._at > self.max_age:
            with self._lock:
                start, self._running = not self._running, True
            if start:
                threading.Thread(target=self._count, name="studio-count", daemon=True).start()
        return self.value or 0

    def _count(self) -> None:
        with self._counting:
            try:
                if self.value is None or time.monotonic() - self._at > self.max_age:
                    if self._store is None:
                        self._store = Store(self.path)
                    self.value = self._store.count()
                    self._at = time.monotonic()
            finally:
                with self._lock:
                    self._running = False

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


@dataclass
class Config:
    """What a studio serves and how; ``endpoint``: the LLM assist's (see ``assist.endpoint``)."""

    dataset: Path
    token: str | None = None
    hosts: set[str] = field(default_factory=set)  # the Host names accepted ("" + port added)
    endpoint: dict[str, Any] = field(default_factory=dict)  # from the command line: wins over the dataset's settings
    upload_limit: int = 512 << 20
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))


class Guard:
    """The checks every request passes (see the module docstring)."""

    def __init__(self, app: Any, config: Config):
        self.app, self.config = app, config

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        cfg = self.config
        host = headers.get("host", "")
        if cfg.hosts and host not in cfg.hosts:
            return await _plain(send, 421, "this studio does not answer to that host name")
        bearer = headers.get("authorization", "")
        by_bearer = False
        if cfg.token is not None:
            given = bearer[7:] if bearer.lower().startswith("bearer ") else None
            cookie = _cookies(headers.get("cookie", "")).get(TOKEN_COOKIE)
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            if given is not None and hmac.compare_digest(given.encode(), cfg.token.encode()):
                by_bearer = True
            elif cookie is not None and hmac.compare_digest(cookie.encode(), cfg.token.encode()):
                pass
            elif scope["method"] == "GET" and "token" in query and hmac.compare_digest(query["token"].encode(), cfg.token.encode()):
                rest = urlencode({k: v for k, v in query.items() if k != "token"})
                raw = scope.get("raw_path") or scope["path"].encode()  # as sent: %2F stays %2F
                target = raw.decode("latin-1") + ("?" + rest if rest else "")
                cookie_header = f"{TOKEN_COOKIE}={cfg.token}; Path=/; HttpOnly; SameSite=Strict"
                return await _plain(send, 303, "signed in", [(b"location", target.encode()), (b"set-cookie", cookie_header.encode())])
            else:
                return await _plain(send, 401, "this studio needs its token: open the link it printed, "
                                    "or send Authorization: Bearer TOKEN", [(b"www-authenticate", b"Bearer")])  # fmt: skip
        if scope["method"] in UNSAFE and not by_bearer:
            sent = headers.get("x-csrf-token", "")
            origin = headers.get("origin")
            # a program (chatloom sync) says so with a header of its own: a page of another site
            # cannot send one without a CORS preflight, which this server never grants
            program = "x-chatloom-client" in headers and (origin is None or origin.split("://", 1)[-1] == host)
            if not program and not hmac.compare_digest(sent.encode(), cfg.csrf.encode()):
                return await _plain(send, 403, "missing or wrong X-CSRF-Token (reload the page)")

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((k, v) for k, v in _SECURITY if k not in have)]  # fmt: skip
            await send(message)

        return await self.app(scope, receive, send_with_headers)


class Quick:
    """The reads done most (a list page, a chat opened: ``api.QUICK_ROUTES``) routed by
    Starlette's own routes ahead of FastAPI's. FastAPI's router walks its included routers'
    forty routes, and then solves the route's parameters: 0.15–0.3 ms a request here, where
    opening a chat reads for 0.1 ms; these routes cost 0.01–0.02 ms to find and call. Any other
    request, and a GET these routes do not match, goes to the FastAPI app. ``Guard`` wraps both.
    As in FastAPI's own stack, an ``HTTPException`` is answered by the app's handlers (the same
    errors), and any other error is a 500 sent through ``Guard`` (its headers) by Starlette's
    ``ServerErrorMiddleware``, then raised on for uvicorn's log. What differs: HEAD is answered
    (Starlette's routes answer it with GET), and the app's own middleware, none today, is not run."""

    def __init__(self, app: Any, routes: list[Any]):
        from starlette.middleware.errors import ServerErrorMiddleware

        self.app = app
        handlers = app.exception_handlers  # Starlette's ExceptionMiddleware splits them so, too
        self._handlers = ({k: v for k, v in handlers.items() if not isinstance(k, int)},
                          {k: v for k, v in handlers.items() if isinstance(k, int)})  # fmt: skip
        error = handlers.get(500) or handlers.get(Exception)
        self.routes = [(route, ServerErrorMiddleware(route.handle, handler=error)) for route in routes]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            for route, handle in self.routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    scope["app"] = self.app  # request.app: the pool, the config
                    scope["starlette.exception_handlers"] = self._handlers
                    return await handle(scope, receive, send)
        return await self.app(scope, receive, send)


def _cookies(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";"):
        name, eq, value = part.strip().partition("=")
        if eq:
            out[name] = value
    return out


async def _plain(send: Any, status: int, text: str, headers: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                            *_SECURITY, *headers]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


#: every page: no framing by other sites, no inline scripts, nothing loaded from elsewhere
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_SECURITY = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


def create_app(config: Config, *, pool_size: int = 4) -> Any:
    """The studio's FastAPI app over ``config.dataset`` (opened, and migrated, here)."""
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles

    from . import api, assist, conflicts, files, pages, syncapi
    from .tasks import Tasks

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        app.state.checkpoints = Checkpointer(config.dataset)
        try:
            yield
        finally:  # the last checkpoint ends before the process does (waited for off the loop)
            await asyncio.to_thread(app.state.checkpoints.close)

    pool = Pool(config.dataset, size=pool_size)
    app = FastAPI(title="chatloom studio", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.config = config
    app.state.pool = pool
    app.state.tasks = Tasks(config.dataset)
    app.state.count = LiveCount(config.dataset)
    app.state.checkpoints = None  # the lifespan's

    app.include_router(pages.router)
    app.include_router(api.router)
    app.include_router(files.router)
    app.include_router(assist.router)
    app.include_router(syncapi.router)
    app.include_router(conflicts.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return Guard(Quick(app, api.QUICK_ROUTES), config), app
