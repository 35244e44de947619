"""The reads routed ahead of FastAPI (``app.Quick``: a list page, a chat opened) under a real
uvicorn server on 127.0.0.1: they answer what FastAPI's routes answered, with FastAPI's errors
and the guard's checks and headers, and leave every other route, the chat's history under the
same prefix included, to FastAPI."""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

from chatloom.model import Conversation, Message
from chatloom.store import Store
from chatloom.studio.api import ChatId
from chatloom.studio.app import SECURITY_HEADERS
from tests.studio.conftest import served_in_process

#: ids a path can hold: '#', '/', a space, words the history routes end with, non-ASCII
IDS = ["a#1", "dir/with/slashes", "myhistory", "x/history/y", "ends/revisions", "revisions/x/y", "sp ace", "çava/ü"]


def chat(conv_id: str, text: str = "hello") -> Conversation:
    return Conversation(id=conv_id, messages=[Message(role="user", content=text), Message(role="assistant", content=f"re: {conv_id}")])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    path = tmp_path_factory.mktemp("quick") / "chats.db"
    with Store(path, create=True) as s:
        for conv_id in IDS:
            s.put(chat(conv_id))
        s.put(chat("gone"))
        s.delete(["gone"])
    with served_in_process(path) as served:
        yield served


@pytest.fixture(scope="module")
def api(served: tuple[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0], timeout=30) as c:
        yield c


