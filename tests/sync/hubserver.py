"""A minimal Hugging Face Hub for the tests, on 127.0.0.1: what ``huggingface_hub`` calls to create
a dataset repo, commit to it and read it back, in memory, behind a Bearer token.

    hub = HubServer(token="hf_test").start()    # hub.url: the endpoint
    ...
    hub.stop()

The calls it answers (and nothing else):
- ``POST /api/repos/create``: a repo with its first commit (``.gitattributes``), as the Hub makes;
  409 when it exists (``exist_ok`` passes);
- ``GET /api/datasets/{repo}/revision/{rev}``: ``dataset_info`` (the head's sha, the files);
- ``GET /api/datasets/{repo}/tree/{rev}``: ``list_repo_tree`` (``snapshot_download``);
- ``GET /api/datasets/{repo}/commits/{rev}``: ``list_repo_commits``, newest first;
- ``POST /api/validate-yaml``: a card's front matter must be YAML;
- ``POST /api/datasets/{repo}/preupload/{rev}``: every file goes ``regular`` (base64 in the commit;
  no LFS), with the oid of the file there now (``create_commit`` leaves out files not changed);
- ``POST /api/datasets/{repo}/commit/{rev}``: the NDJSON commit (header, file, deletedFile), all or
  nothing; 412 when ``parentCommit`` is not the head (what the Hub answers);
- ``HEAD|GET /datasets/{repo}/resolve/{rev}/{path}``: ``hf_hub_download`` (``X-Repo-Commit``,
  ``ETag``, ``Content-Length``).
Without the token (or with another): 401, "Invalid credentials in Authorization header".
"""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

REPO = "/{kind:str}s/{owner:str}/{name:str}"
GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"


