"""The studio's JSON API. Conversations are OpenAI-shaped JSON (chatloom's ``Conversation``).

Reads answer with the conversation's revision as ``ETag``; every write to one conversation
needs ``If-Match`` with the revision it was made from: 428 without it, 412 (with the current
revision and conversation) when the dataset has moved on since; nothing is ever overwritten
silently. Each accepted write is a revision (history, restore, undo).

    GET    /api/chats?q=&tag=&sort=&after=     a list page (as the list page shows it)
    POST   /api/chats                          a new chat → 201 {id, revision}
    GET    /api/chats/ID                       {conversation, revision}
    PUT    /api/chats/ID          If-Match     save → {revision}
    DELETE /api/chats/ID          If-Match     delete (undo brings it back)
    POST   /api/chats/ID/duplicate             a copy under a new id
    POST   /api/chats/ID/undo     If-Match     undo the last change
    GET    /api/chats/ID/history               the revisions
    GET    /api/chats/ID/revisions/N           the state after revision N
    POST   /api/chats/ID/restore/N If-Match    bring revision N back, as a new revision
    POST   /api/tokens                         token counts of an unsaved chat
    POST   /api/bulk                           tag, untag, delete, set language: ids or a whole query
    GET    /api/tasks/ID                       a background task's progress
    PUT    /api/settings                       the dataset's settings the studio edits
(import and export: ``files.py``)
    GET    /api/duplicates                     exact and near duplicates (a task)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

import msgspec
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse as _StdJSON
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import Route

from ..errors import ChatloomError, ConflictError, NotFoundError, UsageError
from ..model import Conversation
from ..store import ListQuery, Store

router = APIRouter()
T = TypeVar("T")
R = TypeVar("R")


class JSONResponse(_StdJSON):
    """JSON by orjson (the API's answers are plain data: no encoder walk of every field)."""

    def render(self, content: Any) -> bytes:
        import orjson

        return orjson.dumps(content)

DEFAULT_TOKENIZER = "gpt2-chatml"
#: the settings the studio's settings page edits (values are JSON)
EDITABLE = {"languages", "tags", "tokenizer", "template", "endpoint"}


# -- helpers shared by the pages ------------------------------------------------------------


@lru_cache(maxsize=8)
def _encoder(tokenizer: str, template: str | None) -> Any:
    from ..tokens.encode import Encoder
    from ..tokens.tokenizer import get_tokenizer

    return Encoder(get_tokenizer(tokenizer), template, fix=True)


def counting(store: Store) -> Any:
    """The tokenizer the list counts with: the dataset's ``tokenizer`` setting, else gpt2-chatml;
    a UsageError that says so when the setting names one this machine cannot load (set with
    ``chatloom`` elsewhere): a task's one line, a list page's 409 (``page_rows``)."""
    from ..tokens.tokenizer import get_tokenizer

    name = store.get_setting("tokenizer") or DEFAULT_TOKENIZER
    try:
        return get_tokenizer(name)
    except ChatloomError as err:
        raise UsageError(f"the dataset's tokenizer setting: {_no_path(store, err)} (change it on the settings page)") from None


def _int(params: Any, name: str) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise HTTPException(400, f"{name}: not a whole number: {value[:20]!r}") from None


def _flag(params: Any, name: str) -> bool | None:
    value = params.get(name)
    return None if value in (None, "", "any") else value in ("1", "yes", "true")


def list_query(params: Any, tokenizer_key: str | None) -> ListQuery:
    """The list's query from a page's (or the API's) query string."""
    try:
        return ListQuery(
            search=params.get("q") or None, tag=params.get("tag") or None, language=params.get("lang") or None,
            source=params.get("source") or None, min_tokens=_int(params, "min_tokens"), max_tokens=_int(params, "max_tokens"),
            min_messages=_int(params, "min_messages"), max_messages=_int(params, "max_messages"),
            has_tools=_flag(params, "tools"), edited_since=params.get("since") or None, generated=_flag(params, "generated"),
            sort=params.get("sort") or "updated", desc=params.get("dir", "desc") != "asc", tokenizer=tokenizer_key,
        )  # fmt: skip
    except ChatloomError as err:
        raise HTTPException(400, str(err)) from None


def page_rows(store: Store, params: Any, limit: int = 50) -> tuple[Any, list[Any], str | None]:
    try:
        tok = counting(store)
    except UsageError as err:
        raise HTTPException(409, str(err)) from None
    q = list_query(params, tok.cache_key)
    try:
        rows, cursor = store.page(q, after=params.get("after") or None, limit=limit)
    except ChatloomError as err:
        raise HTTPException(400, _no_path(store, err)) from None
    store.page_tokens(tok, rows)
    return q, rows, cursor


def _etag(revision: int) -> dict[str, str]:
    return {"ETag": f'"{revision}"'}


def _if_match(request: Request) -> int:
    value = request.headers.get("if-match")
    if value is None:
        raise HTTPException(428, "this write needs If-Match: the revision it was made from")
    try:
        return int(value.strip().strip('"').removeprefix("W/").strip('"'))
    except ValueError:
        raise HTTPException(400, f"If-Match: not a revision: {value[:20]!r}") from None


def _conflict(store: Store, conv_id: str) -> JSONResponse:
    e = _found(store.entry, conv_id)
    theirs = None if e.deleted else msgspec.to_builtins(e.conversation)
    return JSONResponse({"error": "conflict: someone saved this chat since you opened it", "revision": e.revision,
                         "conversation": theirs, "deleted": e.deleted}, status_code=412, headers=_etag(e.revision))  # fmt: skip


def validate(conv: Conversation) -> None:
    """What the editor may not save: tool calls whose arguments are not JSON, tool schemas that
    are not JSON Schema; each message's place named."""
    import jsonschema
    import orjson

    for i, m in enumerate(conv.messages, 1):
        for call in m.tool_calls or []:
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
                raise HTTPException(422, f"message {i}: a tool call needs a function name")
            args = fn.get("arguments", "")
            if isinstance(args, str):
                try:
                    orjson.loads(args or "{}")
                except orjson.JSONDecodeError as err:
                    raise HTTPException(422, f"message {i}: tool call {fn['name']}: arguments are not JSON: {err}") from None
    for i, tool in enumerate(conv.tools, 1):
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise HTTPException(422, f"tool {i}: needs a function name")
        params = fn.get("parameters", {})
        try:
            jsonschema.validators.validator_for(params).check_schema(params)
        except jsonschema.SchemaError as err:
            raise HTTPException(422, f"tool {fn['name']}: parameters are not a JSON Schema: {err.message}") from None


async def _conversation(request: Request) -> Conversation:
    try:
        return msgspec.json.decode(await request.body(), type=Conversation)
    except msgspec.ValidationError as err:
        raise HTTPException(422, f"not a conversation: {err}") from None
    except msgspec.DecodeError as err:
        raise HTTPException(400, f"not JSON: {err}") from None


def _pool(request: Request) -> Any:
    return request.app.state.pool


async def decoded(request: Request, kind: type[T]) -> T:
    """The request's JSON body as ``kind``; 400 when it is not that."""
    try:
        return msgspec.json.decode(await request.body(), type=kind)
    except msgspec.DecodeError as err:  # a ValidationError is one too
        raise HTTPException(400, str(err)) from None


async def in_store(request: Request, work: Callable[[Store], R]) -> R:
    """``work(store)`` with a pooled store, in the thread pool: a route that reads its body
    asynchronously never holds the event loop (and every stream on it) while it waits for a free
    store, for SQLite's write lock, or for a tokenizer."""

    def run() -> R:
        with _pool(request).store() as store:
            return work(store)

    return await run_in_threadpool(run)


#: a chat of at most this many messages is opened on the event loop (0.1–0.3 ms); a longer one
#: in the thread pool (5,000 messages take 9 ms to read and encode: the loop would stall)
QUICK_MESSAGES = 200


async def quick_read(request: Request, work: Callable[[Store], R | None], slow: Callable[[Store], R]) -> R:
    """``work(store)``, a read of a few rows by key, on the event loop itself when a store is
    free: the trip to the thread pool and back costs 0.15–0.3 ms here, more than such a read
    (opening a chat: 0.1 ms at 1,000,000 chats). ``slow(store)`` in the thread pool, like
    ``in_store``, when none is free (the loop never waits for a store) or when ``work`` says,
    with None, that the read is not a small one."""
    with _pool(request).free() as store:
        if store is not None:
            done = work(store)
            if done is not None:
                return done
    return await in_store(request, slow)


# -- conversations ---------------------------------------------------------------------------


def list_chats(request: Request) -> Any:
    """``GET /api/chats``: a list page. A route of ``QUICK_ROUTES``."""
    with _pool(request).store() as store:
        _, rows, cursor = page_rows(store, request.query_params, limit=max(1, min(_int(request.query_params, "limit") or 50, 500)))
    return JSONResponse({"rows": [vars(r) for r in rows], "next": cursor})


@router.post("/api/chats", status_code=201)
async def create_chat(request: Request) -> Any:
    body = await request.body()
    conv = (await _conversation(request)) if body.strip() else Conversation(messages=[])
    conv.id = conv.id or f"studio:{uuid.uuid4().hex[:12]}"
    validate(conv)

    def create(store: Store) -> int:
        try:
            return store.put(conv, base_revision=0)
        except ConflictError:
            raise HTTPException(409, f"{conv.id}: a conversation with this id exists") from None

    revision = await in_store(request, create)
    return JSONResponse({"id": conv.id, "revision": revision}, status_code=201, headers=_etag(revision))


@router.get("/api/chats/{conv_id:path}/history")
def history(conv_id: str, request: Request) -> Any:
    with _pool(request).store() as store:
        return [vars(r) for r in _found(store.history, conv_id)]


@router.get("/api/chats/{conv_id:path}/revisions/{revision}")
def revision_state(conv_id: str, revision: int, request: Request) -> Any:
    with _pool(request).store() as store:
        state = _found(store.state_at, conv_id, revision)
    return {"revision": revision, "conversation": None if state is None else msgspec.to_builtins(state)}


@router.post("/api/chats/{conv_id:path}/restore/{revision}")
def restore(conv_id: str, revision: int, request: Request) -> Any:
    base = _if_match(request)
    with _pool(request).store() as store:
        try:
            new = _found(store.restore, conv_id, revision, base_revision=base)
        except ConflictError:
            return _conflict(store, conv_id)
    return JSONResponse({"revision": new}, headers=_etag(new))


@router.post("/api/chats/{conv_id:path}/undo")
def undo(conv_id: str, request: Request) -> Any:
    base = _if_match(request)
    with _pool(request).store() as store:
        current = _found(store.entry, conv_id).revision
        if current != base:
            return _conflict(store, conv_id)
        try:
            undone, new = store.undo(conv_id)
        except NotFoundError:
            raise
        except ChatloomError as err:
            raise HTTPException(409, str(err)) from None
    return JSONResponse({"undone": undone, "revision": new}, headers=_etag(new))


@router.post("/api/chats/{conv_id:path}/duplicate", status_code=201)
def duplicate(conv_id: str, request: Request) -> Any:
    with _pool(request).store() as store:
        conv = _found(store.get, conv_id)
        conv.id = f"studio:{uuid.uuid4().hex[:12]}"
        conv.title = f"{conv.title or 'untitled'} (copy)"
        conv.source = {"format": "studio", "copy_of": conv_id}
        revision = store.put(conv, base_revision=0)
    return JSONResponse({"id": conv.id, "revision": revision}, status_code=201, headers=_etag(revision))


async def open_chat(request: Request) -> Any:
    """``GET /api/chats/ID``: the chat, with its revision as ETag. A route of ``QUICK_ROUTES``."""
    conv_id = request.path_params["conv_id"]

    def answer(e: Any) -> tuple[bytes, int]:  # (the body, the revision), encoded where it was read
        if e.deleted:
            raise HTTPException(410, f"{conv_id}: deleted (revision {e.revision}); undo brings it back")
        return b'{"conversation":' + msgspec.json.encode(e.conversation) + b',"revision":' + str(e.revision).encode() + b"}", e.revision

    def small(store: Store) -> tuple[bytes, int] | None:
        e = _found(store.entry, conv_id, most=QUICK_MESSAGES)
        return None if e is None else answer(e)

    body, revision = await quick_read(request, small, lambda store: answer(_found(store.entry, conv_id)))
    return Response(body, media_type="application/json", headers=_etag(revision))


class ChatId(Convertor[str]):
    """A chat's id in a path, as ``{x:path}`` takes it (any text, ``/`` included), but for a
    trailing ``/history`` or ``/revisions/N``: those are the routes of the chat's history."""

    regex = r"(?:(?!/history$|/revisions/[^/]+$).)*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


#: a name of chatloom's own: Starlette's convertors are one registry for the whole process
register_url_convertor("chatloom_chat_id", ChatId())

#: the API's reads done most (a list page, a chat opened), routed by ``app.Quick`` ahead of
#: FastAPI's routes (see there why); their errors are FastAPI's (``{"detail": ...}``)
QUICK_ROUTES = [
    Route("/api/chats", list_chats, methods=["GET"]),
    Route("/api/chats/{conv_id:chatloom_chat_id}", open_chat, methods=["GET"]),
]


@router.put("/api/chats/{conv_id:path}")
async def save_chat(conv_id: str, request: Request) -> Any:
    base = _if_match(request)
    conv = await _conversation(request)
    if conv.id not in (None, conv_id):
        raise HTTPException(400, f"the body's id {conv.id!r} is not {conv_id!r}")
    conv.id = conv_id
    validate(conv)

    def save(store: Store) -> Any:
        try:
            revision = store.put(conv, base_revision=base)
        except ConflictError:
            return _conflict(store, conv_id)  # 404 when it is not there at all
        return JSONResponse({"revision": revision}, headers=_etag(revision))

    return await in_store(request, save)


@router.delete("/api/chats/{conv_id:path}")
def delete_chat(conv_id: str, request: Request) -> Any:
    base = _if_match(request)
    with _pool(request).store() as store:
        e = _found(store.entry, conv_id)
        if e.revision != base:
            return _conflict(store, conv_id)
        store.delete([conv_id])
        revision = store.entry(conv_id).revision
    return JSONResponse({"revision": revision}, headers=_etag(revision))


def _found(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except NotFoundError as err:
        store = getattr(fn, "__self__", None)
        raise HTTPException(404, str(err) if store is None else _no_path(store, err)) from None


def _no_path(store: Store, err: Exception) -> str:
    """An error's text with the dataset's path as its file name: no server paths to the page."""
    return str(err).replace(str(store.path), store.path.name)


# -- token counts ---------------------------------------------------------------------------


@router.post("/api/tokens")
async def tokens(request: Request) -> Any:
    """Per message, its content's tokens; in all, the chat as the dataset's template renders it."""
    conv = await _conversation(request)

    def count(store: Store) -> dict[str, Any]:
        tokenizer = store.get_setting("tokenizer") or DEFAULT_TOKENIZER
        template = store.get_setting("template")
        try:
            enc = _encoder(tokenizer, template)
        except ChatloomError as err:
            raise HTTPException(400, f"settings: {err}") from None
        per = enc.tokenizer.count_batch([m.content for m in conv.messages]) if conv.messages else []
        total, error = None, None
        if conv.messages:
            try:
                total = len(enc.tokens(conv)[0])
            except ChatloomError as err:
                error = str(err)
        else:
            total = 0
        return {"messages": per, "total": total, "error": error, "tokenizer": enc.tokenizer.name, "template": enc.template.name}

    return await in_store(request, count)


# -- actions over many ----------------------------------------------------------------------


class Bulk(msgspec.Struct):
    action: str  # tag, untag, delete, language
    value: str | None = None
    ids: list[str] | None = None
    query: dict[str, str] | None = None


def _apply(store: Store, action: str, value: str | None, ids: list[str]) -> int:
    if action == "tag":
        return store.tag(ids, add=[value or ""])
    if action == "untag":
        return store.tag(ids, remove=[value or ""])
    if action == "delete":
        return store.delete(ids)
    if action == "language":
        return store.set_language(ids, value or None)
    raise HTTPException(400, f"unknown action {action!r}: tag, untag, delete or language")


@router.post("/api/bulk")
async def bulk(request: Request) -> Any:
    b = await decoded(request, Bulk)
    if b.action in ("tag", "untag") and not (b.value or "").strip():
        raise HTTPException(400, f"{b.action}: which tag?")
    if b.action not in ("tag", "untag", "delete", "language"):
        raise HTTPException(400, f"unknown action {b.action!r}: tag, untag, delete or language")
    if b.ids is not None:
        ids = b.ids

        def apply(store: Store) -> int:
            try:
                return _apply(store, b.action, b.value, ids)
            except NotFoundError as err:
                raise HTTPException(404, str(err)) from None

        return {"changed": await in_store(request, apply), "matched": len(ids)}
    if b.query is None:
        raise HTTPException(400, "give ids or a query")
    query = b.query
    q = await in_store(request, lambda store: list_query(query, counting(store).cache_key))

    def work(store: Store, task: Any) -> dict[str, Any]:
        changed = matched = 0
        # the ids first (one pass, in pages), then the action: an action that moves rows in the
        # sort (a tag on a list sorted by updated) would otherwise page over its own changes
        batches = list(store.matching_ids(q))
        task.total = sum(len(b) for b in batches)
        for batch in batches:
            changed += _apply(store, b.action, b.value, batch)
            matched += len(batch)
            task.done = matched
        return {"changed": changed, "matched": matched}

    task = request.app.state.tasks.start(f"bulk-{b.action}", work)
    return JSONResponse({"task": task.id}, status_code=202)


@router.get("/api/tasks/{task_id}")
def task_state(task_id: str, request: Request) -> Any:
    task = request.app.state.tasks.get(task_id)
    if task is None:
        raise HTTPException(404, f"no task {task_id}")
    return task.public()


# -- settings and duplicates ----------------------------------------------------------------


@router.put("/api/settings")
async def put_settings(request: Request) -> Any:
    import orjson

    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as err:
        raise HTTPException(400, f"not JSON: {err}") from None
    if not isinstance(body, dict) or not set(body) <= EDITABLE:
        raise HTTPException(400, f"settings: only {', '.join(sorted(EDITABLE))}")
    if body.get("tokenizer") or body.get("template"):

        def check(store: Store) -> None:
            tokenizer = body.get("tokenizer") or store.get_setting("tokenizer") or DEFAULT_TOKENIZER
            template = body.get("template", store.get_setting("template"))
            try:
                _encoder(tokenizer, template or None)
            except ChatloomError as err:
                raise HTTPException(400, f"tokenizer/template: {err}") from None

        await in_store(request, check)
    endpoint = body.get("endpoint")
    if endpoint:
        from .assist import checked_endpoint

        body["endpoint"] = checked_endpoint(endpoint)

    def save(store: Store) -> dict[str, Any]:
        for key, value in body.items():
            store.set_setting(key, value if value not in ("", [], {}) else None)
        return {k: store.get_setting(k) for k in sorted(EDITABLE)}

    return await in_store(request, save)


@router.post("/api/duplicates")
def duplicates(request: Request) -> Any:
    def work(store: Store, task: Any) -> dict[str, Any]:
        from .dashboard import find_duplicates

        return find_duplicates(store, task)

    task = request.app.state.tasks.start("duplicates", work)
    return JSONResponse({"task": task.id}, status_code=202)



@router.post("/api/count-tokens")
def count_tokens(request: Request) -> Any:
    """Count (and cache) the tokens of every chat not counted yet: the token sort and filters,
    and the dashboard's histogram, then cover the whole dataset."""

    def work(store: Store, task: Any) -> dict[str, Any]:
        def progress(done: int, total: int) -> None:
            task.done, task.total = done, total

        return {"counted": len(store.token_counts(counting(store), progress=progress))}

    task = request.app.state.tasks.start("count-tokens", work)
    return JSONResponse({"task": task.id}, status_code=202)
