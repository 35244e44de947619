"""A dataset served as a sync remote (``chatloom studio`` and ``chatloom serve-dataset``): the
routes ``chatloom sync/pull/push`` talk to, behind the same guard as every route (a token off
loopback; a client sends it as ``Authorization: Bearer``, so needs no CSRF header).

    GET  /api/sync/changes?after=CURSOR                 a page of the changes feed: [[id, state]], next
    GET  /api/sync/mark                                 the feed's end now
    POST /api/sync/get        {"ids": [...]}            {"conversations": {id: conversation | null}}
    POST /api/sync/states     {"ids": [...]}            {"states": {id: state | null}}
    POST /api/sync/apply      {"changes": [{"change", "id", "expected", "conversation" | null}]}
                                                        [{"change", "applied", "state"}]

``apply`` is idempotent: each change carries an id the client made, and a change id seen before
is answered from the record. A change whose ``expected`` state is not the conversation's state
any more is not applied (the client sees a conflict, never an overwrite)."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, HTTPException, Request

from ..errors import ChatloomError
from ..model import Conversation
from .api import JSONResponse, _pool, decoded, in_store

router = APIRouter()


class Change(msgspec.Struct):
    change: str
    id: str
    expected: str | None = None
    conversation: Conversation | None = None


class Apply(msgspec.Struct):
    changes: list[Change]


class Ids(msgspec.Struct):
    ids: list[str]


@router.get("/api/sync/changes")
def changes(request: Request) -> Any:
    q = request.query_params
    limit = min(int(q.get("limit", "5000") or 5000), 20_000)
    with _pool(request).store() as store:
        try:
            rows, cursor = store.changes(q.get("after") or None, limit)
        except ChatloomError as err:
            raise HTTPException(400, str(err)) from None
    return JSONResponse({"changes": rows, "next": cursor, "more": len(rows) == limit})


@router.get("/api/sync/mark")
def mark(request: Request) -> Any:
    with _pool(request).store() as store:
        return JSONResponse({"mark": store.changes_mark()})


@router.post("/api/sync/get")
async def get(request: Request) -> Any:
    body = await decoded(request, Ids)

    def read(store: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for conv_id in body.ids[:1000]:
            try:
                e = store.entry(conv_id)
                out[conv_id] = None if e.deleted else msgspec.to_builtins(e.conversation)
            except ChatloomError:
                out[conv_id] = None
        return out

    return JSONResponse({"conversations": await in_store(request, read)})


@router.post("/api/sync/states")
async def states(request: Request) -> Any:
    body = await decoded(request, Ids)
    return JSONResponse({"states": await in_store(request, lambda store: store.states_of(body.ids[:5000]))})


@router.post("/api/sync/apply")
async def apply(request: Request) -> Any:
    body = await decoded(request, Apply)

    def write(store: Any) -> list[dict[str, Any]]:
        results = []
        changes = body.changes[:1000]
        for i in range(0, len(changes), 100):
            with store.transaction():  # a hundred changes, each with its record, per commit
                for c in changes[i : i + 100]:
                    applied, state = store.apply_change(c.change, c.id, c.expected, c.conversation)
                    results.append({"change": c.change, "applied": applied, "state": state})
        return results

    return JSONResponse({"results": await in_store(request, write)})
