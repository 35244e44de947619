"""The studio's store pool under a real uvicorn server (uvloop and httptools, as ``chatloom
studio`` runs it) on 127.0.0.1: opening a chat is read on the event loop when a store is free,
and when none is, in the thread pool, so that the loop never waits for a store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatloom.model import Conversation, Message
from chatloom.store import Store
from tests.studio.conftest import served_in_process


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """A studio of one pooled store over a dataset of one chat: (base URL, the FastAPI app)."""
    path = tmp_path / "chats.db"
    with Store(path, create=True) as s:
        s.put(Conversation(id="a#1", messages=[Message(role="user", content="hello"), Message(role="assistant", content="hi")]))
    with served_in_process(path, pool_size=1) as served:
        yield served


def test_open_a_chat_waits_for_a_store_in_the_thread_pool_not_on_the_loop(served: tuple[str, Any]) -> None:
    url, app = served
    pool = app.state.pool
    chat = "/api/chats/a%231"
    with httpx.Client(base_url=url) as c:  # a free store: read on the loop
        r = c.get(chat)
        assert r.status_code == 200 and r.json()["conversation"]["messages"][1]["content"] == "hi"
        assert r.headers["etag"] == '"1"'
        assert c.get("/api/chats/nothing-here").status_code == 404  # the 404 raised on the loop

    async def while_held() -> tuple[int, int, bool]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            with pool.store():  # the only store is lent out
                opening = asyncio.ensure_future(c.get(chat))
                await asyncio.sleep(0.3)
                # the loop is not blocked: another request is answered while the read waits
                other = await asyncio.wait_for(c.get("/favicon.ico"), 10)
                waiting = not opening.done()
            answered = await opening  # the store is back: the waiting read ends
            return other.status_code, answered.status_code, waiting

    # a loop of its own, in a thread: an earlier test in this process (Playwright's) may have left
    # one running on this thread
    with ThreadPoolExecutor(1) as ex:
        other, answered, waiting = ex.submit(asyncio.run, while_held()).result(60)
    assert other == 204
    assert waiting, "opening a chat did not wait for the store"
    assert answered == 200
    with pool.free() as s:  # every store is back in the pool
        assert s is not None


def test_a_long_chat_is_read_in_the_thread_pool_and_whole(served: tuple[str, Any]) -> None:
    from chatloom.studio.api import QUICK_MESSAGES

    url, app = served
    n = QUICK_MESSAGES + 1
    with app.state.pool.store() as s:
        s.put(Conversation(id="long", messages=[Message(role="user" if i % 2 == 0 else "assistant", content=f"m{i}") for i in range(n)]))
        assert s.entry("long", most=QUICK_MESSAGES) is None  # too long for the event loop
        assert s.entry("a#1", most=QUICK_MESSAGES) is not None
        assert len(s.entry("long", most=n).conversation.messages) == n  # type: ignore[union-attr]
    with httpx.Client(base_url=url) as c:
        r = c.get("/api/chats/long")
        assert r.status_code == 200 and r.headers["etag"] == '"1"'
        assert [m["content"] for m in r.json()["conversation"]["messages"]] == [f"m{i}" for i in range(n)]
        s_id = "gone"
        with app.state.pool.store() as s:
            s.put(Conversation(id=s_id, messages=[Message(role="user", content="x")] * n))
            s.delete([s_id])
        assert c.get(f"/api/chats/{s_id}").status_code == 410  # a tombstone, the long way too


def test_the_wal_is_checkpointed_in_the_background_not_by_a_save(tmp_path: Path) -> None:
    from chatloom.studio.app import Checkpointer, Pool

    path = tmp_path / "chats.db"
    with Store(path, create=True) as s:
        s.put(Conversation(id="seed", messages=[Message(role="user", content="hi")]))
    pool = Pool(path, size=2)
    checkpoints = Checkpointer(path, every=0.05)
    try:
        with pool.store() as s:  # a pooled store's commits leave the WAL to the checkpointer
            assert s.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == Pool.BEHIND
            for i in range(30):
                s.put(Conversation(id=f"c{i}", messages=[Message(role="user", content=f"message {i} " * 50)]))
        deadline = time.monotonic() + 20
        while checkpoints.passes == 0:
            assert time.monotonic() < deadline, "nothing was checkpointed"
            time.sleep(0.02)
    finally:
        checkpoints.close()
        pool.close()
    assert not checkpoints.running
    with Store(path) as s:
        assert s.count() == 31
