"""A Kajiwoto GraphQL server for the tests, on 127.0.0.1: the operations kajitool sends (``login``,
``loginWithToken``, ``aiTrainerGroup``, ``aiTrainedList`` in pages of at most 100,
``trainDataset``) and those of the newer SDK (``datasetLines`` by offset, ``addToDataset``), each
with the arguments kajitool's ``query/graphql.go`` and ``query/client.go`` give them, executed by
graphql-core over a schema written from kajitool's ``query/types.go``.

The service's own behaviour is read from kajitool: a session token in the ``auth_token`` header;
``trainDataset`` takes a chain of ``questions`` and their ``form`` (``[condition, message]``) and
adds the last one as a row whose History is the user messages before it (kajitool sends an earlier
row as the chain's first element when an entry follows one up); a row's condition is five digits
(daytime, last seen, attachment, two unused). The newer API (``api="v2"``) answers ``datasetLines``
with the condition split in ``time``, ``recent`` and ``endearment`` and takes ``addToDataset``;
the older (``api="v1"``) knows neither, as a server of kajitool's time would not. Pages asked for
faster than ``min_interval`` apart are answered 429 with a Retry-After, and counted.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from graphql import build_schema, graphql_sync

SDL = """
enum DeviceType { WEB IOS ANDROID }
type User { id: String username: String displayName: String }
type Settings { personalRoomOrder: [String] }
type Login { authToken: String user: User settings: Settings }
type Welcome { webVersion: String }
type AITrainerGroup { id: String name: String count: Int deleted: Boolean price: Int purchased: Boolean user: User }
type AITrained { id: String userMessage: String message: String asm: String condition: String deleted: Boolean
                 history: [String] aiTrainerGroupId: String }
type TrainCalibration { chance: Float userMessage: String message: String }
type TrainDatasetResult { calibrations: [TrainCalibration] count: Int }
type DatasetLine { id: String userMessage: String message: String asm: String endearment: String recent: String
                   time: String history: [String] deleted: Boolean }
