"""Import and export from the page.

    POST   /api/import?name=FILE&format=F      the request body is the file (size-limited); a task
    GET    /api/export?format=F&tag=T          a file of what a query finds (or of the chats id=A&id=B)
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from ..errors import ChatloomError
from ..store import Store
from .api import JSONResponse, _pool, counting, list_query

router = APIRouter()

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@router.post("/api/import")
async def import_file(request: Request) -> Any:
    """The body is the file. It is written to a temporary folder under a cleaned name (the name
    from the page is never a path the server opens), then imported in the background."""
    from ..importing.run import import_paths

    cfg = request.app.state.config
    name = _SAFE_NAME.sub("_", Path(request.query_params.get("name", "upload")).name).strip("._") or "upload"
    fmt = request.query_params.get("format") or "auto"
    me = request.query_params.get("me") or None
    tags = [t for t in (request.query_params.get("tags") or "").split(",") if t.strip()]
    folder = Path(tempfile.mkdtemp(prefix="chatloom-studio-"))
    path = folder / name
    size = 0
    with open(path, "wb") as f:
        async for chunk in request.stream():
            size += len(chunk)
            if size > cfg.upload_limit:
                f.close()
                _remove(folder)
                raise HTTPException(413, f"the file is over the upload limit ({cfg.upload_limit >> 20} MiB)")
            f.write(chunk)

    def work(store: Store, task: Any) -> dict[str, Any]:
        from ..sources.options import ImportOptions

        try:
            options = ImportOptions(me=(me,)) if me else None

            def on_file(_path: Path, _source: Any, size: int) -> Any:
                task.total = size

                def advance(n: int) -> None:
                    task.done = n

                return advance

            try:
                results = import_paths(store, [str(path)], options, fmt=fmt, tags=tags, on_file=on_file)
            except ChatloomError as err:
                raise ChatloomError(_unplaced(str(err), folder)) from None
            files = [_unplaced(r.to_dict(), folder) for r in results]
            for f in files:
                f["file"] = name
            task.done = task.total or 0
            return {"files": files, "conversations": results.conversations,
                    "skipped": [_unplaced(str(e), folder) for e in results.skipped]}  # fmt: skip
        finally:
            _remove(folder)

    task = request.app.state.tasks.start("import", work)
    return JSONResponse({"task": task.id, "bytes": size}, status_code=202)


def _unplaced(value: Any, folder: Path) -> Any:
    """``value`` with the upload's temporary folder taken out of every text (messages name the
    file as the page named it, never a path on the server)."""
    if isinstance(value, str):
        return value.replace(f"{folder}{os.sep}", "").replace(str(folder), "")
    if isinstance(value, dict):
        return {k: _unplaced(v, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [_unplaced(v, folder) for v in value]
    return value


def _remove(folder: Path) -> None:
    for p in folder.iterdir():
        with contextlib.suppress(OSError):
            p.unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()


@router.get("/api/export")
def export_file(request: Request) -> Any:
    from ..formats import formats
    from ..formats.export import export_conversations

    fmt = request.query_params.get("format") or "openai"
    known = formats()
    if fmt not in known:
        raise HTTPException(400, f"unknown format {fmt!r}: one of {', '.join(sorted(known))}")
    folder = Path(tempfile.mkdtemp(prefix="chatloom-export-"))
    out = folder / f"export.{fmt}.jsonl"
    ids = request.query_params.getlist("id")  # a selection; else everything the query finds
    if not ids:
        with _pool(request).store() as store:
            q = list_query(request.query_params, counting(store).cache_key)
            ids = [i for batch in store.matching_ids(q) for i in batch]
    path = request.app.state.config.dataset

    def read() -> Any:
        with Store(path) as s:
            yield from s.iter_conversations(ids=ids, skip_missing=True)

    try:
        result = export_conversations(read, str(out), fmt=fmt, snippets=False)
    except ChatloomError as err:
        _remove(folder)
        raise HTTPException(400, str(err)) from None
    files = [Path(p) for p in result.files] or [out]
    if not files[0].is_file():
        _remove(folder)
        raise HTTPException(400, f"format {fmt} writes a folder; export it with 'chatloom export -f {fmt}'")
    headers = {"X-Chatloom-Written": str(sum(result.files.values())),
               "X-Chatloom-Dropped": ",".join(f"{k}={v}" for k, v in result.dropped.items())}  # fmt: skip
    return FileResponse(files[0], filename=f"chatloom-{fmt}{files[0].suffix}", headers=headers,
                        background=BackgroundTask(_remove, folder))  # fmt: skip
