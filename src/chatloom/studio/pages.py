"""The studio's pages, rendered on the server by Jinja2 with autoescape on: chat content only
ever reaches the page as escaped text (or as JSON in a ``<script type=application/json>``,
where ``tojson`` escapes ``<``, ``>``, ``&`` and quotes). The page scripts (``static/*.js``)
put text into the DOM with ``textContent`` and form values, never as HTML."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import jinja2
import msgspec
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from ..errors import NotFoundError
from .api import DEFAULT_TOKENIZER, EDITABLE, counting, page_rows
from .app import HERE

router = APIRouter()
# autoescape on for every template, whatever its name (select_autoescape would key it on .html)
templates = Jinja2Templates(env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True))

SORT_NAMES = {"updated": "updated", "tokens": "tokens", "messages": "messages", "title": "title"}
FILTERS = ("q", "tag", "lang", "source", "min_tokens", "max_tokens", "min_messages", "max_messages", "tools", "since",
           "generated", "sort", "dir")  # fmt: skip


def _marked(snippet: str | None) -> list[tuple[bool, str]]:
    """An FTS snippet as (matched, text) parts; the template wraps matched parts in <mark>."""
    if not snippet:
        return []
    return [(i % 2 == 1, part) for i, part in enumerate(snippet.replace("\x03", "\x02").split("\x02")) if part]


def _page(request: Request, name: str, **context: Any) -> HTMLResponse:
    cfg = request.app.state.config
    count = request.app.state.count.get()
    return templates.TemplateResponse(request, name, {"csrf": cfg.csrf, "dataset": cfg.dataset.name, "count": count, **context})


@router.get("/", response_class=HTMLResponse)
def chat_list(request: Request) -> Any:
    params = request.query_params
    with request.app.state.pool.store() as store:
        q, rows, cursor = page_rows(store, params)
        facets = {"tags": store.vocabulary(), "languages": store.get_setting("languages") or []}
    kept = {k: params[k] for k in FILTERS if params.get(k)}
    query = urlencode(kept)
    more = f"?{urlencode({**kept, 'after': cursor})}" if cursor else None
    return _page(request, "list.html", rows=[(r, _marked(r.snippet)) for r in rows], query=q, params=kept, query_string=query,
                 more=more, first=bool(params.get("after")), sorts=SORT_NAMES, facets=facets)  # fmt: skip


@router.get("/chat/{conv_id:path}", response_class=HTMLResponse)
def editor(conv_id: str, request: Request) -> Any:
    with request.app.state.pool.store() as store:
        try:
            e = store.entry(conv_id)
        except NotFoundError as err:
            raise HTTPException(404, str(err)) from None
        vocabulary = store.vocabulary()
        languages = store.get_setting("languages") or []
        has_endpoint = bool(request.app.state.config.endpoint or store.get_setting("endpoint"))
    data = {"id": conv_id, "revision": e.revision, "deleted": e.deleted,
            "conversation": None if e.deleted else msgspec.to_builtins(e.conversation)}  # fmt: skip
    return _page(request, "chat.html", chat=data, title=(e.conversation.title or conv_id), vocabulary=vocabulary,
                 languages=languages, has_endpoint=has_endpoint)  # fmt: skip


@router.get("/favicon.ico")
async def favicon() -> Any:
    from fastapi.responses import Response

    return Response(status_code=204)


@router.get("/new")
def new_chat_page() -> Any:
    return RedirectResponse("/?new=1", status_code=303)


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(request: Request) -> Any:
    from .dashboard import histogram

    limit = request.query_params.get("limit")
    limit_n = int(limit) if limit and limit.isdigit() else None
    with request.app.state.pool.store() as store:
        facets = store.facets()
        tok = counting(store)
        counts = store.cached_token_counts(tok.cache_key)
    over_link = "/?" + urlencode({"min_tokens": limit_n + 1, "sort": "tokens"}) if limit_n else None
    return _page(request, "dashboard.html", facets=facets, hist=histogram(counts, limit=limit_n), tokenizer=tok.name,
                 counted=len(counts), limit=limit_n, over_link=over_link)  # fmt: skip


@router.get("/data", response_class=HTMLResponse)
def data_page(request: Request) -> Any:
    from ..formats import formats
    from ..sources import sources

    return _page(request, "data.html", readers=sorted(sources()), writers=sorted(formats()))


@router.get("/settings", response_class=HTMLResponse)
def settings_page(request: Request) -> Any:
    from ..generate.settings import endpoints

    with request.app.state.pool.store() as store:
        values = {k: store.get_setting(k) for k in sorted(EDITABLE)}
    return _page(request, "settings.html", values=values, default_tokenizer=DEFAULT_TOKENIZER, endpoints=sorted(endpoints()),
                 from_command_line=bool(request.app.state.config.endpoint))  # fmt: skip