input DialogueConditions { asm: String endearment: String recent: String time: String }
input Dialogue { conditions: DialogueConditions generated: Boolean history: [String] message: String userMessage: String }
type AddToDatasetResult { count: Int }
type Query {
  welcome: Welcome
  aiTrainerGroup(aiTrainerGroupId: String!): AITrainerGroup
  aiTrainedList(aiTrainerGroupId: String!, limit: Int!, page: Int!, searchQuery: String): [AITrained]
  datasetLines(aiTrainerGroupId: String!, searchQuery: String, limit: Int!, offset: Int!): [DatasetLine]
}
type Mutation {
  welcome: Welcome
  login(usernameOrEmail: String!, password: String!, deviceType: DeviceType): Login
  loginWithToken(authToken: String!, action: String, deviceType: DeviceType): Login
  trainDataset(aiTrainerGroupId: String!, questions: [String]!, form: [[String]]!, editorType: String, detailed: Boolean,
               multi: Boolean): TrainDatasetResult
  addToDataset(aiTrainerGroupId: String!, editorType: String, generateResults: Boolean, dialogues: [Dialogue]!): AddToDatasetResult
}
"""
V2_ONLY = ("datasetLines", "addToDataset")


class Refused(Exception):
    """A GraphQL error the service gives (a bad token, a page too large, not your dataset)."""


@dataclass
class Kajiwoto:
    """The service's state: users, session tokens, datasets (trainer groups) and their rows."""

    api: str = "v1"
    min_interval: float = 0.0  # seconds between two pages one client may ask for
    users: dict[str, tuple[str, str]] = field(default_factory=lambda: {"kaji": ("u1", "hunter2")})  # name: (id, password)
    tokens: dict[str, str] = field(default_factory=dict)  # session token: user id
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # id: {name, owner, rows: [dict]}
    ops: list[str] = field(default_factory=list)  # the root fields asked for, in order
    throttled: int = 0  # pages refused with 429
    fail_next: int = 0  # answer this many next requests with 503 (a flaky service)
    fail_after_write: int = 0  # do this many next writes, then answer 502 (the answer lost on the way)
    hide_last: bool = False  # listings leave out the last row (a listing cut short)
    hold_at: int = 0  # a write that makes a dataset this many rows (or more) is answered once ``release`` is set
    held: threading.Event = field(default_factory=threading.Event)  # set when a write is being held
    release: threading.Event = field(default_factory=threading.Event)
    _last_page: float = 0.0
    _next_id: int = 1000
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_group(self, gid: str, owner: str = "u1", name: str = "Kaji's set") -> None:
        self.groups[gid] = {"name": name, "owner": owner, "rows": []}

    def add_row(self, gid: str, user_message: str, message: str, *, asm: str = "", condition: str = "00000",
                history: list[str] | None = None, deleted: bool = False, row_id: str | None = None) -> str:  # fmt: skip
        if row_id is None:
            self._next_id += 1
            row_id = f"r{self._next_id}"
        self.groups[gid]["rows"].append({"id": row_id, "userMessage": user_message, "message": message, "asm": asm,
                                         "condition": condition, "deleted": deleted, "history": list(history or []),
                                         "aiTrainerGroupId": gid})  # fmt: skip
        return row_id

    # -- resolvers (graphql-core calls a root value's methods with info and the arguments) ------

    def _user(self, info: Any) -> str:
        token = info.context["auth_token"]
        if token not in self.tokens:
            raise Refused("invalid auth token")
        return self.tokens[token]

    def _group(self, info: Any, gid: str, *, write: bool = False) -> dict[str, Any]:
        user = self._user(info)
        if gid not in self.groups:
            raise Refused(f"no such dataset {gid}")
        if write and self.groups[gid]["owner"] != user:
            raise Refused("not your dataset")
        return self.groups[gid]

    def _listed(self, info: Any, gid: str) -> list[dict[str, Any]]:
        rows = self._group(info, gid)["rows"]
        return rows[:-1] if self.hide_last else rows

    def welcome(self, info: Any) -> dict[str, Any]:
        return {"webVersion": "2.4.1"}

    def login(self, info: Any, usernameOrEmail: str, password: str, deviceType: str = "WEB") -> dict[str, Any]:  # noqa: N803
        user = self.users.get(usernameOrEmail)
        if user is None or user[1] != password:
            raise Refused("wrong username or password")
        token = f"session-{user[0]}-{len(self.tokens) + 1}"
        self.tokens[token] = user[0]
        return {"authToken": token, "user": {"id": user[0], "username": usernameOrEmail}}

    def loginWithToken(self, info: Any, authToken: str, action: str = "", deviceType: str = "WEB") -> dict[str, Any]:  # noqa: N802, N803
        if authToken not in self.tokens:
            raise Refused("invalid auth token")
        uid = self.tokens[authToken]
        name = next(n for n, (i, _) in self.users.items() if i == uid)
        return {"authToken": authToken, "user": {"id": uid, "username": name}}

    def aiTrainerGroup(self, info: Any, aiTrainerGroupId: str) -> dict[str, Any]:  # noqa: N802, N803
        g = self._group(info, aiTrainerGroupId)
        return {"id": aiTrainerGroupId, "name": g["name"], "count": len(g["rows"]), "deleted": False, "price": 0,
                "purchased": False, "user": {"id": g["owner"]}}  # fmt: skip

    def aiTrainedList(self, info: Any, aiTrainerGroupId: str, limit: int, page: int, searchQuery: str = "") -> list[dict[str, Any]]:  # noqa: N802, N803
        if limit < 1 or limit > 100:
            raise Refused("limit exceeds allowed range")
        rows = self._listed(info, aiTrainerGroupId)
        return rows[page * limit : (page + 1) * limit]

    def datasetLines(self, info: Any, aiTrainerGroupId: str, limit: int, offset: int, searchQuery: str = "") -> list[dict[str, Any]]:  # noqa: N802, N803
        if limit < 1 or limit > 100:
            raise Refused("limit exceeds allowed range")
        rows = self._listed(info, aiTrainerGroupId)[offset : offset + limit]
        return [{**r, "time": r["condition"][0], "recent": r["condition"][1], "endearment": r["condition"][2]} for r in rows]

    def trainDataset(self, info: Any, aiTrainerGroupId: str, questions: list[str], form: list[list[str]], editorType: str = "",  # noqa: N802, N803
                     detailed: bool = False, multi: bool = False) -> dict[str, Any]:  # fmt: skip  # noqa: N803
        g = self._group(info, aiTrainerGroupId, write=True)
        if not questions or len(questions) != len(form):
            raise Refused("questions and form differ in length")
        condition, message = form[-1]
        self.add_row(aiTrainerGroupId, questions[-1], message, condition=condition, history=questions[:-1])
        return {"calibrations": [], "count": len(g["rows"])}

    def addToDataset(self, info: Any, aiTrainerGroupId: str, dialogues: list[dict[str, Any]], editorType: str = "",  # noqa: N802, N803
                     generateResults: bool = False) -> dict[str, Any]:  # fmt: skip  # noqa: N803
        g = self._group(info, aiTrainerGroupId, write=True)
        for d in dialogues:
            c = d.get("conditions") or {}
            condition = f"{c.get('time') or 0}{c.get('recent') or 0}{c.get('endearment') or 0}00"
            self.add_row(aiTrainerGroupId, d["userMessage"], d["message"], asm=c.get("asm") or "", condition=condition,
                         history=d.get("history") or [])  # fmt: skip
        return {"count": len(g["rows"])}