def git_oid(data: bytes) -> str:
    """A file's git blob id (what the Hub gives as a regular file's oid)."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    title: str
    message: str
    files: dict[str, bytes]
    date: str = field(default_factory=lambda: datetime.now(UTC).isoformat().replace("+00:00", "Z"))


def _error(status: int, message: str, code: str | None = None, **headers: str) -> JSONResponse:
    extra = {"X-Error-Message": message} | ({"X-Error-Code": code} if code else {})
    return JSONResponse({"error": message}, status_code=status, headers=extra | headers)


class HubServer:
    """Repos by id, each a list of commits (oldest first) on ``main``."""

    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, list[Commit]] = {}
        self.private: dict[str, bool] = {}
        self.lock = threading.Lock()
        routes = [
            Route("/api/repos/create", self.create, methods=["POST"]),
            Route("/api/validate-yaml", self.validate_yaml, methods=["POST"]),
            Route("/api" + REPO + "/revision/{rev:str}", self.info),
            Route("/api" + REPO + "/tree/{rev:str}", self.tree),
            Route("/api" + REPO + "/commits/{rev:str}", self.commits),
            Route("/api" + REPO + "/preupload/{rev:str}", self.preupload, methods=["POST"]),
            Route("/api" + REPO + "/commit/{rev:str}", self.commit, methods=["POST"]),
            Route(REPO + "/resolve/{rev:str}/{path:path}", self.resolve, methods=["GET", "HEAD"]),
        ]
        self.app = Starlette(routes=routes)
        self.app.add_middleware(_Auth, hub=self)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> HubServer:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def head(self, repo: str) -> Commit:
        return self.repos[repo][-1]

    # -- routes ---------------------------------------------------------------------------------

    def _at(self, request: Request) -> tuple[str, Commit | None, Response | None]:
        """The repo a route names and its commit at ``rev`` (a branch or a sha), or the error."""
        p = request.path_params
        repo = f"{p['owner']}/{p['name']}"
        if p["kind"] != "dataset" or repo not in self.repos:
            return repo, None, _error(404, "Repository not found", "RepoNotFound")
        rev = p.get("rev", "main")
        for c in reversed(self.repos[repo]):
            if rev == "main" or c.oid.startswith(rev) and len(rev) >= 7:
                return repo, c, None
        return repo, None, _error(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    async def create(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        repo = f"{body['organization']}/{body['name']}"
        url = f"{self.url}/datasets/{repo}"
        with self.lock:
            if repo in self.repos:
                return JSONResponse({"error": "You already created this dataset repo", "url": url}, status_code=409)
            self.repos[repo] = [Commit(hashlib.sha1(repo.encode()).hexdigest(), "initial commit", "", {".gitattributes": GITATTRIBUTES})]
            self.private[repo] = body.get("visibility") == "private" or bool(body.get("private"))
        return JSONResponse({"url": url, "name": repo})

    async def validate_yaml(self, request: Request) -> Response:
        content = orjson.loads(await request.body())["content"]
        if content.startswith("---\n"):
            try:
                yaml.safe_load(content[4 : content.index("\n---", 3)])
            except (yaml.YAMLError, ValueError) as err:
                return JSONResponse({"errors": [{"message": str(err)}]}, status_code=400)
        return JSONResponse({"errors": [], "warnings": []})

    async def info(self, request: Request) -> Response:
        repo, c, err = self._at(request)
        if err:
            return err
        return JSONResponse({"id": repo, "sha": c.oid, "private": self.private[repo], "lastModified": c.date,
                             "siblings": [{"rfilename": f} for f in sorted(c.files)]})  # fmt: skip

    async def tree(self, request: Request) -> Response:
        _, c, err = self._at(request)
        return err or JSONResponse([{"type": "file", "path": f, "size": len(b), "oid": git_oid(b)} for f, b in sorted(c.files.items())])

    async def commits(self, request: Request) -> Response:
        repo, c, err = self._at(request)
        if err:
            return err
        history = self.repos[repo][: self.repos[repo].index(c) + 1]
        return JSONResponse([{"id": h.oid, "title": h.title, "message": h.message, "authors": [{"user": "me"}], "date": h.date}
                             for h in reversed(history)])  # fmt: skip

    async def preupload(self, request: Request) -> Response:
        _, c, err = self._at(request)
        if err:
            return err
        files = orjson.loads(await request.body())["files"]
        return JSONResponse({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                        "oid": git_oid(c.files[f["path"]]) if f["path"] in c.files else None} for f in files],
                             "commitOid": c.oid})  # fmt: skip

    async def commit(self, request: Request) -> Response:
        repo, _, err = self._at(request)
        if err:
            return err
        lines = [orjson.loads(line) for line in (await request.body()).splitlines() if line.strip()]  # the whole body, or nothing
        header = lines[0]["value"]
        with self.lock:
            head = self.head(repo)
            parent = header.get("parentCommit")
            if parent is not None and not head.oid.startswith(parent):
                return _error(412, "A commit has happened since. Please refresh and try again.")
            files = dict(head.files)
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                if key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile" and value["path"] in files:
                    del files[value["path"]]
                else:
                    return _error(400, f"not supported here: {key} {value.get('path')}")
            message = header["summary"] + (f"\n\n{header['description']}" if header.get("description") else "")
            oid = hashlib.sha1(f"{head.oid}\x00{message}\x00{sorted((p, git_oid(b)) for p, b in files.items())}".encode()).hexdigest()
            self.repos[repo].append(Commit(oid, header["summary"], message, files))
        return JSONResponse({"commitUrl": f"{self.url}/datasets/{repo}/commit/{oid}", "commitOid": oid, "success": True})

    async def resolve(self, request: Request) -> Response:
        _, c, err = self._at(request)
        if err:
            return err
        path = request.path_params["path"]
        if path not in c.files:
            return _error(404, "Entry not found", "EntryNotFound", **{"X-Repo-Commit": c.oid})
        data = c.files[path]
        headers = {"X-Repo-Commit": c.oid, "ETag": f'"{git_oid(data)}"', "Content-Length": str(len(data))}
        return Response(b"" if request.method == "HEAD" else data, headers=headers, media_type="application/octet-stream")


class _Auth:
    """401 for a request without the token (every route wants it here)."""

    def __init__(self, app, hub: HubServer):
        self.app, self.hub = app, hub

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            if dict(scope["headers"]).get(b"authorization") != f"Bearer {self.hub.token}".encode():
                await _error(401, "Invalid credentials in Authorization header")(scope, receive, send)
                return
        await self.app(scope, receive, send)
