"""Conflicts a sync left open, in the studio: each with both versions side by side, and the
choice ``chatloom resolve`` offers (keep ours, take theirs); the next sync carries it.

    GET  /conflicts                         the page
    GET  /api/conflicts                     [{id, remote, at, ours, theirs}]
    POST /api/conflicts/ID/resolve          {"how": "ours" | "theirs"}
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from ..errors import ChatloomError
from .api import JSONResponse, _pool

router = APIRouter()


def _listed(store: Any) -> list[dict[str, Any]]:
    out = []
    for c in store.conflicts():
        e = store.entry(c.id)
        out.append({"id": c.id, "remote": c.remote, "at": c.at,
                    "ours": None if e.deleted else msgspec.to_builtins(e.conversation),
                    "theirs": None if c.theirs is None else msgspec.to_builtins(c.theirs)})  # fmt: skip
    return out


@router.get("/api/conflicts")
def conflicts(request: Request) -> Any:
    with _pool(request).store() as store:
        return JSONResponse(_listed(store))


@router.post("/api/conflicts/{conv_id:path}/resolve")
async def resolve(conv_id: str, request: Request) -> Any:
    from ..sync.merge import resolve as settle
    from ..sync.sides import DatasetSide

    try:
        how = msgspec.json.decode(await request.body()).get("how")
    except (msgspec.DecodeError, AttributeError):
        raise HTTPException(400, 'give {"how": "ours" | "theirs"}') from None
    if how not in ("ours", "theirs"):
        raise HTTPException(400, "how: ours or theirs (an edit is made in the editor, then 'ours')")

    def settle_here() -> str:  # in the thread pool: it opens the dataset and writes
        side = DatasetSide(request.app.state.config.dataset)
        try:
            return settle(side, conv_id, how)
        except ChatloomError as err:
            raise HTTPException(404, str(err)) from None
        finally:
            side.close()

    state = await run_in_threadpool(settle_here)
    return JSONResponse({"id": conv_id, "resolved": how, "state": state})


@router.get("/conflicts", response_class=HTMLResponse)
def page(request: Request) -> Any:
    from .pages import _page

    with _pool(request).store() as store:
        found = _listed(store)
    return _page(request, "conflicts.html", conflicts=found)