class _Handler(BaseHTTPRequestHandler):
    service: Kajiwoto
    schema: Any

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        s = self.service
        if self.path != "/graphql":
            return self._answer(404, {"errors": [{"message": "not found"}]})
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        query = body["query"]
        with s.lock:
            if s.fail_next:
                s.fail_next -= 1
                return self._answer(503, {"errors": [{"message": "service unavailable"}]})
            if "aiTrainedList" in query or "datasetLines" in query:
                wait = s.min_interval - (time.monotonic() - s._last_page)
                if wait > 0:
                    s.throttled += 1
                    return self._answer(429, {"errors": [{"message": "too many requests"}]}, {"Retry-After": f"{wait:.3f}"})
                s._last_page = time.monotonic()
            if s.api == "v1" and any(op in query for op in V2_ONLY):
                field_name = next(op for op in V2_ONLY if op in query)
                kind = "Query" if field_name == "datasetLines" else "Mutation"
                return self._answer(400, {"errors": [{"message": f"Cannot query field \"{field_name}\" on type \"{kind}\"."}]})
            result = graphql_sync(self.schema, query, root_value=s, variable_values=body.get("variables") or {},
                                  context_value={"auth_token": self.headers.get("auth_token", "")})  # fmt: skip
            for d in result.data or {}:
                s.ops.append(d)
            if s.fail_after_write and any(op in (result.data or {}) for op in ("trainDataset", "addToDataset")):
                s.fail_after_write -= 1
                return self._answer(502, {"errors": [{"message": "bad gateway"}]})
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [{"message": e.message, "path": e.path} for e in result.errors]
        written = next((result.data[op] for op in ("trainDataset", "addToDataset") if (result.data or {}).get(op)), None)
        if s.hold_at and written is not None and written["count"] >= s.hold_at:  # (a client killed while it waits)
            s.held.set()
            s.release.wait(60)
            with contextlib.suppress(OSError):
                self._answer(200, out)
            return
        self._answer(200, out)


class Server:
    """``Kajiwoto`` served on 127.0.0.1 (a thread), at ``url`` (``…/graphql``)."""

    def __init__(self, service: Kajiwoto):
        handler = type("Handler", (_Handler,), {"service": service, "schema": build_schema(SDL)})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.service = service
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/graphql"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
