"""The dashboard: counts by tag, language, source and role; the token histogram with its p50/p95
marks and a limit's count; duplicates found by the build's own exact and near dedup."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from chatloom.model import Conversation, Message
from chatloom.store import Store
from chatloom.studio.dashboard import histogram
from tests.studio.conftest import Studio, start_studio, stop_studio

STORY = ("The lighthouse keeper counted the ships every night, wrote their names in a green book, and "
         "waited for the one that never came back to the harbour before the winter storms began.")  # fmt: skip


def test_the_histogram_marks_p50_p95_and_the_limit() -> None:
    counts = [5, 10, 10, 20, 40, 80, 160, 320, 640, 5000]
    h = histogram(counts, limit=300)
    p50, p95 = (int(v) for v in np.percentile(counts, [50, 95]))
    assert (h["p50"], h["p95"], h["max"], h["n"]) == (p50, p95, 5000, 10)
    assert [m["label"] for m in h["marks"]] == [f"p50 {p50:,}", f"p95 {p95:,}", "limit 300"]
    assert h["over"] == 3 and sum(b["n"] for b in h["bars"]) == 10
    xs = [m["x"] for m in h["marks"]]
    assert 0 <= xs[0] < xs[2] < xs[1] <= 600  # p50 < limit < p95 on the log axis
    assert histogram([]) == {"bars": [], "marks": [], "n": 0, "over": 0, "ticks": []}


@pytest.fixture(scope="module")
def dup_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    path = tmp_path_factory.mktemp("dash") / "dups.db"
    rng = random.Random(0)
    words = "apple river stone cloud maple tiger violin harbor candle desert meadow copper lantern orbit pepper glacier".split()
    texts = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(30)]  # distinct (numbers are normalized away)
    convs = [Conversation(id=f"u:{i}", messages=[Message(role="user", content=t), Message(role="assistant", content=t[::-1])],
                          tags=["plain"]) for i, t in enumerate(texts)]  # fmt: skip
    convs += [Conversation(id="d:exact", messages=[Message(role="user", content="  " + texts[3].upper() + " "),
                                                   Message(role="assistant", content=texts[3][::-1])], tags=["copy"], language="de")]  # fmt: skip
    convs += [Conversation(id=f"n:{k}", messages=[Message(role="user", content="Tell me a story"),
                                                  Message(role="assistant", content=STORY + (" The end." if k else ""))],
                           source={"format": "sharegpt"}) for k in range(2)]  # fmt: skip
    with Store(path, create=True) as store:
        store.import_conversations(convs)
    s = start_studio(path, home=tmp_path_factory.mktemp("home"))
    yield s
    stop_studio(s)


def _task(studio: Studio, c, route: str) -> dict:
    r = c.post(route, headers={"X-CSRF-Token": studio.csrf(c)})
    assert r.status_code == 202
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        t = c.get(f"/api/tasks/{r.json()['task']}").json()
        if t["status"] != "running":
            assert t["status"] == "done", t
            return t["result"]
        time.sleep(0.1)
    raise AssertionError("the task did not finish")


def test_counts_duplicates_and_the_histogram(dup_studio: Studio) -> None:
    with dup_studio.client() as c:
        page = c.get("/dashboard").text
        assert "33 chats" in page
        for label, n in (("plain", 30), ("copy", 1), ("de", 1), ("sharegpt", 2), ("assistant", 33), ("user", 33)):
            assert re.search(rf">{label}</(a|td)>.*?<td class=\"n\">{n}</td>", page, re.S), label
        assert "0 of 33 chats counted" in page and "<svg" not in page
        assert _task(dup_studio, c, "/api/count-tokens")["counted"] == 33
        page = c.get("/dashboard?limit=30").text
        assert "33 of 33 chats counted" in page and 'class="hist"' in page and "p50 " in page and "p95 " in page
        assert "limit 30" in page and re.search(r"\d+ chats over 30 tokens", page)
        d = _task(dup_studio, c, "/api/duplicates")
    assert d["exact"] == [["u:3", "d:exact"]] and d["exact_groups"] == 1 and d["exact_extra"] == 1
    assert d["near"] == [["n:0", "n:1"]] and d["near_groups"] == 1


def test_chats_over_a_limit_link_to_the_list(dup_studio: Studio) -> None:
    with dup_studio.client() as c:
        _task(dup_studio, c, "/api/count-tokens")
        link = re.search(r'href="(/\?min_tokens=\d+&amp;sort=tokens)"', c.get("/dashboard?limit=30").text)
        assert link
        listed = c.get("/api/chats?" + link.group(1).split("?")[1].replace("&amp;", "&")).json()["rows"]
    assert listed and all(r["tokens"] > 30 for r in listed)
    assert [r["tokens"] for r in listed] == sorted((r["tokens"] for r in listed), reverse=True)


def test_dashboard_on_an_empty_dataset(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    Store(path, create=True).close()
    s = start_studio(path, home=tmp_path / "home")
    try:
        with s.client() as c:
            r = c.get("/dashboard")
        assert r.status_code == 200 and "0 chats" in r.text and "<svg" not in r.text
    finally:
        stop_studio(s)
