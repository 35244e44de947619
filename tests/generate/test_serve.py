"""``chatloom generate`` against ``chatloom serve`` with a tiny model, straight and through the
test's proxy that injects 429 with Retry-After, 500s, dropped connections, slow answers, and
dies mid-run and comes back."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from chatloom.store import Store
from tests.generate.conftest import questions
from tests.generate.openai_stub import Stub
from tests.serve.conftest import Server, start_server, stop_server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    srv = start_server("tiny:llama", home=tmp_path_factory.mktemp("serve") / "home")
    model = openai.OpenAI(base_url=srv.base_url, api_key="x").models.list().data[0].id
    yield srv, model
    stop_server(srv)


def _ok(stub: Stub) -> Counter:
    return Counter(r.key for r in stub.requests_for(path="/v1/chat/completions", outcome="ok"))


def test_qa_against_chatloom_serve(run, tmp_path: Path, served: tuple[Server, str]) -> None:
    srv, model = served
    q = questions(tmp_path / "q.txt", 3)
    assert (
        run("endpoints", "add", "local", srv.base_url, "--model", model, "--max-tokens", "8", "--temperature", "1").exit_code == 0
    )
    r = run("generate", "qa", str(q), "--endpoint", "local", "--system", "You are terse.", "--seed", "1", "--json")
    assert r.exit_code == 0, run("generate", "status", "--json").stdout + r.stdout
    with Store("chatloom.db") as store:
        convs = list(store.iter_conversations())
    assert len(convs) == 3
    for c in convs:
        assert c.messages[-1].role == "assistant" and c.messages[-1].content.strip()  # the tiny model says something
        g = c.meta["generated"]
        assert g["model"] == model and g["endpoint"] == "local" and g["usage"]["completion_tokens"] <= 8
        assert g["parameters"] == {"temperature": 1.0, "max_tokens": 8, "seed": 1}
    # greedy, the tiny random model answers only newlines: a whitespace reply is a failure, not data
    r = run("generate", "qa", str(q), "--endpoint", "local", "--temperature", "0", "--json")
    assert r.exit_code == 1
    status = run("generate", "status", "--json").stdout
    assert '"failed": 3' in status


def test_through_a_faulty_proxy_every_item_is_done_once(run, tmp_path: Path, served: tuple[Server, str]) -> None:
    srv, model = served
    q = questions(tmp_path / "q.txt", 8)
    faults = {0: "429", 1: "500", 2: "drop", 3: "slow", 5: "503", 6: "429"}
    with Stub(upstream=srv.base_url, fault=lambda n, body: faults.get(n), retry_after=0.3, slow_seconds=15) as proxy:
        r = run("generate", "qa", str(q), "--base-url", proxy.base_url, "--model", model, "--max-tokens", "6", "--timeout", "5",
                "--concurrency", "3", "--json")  # fmt: skip
        assert r.exit_code == 0, r.stderr
        outcomes = proxy.outcomes()
        assert outcomes["429"] == 2 and outcomes["500"] == 1 and outcomes["503"] == 1 and outcomes["drop"] == 1
        assert sorted(_ok(proxy).values()) == [1] * 8  # answered in time: never asked again
    with Store("chatloom.db") as store:
        assert store.count() == 8
        [r] = store.gen_runs()
        assert r["done"] == 8


def test_the_server_dies_mid_run_and_comes_back(run, tmp_path: Path, served: tuple[Server, str]) -> None:
    srv, model = served
    q = questions(tmp_path / "q.txt", 12)
    outage = threading.Event()

    def fifth_is_held(n: int, body: dict) -> str | None:  # held until the stop cuts it: in flight when the server dies
        if n == 4:
            outage.set()
            return "slow"
        return None

    with Stub(upstream=srv.base_url, latency=0.1, fault=fifth_is_held, slow_seconds=60) as proxy:

        def kill_and_revive() -> None:
            outage.wait(60)
            proxy.stop()  # every connection cut, requests in flight get no answer
            time.sleep(1.5)
            proxy.start()

        t = threading.Thread(target=kill_and_revive)
        t.start()
        r = run("generate", "qa", str(q), "--base-url", proxy.base_url, "--model", model, "--max-tokens", "4", "--concurrency", "2",
                "--max-attempts", "8", "--json")  # fmt: skip
        t.join()
        assert r.exit_code == 0, r.stderr
        assert proxy.outcomes()["stopped"] >= 1
        assert _ok(proxy) == Counter({f"question {i}?": 1 for i in range(12)})
    with Store("chatloom.db") as store:
        assert store.count() == 12


def test_a_dead_server_fails_items_with_their_error_and_a_rerun_finishes(run, tmp_path: Path, served: tuple[Server, str]) -> None:
    srv, model = served
    q = questions(tmp_path / "q.txt", 4)
    proxy = Stub(upstream=srv.base_url)
    proxy.start()
    proxy.stop()  # its port, with nobody listening
    args = [
        "generate",
        "qa",
        str(q),
        "--base-url",
        proxy.base_url,
        "--model",
        model,
        "--max-tokens",
        "4",
        "--max-attempts",
        "2",
        "--json",
    ]
    r = run(*args)
    assert r.exit_code == 1
    status = run("generate", "status", "--json")
    assert '"failed": 4' in status.stdout
    with Store("chatloom.db") as store:
        run_name = store.gen_runs()[0]["run"]
        assert all(row.error.startswith("APIConnectionError") for row in store.gen_rows(run_name))
    with proxy:
        r = run(*args, "--retry-failed")
        assert r.exit_code == 0
        assert _ok(proxy) == Counter({f"question {i}?": 1 for i in range(4)})


def test_serve_flag_serves_a_model_for_the_command_and_the_same_command_resumes(run, tmp_path: Path) -> None:
    q = questions(tmp_path / "q.txt", 2)
    args = ["generate", "qa", str(q), "--serve", "tiny:llama", "--max-tokens", "6", "--temperature", "1", "--seed", "3", "--json"]
    first = run(*args)
    assert first.exit_code == 0, first.stderr
    out = json.loads(first.stdout)
    assert out["done"] == 2
    again = json.loads(run(*args).stdout)  # a new server on a new port: the same run, nothing sent
    assert again["run"] == out["run"] and again["requests"] == 0 and again["done_before"] == 2
    with Store("chatloom.db") as store:
        [conv, _] = list(store.iter_conversations())
    assert conv.meta["generated"]["endpoint"] == "serve:tiny:llama"
    bad = run("generate", "qa", str(q), "--serve", str(tmp_path / "no-such-run"))
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --serve ") and "did not start" in bad.stderr