def raw_get(url: str, target: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """The request target sent as given: '/' in an id unencoded, as a hand-typed URL has it."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request(method, target)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


@pytest.mark.parametrize("conv_id", IDS)
def test_a_chat_opens_by_its_id_encoded_or_not(served: tuple[str, Any], api: httpx.Client, conv_id: str) -> None:
    r = api.get("/api/chats/" + quote(conv_id, safe=""))
    assert r.status_code == 200, r.text
    assert r.json()["conversation"]["id"] == conv_id
    assert r.json()["conversation"]["messages"][1]["content"] == f"re: {conv_id}"
    assert r.json()["revision"] == 1 and r.headers["etag"] == '"1"'
    assert r.headers["content-type"] == "application/json"
    for name, value in SECURITY_HEADERS.items():  # the guard's headers, as on every answer
        assert r.headers[name] == value
    status, _, body = raw_get(served[0], "/api/chats/" + quote(conv_id, safe="/"))  # "/" sent as it is
    assert status == 200 and f'"id":"{conv_id}"'.encode() in body


def test_the_history_routes_under_the_same_prefix_are_still_fastapis(api: httpx.Client) -> None:
    for conv_id in ("dir/with/slashes", "x/history/y", "revisions/x/y"):
        hist = api.get(f"/api/chats/{quote(conv_id, safe='/')}/history")
        assert hist.status_code == 200, hist.text
        assert [h["op"] for h in hist.json()] == ["create"]
        state = api.get(f"/api/chats/{quote(conv_id, safe='/')}/revisions/1")
        assert state.status_code == 200 and state.json()["conversation"]["id"] == conv_id
    assert api.get("/api/chats/a%231/revisions/x").status_code == 422  # FastAPI's validation of N
    assert api.get("/api/chats/no:such/history").status_code == 404


def test_errors_are_fastapis_json(api: httpx.Client) -> None:
    r = api.get("/api/chats/no:such")
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    assert r.json() == {"detail": "no:such: no such conversation in chats.db"}  # the file's name, not its path
    assert r.headers["x-content-type-options"] == "nosniff"
    gone = api.get("/api/chats/gone")
    assert gone.status_code == 410 and re.match(r"gone: deleted \(revision \d+\); undo brings it back", gone.json()["detail"])
    assert api.get("/api/chats/").status_code == 404  # no id at all
    bad = api.get("/api/chats", params={"sort": "nonsense"})
    assert bad.status_code == 400 and bad.json() == {"detail": "sort: 'nonsense' is not one of updated, messages, title, tokens"}


def test_head_and_writes(served: tuple[str, Any], api: httpx.Client) -> None:
    status, headers, body = raw_get(served[0], "/api/chats/a%231", "HEAD")
    assert status == 200 and headers["etag"] == '"1"' and int(headers["content-length"]) > 0 and body == b""
    # a write to the same path is FastAPI's: it needs If-Match
    r = api.put("/api/chats/a%231", json={"messages": [{"role": "user", "content": "x"}]}, headers={"X-Chatloom-Client": "test"})
    assert r.status_code == 428


def test_the_list_page(api: httpx.Client) -> None:
    r = api.get("/api/chats", params={"limit": 3})
    assert r.status_code == 200
    page = r.json()
    assert len(page["rows"]) == 3 and page["next"]
    rest = api.get("/api/chats", params={"limit": 50, "after": page["next"]}).json()
    assert {row["id"] for row in page["rows"] + rest["rows"]} == set(IDS)  # the deleted one is not listed
    assert api.get("/api/chats", params={"q": "slashes"}).json()["rows"][0]["id"] == "dir/with/slashes"


def test_the_token_is_needed_on_these_routes_too(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    with Store(path, create=True) as s:
        s.put(chat("a#1"))
    with served_in_process(path, token="s3cret") as (url, _), httpx.Client(base_url=url, timeout=30) as c:
        for target in ("/api/chats/a%231", "/api/chats", "/api/chats/a%231/history"):
            assert c.get(target).status_code == 401
            assert c.get(target, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert c.get(target, headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_chat_id_leaves_the_history_routes_alone() -> None:
    whole = re.compile(f"^{ChatId.regex}$")
    for text in ("a", "a/b", "myhistory", "a/history/b", "a/historyx", "a/revisions", "a/revisions/1/x", "", "a/revisions/"):
        assert whole.match(text), text
    for text in ("a/history", "a/b/history", "/history", "a/revisions/1", "a/revisions/x"):
        assert not whole.match(text), text


def test_odd_list_queries_are_answered_not_crashed(api: httpx.Client) -> None:
    assert len(api.get("/api/chats", params={"limit": -1}).json()["rows"]) == 1  # at least one row
    assert len(api.get("/api/chats", params={"limit": 10_000}).json()["rows"]) == len(IDS)  # at most 500
    r = api.get("/api/chats", params={"q": "\x00"})
    assert r.status_code == 400 and r.json()["detail"].startswith("chats.db: ")  # the file's name, not its path
    assert str(Path("/")) + "tmp" not in r.text and "quick" not in r.text


def test_an_unexpected_error_is_a_500_with_the_guards_headers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from chatloom.studio import api as studio_api

    path = tmp_path / "chats.db"
    with Store(path, create=True) as s:
        s.put(chat("a#1"))
    with served_in_process(path) as (url, _), httpx.Client(base_url=url, timeout=30) as c:

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("a fault injected by the test")

        monkeypatch.setattr(studio_api, "page_rows", broken)
        r = c.get("/api/chats")
        assert r.status_code == 500 and r.text == "Internal Server Error"
        assert "a fault injected" not in r.text  # no trace to the page
        for name, value in SECURITY_HEADERS.items():
            assert r.headers[name] == value
        monkeypatch.undo()
        # uvicorn closes a connection whose request raised (as under FastAPI's own stack): a new one
        assert httpx.get(url + "/api/chats", timeout=30).status_code == 200


def test_a_tokenizer_setting_this_machine_lacks_is_a_409_that_says_so(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    with Store(path, create=True) as s:
        s.put(chat("a#1"))
        s.set_setting("tokenizer", str(tmp_path / "no-such-tokenizer-folder"))
    with served_in_process(path) as (url, _), httpx.Client(base_url=url, timeout=30) as c:
        r = c.get("/api/chats")
        assert r.status_code == 409 and r.json()["detail"].startswith("the dataset's tokenizer setting: ")
        assert r.json()["detail"].endswith("(change it on the settings page)")
        assert c.get("/api/chats/a%231").status_code == 200  # a chat still opens
        assert c.get("/settings").status_code == 200  # and the setting can be changed


def test_the_guards_own_answers_carry_its_headers(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    Store(path, create=True).close()
    with served_in_process(path, token="s3cret") as (url, _), httpx.Client(base_url=url, timeout=30) as c:
        r = c.get("/api/chats")
        assert r.status_code == 401
        for name, value in SECURITY_HEADERS.items():
            assert r.headers[name] == value
