"""``chatloom generate`` killed and run again: SIGKILL at random points (every item done exactly
once in the end, no duplicate conversation, no request for a finished item), and Ctrl+C (the
requests in flight finish and are recorded; nothing is asked twice)."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from chatloom.store import Store
from tests.generate.conftest import questions, spawn
from tests.generate.openai_stub import Stub


def _ok(stub: Stub) -> Counter:
    return Counter(r.key for r in stub.requests_for(path="/v1/chat/completions", outcome="ok"))


def _wait_for(cond, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_kill_9_at_random_points_then_again_every_item_is_done_exactly_once(tmp_path: Path) -> None:
    n, concurrency, kills = 40, 4, 4
    q = questions(tmp_path / "q.txt", n)
    rng = random.Random(7)
    with Stub(latency=0.05) as stub:
        args = ["generate", "qa", str(q), "--base-url", stub.base_url, "--model", "stub-model", "--concurrency", str(concurrency)]
        for _ in range(kills):
            # kill at a random number of answers into the run (the process start-up is not counted)
            target = sum(_ok(stub).values()) + rng.randint(1, 6)
            proc = spawn(*args)
            _wait_for(lambda p=proc, t=target: sum(_ok(stub).values()) >= t or p.poll() is not None)
            time.sleep(rng.uniform(0, 0.05))
            proc.kill()
            proc.wait()
        final = spawn(*args)
        out, err = final.communicate(timeout=120)
        assert final.returncode == 0, err
        answered = _ok(stub)
    assert set(answered) == {f"question {i}?" for i in range(n)}
    # a question is asked again only when a kill caught its answer in flight: at most `concurrency` per kill
    assert sum(answered.values()) - n <= kills * concurrency
    with Store("chatloom.db") as store:
        convs = list(store.iter_conversations())
        [run] = store.gen_runs()
        assert run["done"] == n and run["pending"] == run["failed"] == 0
        assert store.check().ok
    assert sorted(c.messages[0].content for c in convs) == sorted(f"question {i}?" for i in range(n))  # no duplicate, no loss


def test_ctrl_c_lets_the_requests_in_flight_finish_and_nothing_is_asked_twice(tmp_path: Path) -> None:
    q = questions(tmp_path / "q.txt", 30)
    with Stub(latency=0.4) as stub:
        args = ["generate", "qa", str(q), "--base-url", stub.base_url, "--model", "stub-model", "--concurrency", "3"]
        proc = spawn(*args)
        _wait_for(lambda: stub.in_flight >= 3 and len(_ok(stub)) >= 3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "interrupted" in err and "Traceback" not in err
        with Store("chatloom.db") as store:
            [run] = store.gen_runs()
            # the three in flight at Ctrl+C were answered and recorded, not dropped
            assert run["done"] == sum(_ok(stub).values()) and run["done"] >= 6
            assert run["pending"] == 30 - run["done"]
        again = spawn(*args)
        _, err = again.communicate(timeout=120)
        assert again.returncode == 0, err
        assert _ok(stub) == Counter({f"question {i}?": 1 for i in range(30)})


def test_a_second_ctrl_c_cancels_what_is_in_flight_and_leaves_it_pending(tmp_path: Path) -> None:
    q = questions(tmp_path / "q.txt", 10)
    with Stub(latency=30) as stub:
        proc = spawn("generate", "qa", str(q), "--base-url", stub.base_url, "--model", "stub-model", "--concurrency", "2")
        _wait_for(lambda: stub.in_flight >= 2)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 130 and "Traceback" not in err
    with Store("chatloom.db") as store:
        [run] = store.gen_runs()
        assert run["pending"] == 10 and run["done"] == run["failed"] == 0
