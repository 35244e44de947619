"""LLM assist over HTTP against ``chatloom serve`` with a tiny model: a reply with several
candidates, continuing an assistant message at a cursor (the text after it kept, sent as
``suffix``), a save that lost the race to another editor, and keys that never leave the server."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from chatloom.model import Conversation, Message
from chatloom.store import Store
from tests.generate.openai_stub import Stub
from tests.serve.conftest import Server, start_server, stop_server
from tests.studio.conftest import Studio, start_studio, stop_studio

pytestmark = pytest.mark.slow
SECRET = "sk-test-studio-assist-0123456789abcdef"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server("tiny:llama", home=tmp_path_factory.mktemp("serve") / "home")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def assisted(served: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Studio, str]]:
    srv = served
    model = openai.OpenAI(base_url=srv.base_url, api_key="x").models.list().data[0].id
    path = tmp_path_factory.mktemp("assist") / "chats.db"
    with Store(path, create=True) as store:
        store.import_conversations([
            Conversation(id="a:1", messages=[Message(role="user", content="Hello there"), Message(role="assistant", content="Hi")]),
            Conversation(id="a:2", messages=[Message(role="user", content="Tell me a story"),
                                             Message(role="assistant", content="Once upon a time. The end.")]),
            Conversation(id="a:3", messages=[Message(role="user", content="Race me")]),
        ])  # fmt: skip
    os.environ["STUDIO_TEST_KEY"] = SECRET  # the studio process reads it; this one forgets it after
    studio = start_studio(path, "--base-url", srv.base_url, "--model", model, "--key-env", "STUDIO_TEST_KEY",
                          home=tmp_path_factory.mktemp("home"))  # fmt: skip
    yield studio, model
    stop_studio(studio)
    os.environ.pop("STUDIO_TEST_KEY", None)


def _generate(studio: Studio, conv_id: str, body: dict, revision: str | None = None) -> list[tuple[str, dict]]:
    with studio.client() as c:
        csrf = studio.csrf(c)
        etag = revision or c.get(f"/api/chats/{conv_id}").headers["etag"]
        events = []
        with c.stream("POST", f"/api/chats/{conv_id}/generate", json=body, headers={"X-CSRF-Token": csrf, "If-Match": etag}) as r:
            assert r.status_code == 200, r.read()
            assert r.headers["content-type"].startswith("text/event-stream")
            block: dict[str, str] = {}
            for line in r.iter_lines():
                if not line:
                    if block:
                        events.append((block["event"], json.loads(block["data"])))
                    block = {}
                    continue
                key, _, value = line.partition(": ")
                block[key] = value
    return events


def test_a_reply_with_three_candidates(assisted: tuple[Studio, str]) -> None:
    studio, model = assisted
    events = _generate(studio, "a:1", {"mode": "reply", "n": 3, "max_tokens": 12, "temperature": 1})
    kinds = [k for k, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "delta" in kinds
    texts = ["", "", ""]
    for kind, data in events:
        if kind == "delta":
            texts[data["i"]] += data["text"]
    done = events[-1][1]
    assert done["texts"] == texts and done["stopped"] is False and all(texts)
    with Store(studio.dataset) as store:
        e = store.entry("a:1")
    last = e.conversation.messages[-1]
    assert len(e.conversation.messages) == 3 and e.revision == done["revision"]
    assert last.role == "assistant" and last.content == texts[0] and last.meta["alternatives"] == texts[1:]
    assert last.meta["generated"]["model"] == model and last.meta["generated"]["params"]["n"] == 3
    # regenerate: a reply for the assistant message at index 2 replaces it (the old one is a revision)
    events = _generate(studio, "a:1", {"mode": "reply", "index": 2, "max_tokens": 8, "temperature": 1})
    with Store(studio.dataset) as store:
        e2 = store.entry("a:1")
        before = store.state_at("a:1", e.revision)
    assert len(e2.conversation.messages) == 3 and e2.conversation.messages[2].content == events[-1][1]["texts"][0]
    assert before is not None and before.messages[2].content == texts[0]


def test_continue_at_the_cursor_keeps_the_text_after_it(assisted: tuple[Studio, str]) -> None:
    studio, _ = assisted
    events = _generate(studio, "a:2", {"mode": "continue", "index": 1, "prefix": "Once upon a time", "suffix": ". The end.",
                                       "max_tokens": 10, "temperature": 1})  # fmt: skip
    assert events[-1][0] == "done", events[-1]
    added = events[-1][1]["texts"][0]
    assert added
    with Store(studio.dataset) as store:
        msg = store.get("a:2").messages[1]
    assert msg.content == "Once upon a time" + added + ". The end."
    assert msg.meta["generated"]["mode"] == "continue"


def test_continue_needs_an_assistant_message(assisted: tuple[Studio, str]) -> None:
    studio, _ = assisted
    with studio.client() as c:
        r = c.post("/api/chats/a:2/generate", json={"mode": "continue", "index": 0},
                   headers={"X-CSRF-Token": studio.csrf(c), "If-Match": c.get("/api/chats/a:2").headers["etag"]})  # fmt: skip
    assert r.status_code == 400 and "assistant" in r.json()["detail"]


def test_a_save_meanwhile_wins_and_the_generated_text_is_not_lost_silently(
    assisted: tuple[Studio, str], served: Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The upstream request is held (a proxy of the test's own in front of ``chatloom serve``) until
    the other save is acknowledged, so the race goes the same way on a fast or a slow machine."""
    studio, model = assisted
    release = threading.Event()

    def hold(n: int, body: dict) -> None:
        release.wait(60)

    with Stub(upstream=served.base_url, fault=hold) as proxy:
        racer = start_studio(studio.dataset, "--base-url", proxy.base_url, "--model", model,
                             home=tmp_path_factory.mktemp("home"))  # fmt: skip
        try:
            with racer.client() as c:
                etag = c.get("/api/chats/a:3").headers["etag"]
                csrf = racer.csrf(c)
                with c.stream("POST", "/api/chats/a:3/generate", json={"mode": "reply", "max_tokens": 8},
                              headers={"X-CSRF-Token": csrf, "If-Match": etag}) as r:  # fmt: skip
                    lines = r.iter_lines()
                    assert next(lines) == "event: start"
                    conv = c.get("/api/chats/a:3").json()["conversation"]
                    conv["messages"][0]["content"] = "Race me, edited meanwhile"
                    saved = c.put("/api/chats/a:3", json=conv, headers={"X-CSRF-Token": csrf, "If-Match": etag})
                    release.set()
                    assert saved.status_code == 200
                    rest = "\n".join(lines)
        finally:
            release.set()
            stop_studio(racer)
    assert proxy.completed() == {"Race me": 1}  # the reply was generated, after the save
    assert "event: error" in rest and "conflict" in rest and "not saved" in rest
    with Store(studio.dataset) as store:
        e = store.entry("a:3")
    assert [m.content for m in e.conversation.messages] == ["Race me, edited meanwhile"]


def test_the_key_never_reaches_the_browser_or_the_dataset(assisted: tuple[Studio, str]) -> None:
    studio, _ = assisted
    with studio.client() as c:
        pages = [c.get(p).text for p in ("/", "/chat/a:1", "/settings", "/dashboard", "/data")]
        api = [c.get("/api/chats/a:1").text, c.get("/api/chats").text]
    assert not any(SECRET in text for text in pages + api)
    assert SECRET.encode() not in Path(studio.dataset).read_bytes()
    wal = Path(f"{studio.dataset}-wal")
    assert not wal.exists() or SECRET.encode() not in wal.read_bytes()
