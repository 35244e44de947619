"""The edges of ``chatloom generate``: servers that answer badly, inputs given twice, a reply
written by someone else meanwhile, batches that fail whole, Ctrl+C during a long Retry-After."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from chatloom.model import Conversation, Message
from chatloom.store import Store
from tests.generate.conftest import questions, spawn
from tests.generate.openai_stub import Stub, last_user, sequence


def _gen(run, *args: str, url: str):  # type: ignore[no-untyped-def]
    r = run("generate", *args, "--base-url", url, "--model", "stub-model", "--json")
    return r.exit_code, (json.loads(r.stdout) if r.stdout.strip().startswith("{") else None), r.stderr


def _status(run, name: str) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(run("generate", "status", name, "--json").stdout)


def test_a_garbled_retry_after_and_a_proxy_page_are_no_traceback(run, tmp_path: Path) -> None:
    q = questions(tmp_path / "q.txt", 2)
    with Stub(fault=sequence("429-garbled", "html")) as stub:
        code, out, err = _gen(run, "qa", str(q), "--concurrency", "1", url=stub.base_url)
    assert "Traceback" not in err
    # the garbled 429 was retried (backoff); the HTML page is a failed request, not a result
    assert code == 1 and out["done"] == 1 and out["failed"] == 1
    [failed] = _status(run, out["run"])["failed"]
    assert "not a chat completion" in failed["error"] or "APIResponseValidationError" in failed["error"]


def test_extra_body_may_not_set_what_chatloom_sets(run, tmp_path: Path) -> None:
    q = questions(tmp_path / "q.txt", 1)
    r = run("generate", "qa", str(q), "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--extra-body", '{"stream": true}')
    assert r.exit_code == 2 and "stream" in r.stderr and r.stderr.count("\n") == 1
    r = run("generate", "qa", str(q), "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--extra-body", "[1]")
    assert r.exit_code == 2 and "a JSON object is expected" in r.stderr


def test_a_topic_twice_is_two_conversations_and_an_id_twice_is_one_item(run, tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: Ada\n")
    (tmp_path / "b.yaml").write_text("name: Bob\n")
    (tmp_path / "t.txt").write_text("bread\nbread\n")
    n = iter(range(1000))
    with Stub(reply=lambda body: f"line number {next(n)}") as stub:
        code, out, _ = _gen(run, "selfchat", "--persona", "a.yaml", "--persona", "b.yaml", "--topics", "t.txt", "--turns", "2",
                            url=stub.base_url)  # fmt: skip
        assert code == 0 and out["done"] == 2 and out["requests"] == 4
        with Store("chatloom.db") as store:
            store.put(Conversation(id="a", messages=[Message(role="user", content="hi")]))
        code, out, _ = _gen(run, "reply", "--ids", "a,a", url=stub.base_url)
        assert code == 0 and out["done"] == 1 and out["requests"] == 1
    with Store("chatloom.db") as store:
        assert store.count() == 3


def test_fill_keeps_a_reply_written_meanwhile(run, tmp_path: Path) -> None:
    with Store("chatloom.db", create=True) as store:
        store.put(Conversation(id="a", messages=[Message(role="user", content="hi")]))

    def reply(body: dict) -> str:
        with Store("chatloom.db") as store:  # a person answers by hand while the request is out
            conv = store.get("a")
            conv.messages.append(Message(role="assistant", content="written by hand"))
            store.put(conv)
        return "model answer"

    with Stub(reply=reply) as stub:
        code, out, _ = _gen(run, "reply", "--ids", "a", url=stub.base_url)
    assert code == 1 and "written since the request" in _status(run, out["run"])["failed"][0]["error"]
    with Store("chatloom.db") as store:
        assert [m.content for m in store.get("a").messages] == ["hi", "written by hand"]


def test_a_conversation_deleted_before_its_batch_is_collected_fails_alone(run, tmp_path: Path) -> None:
    with Store("chatloom.db", create=True) as store:
        for i in "abc":
            store.put(Conversation(id=i, messages=[Message(role="user", content=f"hi {i}")]))
    with Stub(batch_polls=0) as stub:
        r = run("generate", "reply", "--all", "--base-url", stub.base_url, "--model", "stub-model", "--batch", "--run", "r")
        assert r.exit_code == 0
        assert run("rm", "b").exit_code == 0
        r = run("generate", "collect", "r", "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["done"] == 2
    assert "input is gone" in _status(run, "r")["failed"][0]["error"]


def test_retrying_a_batch_whose_every_line_failed_makes_a_new_batch(run, tmp_path: Path) -> None:
    q = questions(tmp_path / "q.txt", 2)
    with Stub(batch_polls=0, batch_fail=lambda cid: True) as stub:
        args = ["generate", "qa", str(q), "--base-url", stub.base_url, "--model", "stub-model", "--run", "all-failed", "--batch"]
        run(*args)
        assert run("generate", "collect", "all-failed").exit_code == 1
        stub.batch_fail = None
        run(*args, "--retry-failed")  # the same two lines: the same file, byte for byte
        r = run("generate", "collect", "all-failed", "--json")
        assert r.exit_code == 0 and json.loads(r.stdout)["done"] == 2
        assert len(stub.batches) == 2


def test_a_batch_that_fails_whole_says_why_on_each_line(run, tmp_path: Path) -> None:
    q = questions(tmp_path / "q.txt", 2)
    with Stub(batch_polls=1) as stub:
        run("generate", "qa", str(q), "--base-url", stub.base_url, "--model", "stub-model", "--run", "bad", "--batch", "--batch-dir", "b")
        # the file the endpoint holds is broken (as if cut in transfer): the batch fails whole, with errors.data
        [batch] = stub.batches
        stub._contents[batch["input_file_id"]] = b'{"custom_id": "x", "method": "POST"\n'
        run("generate", "collect", "bad")  # in progress
        r = run("generate", "collect", "bad")
    assert r.exit_code == 1
    errors = {f["error"] for f in _status(run, "bad")["failed"]}
    assert len(errors) == 1 and "the batch" in next(iter(errors))


def test_collect_on_a_run_without_batches_says_so(run, tmp_path: Path) -> None:
    q = questions(tmp_path / "q.txt", 1)
    with Stub() as stub:
        _gen(run, "qa", str(q), "--run", "plain", url=stub.base_url)
    r = run("generate", "collect", "plain")
    assert r.exit_code == 2 and "no batch waiting" in r.stderr


def test_the_first_ctrl_c_stops_a_long_retry_after_wait(tmp_path: Path) -> None:
    q = questions(tmp_path / "q.txt", 3)
    with Stub(fault=lambda n, body: "429", retry_after=120) as stub:
        proc = spawn("generate", "qa", str(q), "--base-url", stub.base_url, "--model", "stub-model")
        deadline = time.monotonic() + 60
        while not stub.outcomes()["429"] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)  # not after the two minutes the server asked for
    assert proc.returncode == 130 and "Traceback" not in err
    with Store("chatloom.db") as store:
        [r] = store.gen_runs()
        assert r["pending"] == 3 and r["failed"] == 0  # asked, not answered: still to do


def test_a_selfchat_without_an_assistant_line_is_no_data(run, tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: Ada\n")
    (tmp_path / "b.yaml").write_text("name: Bob\n")
    (tmp_path / "t.txt").write_text("echoes\n")
    with Stub(reply=lambda body: "Hello there, how are you?") as stub:  # Bob repeats Ada at once
        code, out, _ = _gen(run, "selfchat", "--persona", "a.yaml", "--persona", "b.yaml", "--topics", "t.txt", "--turns", "6",
                            url=stub.base_url)  # fmt: skip
    assert code == 1 and out["failed"] == 1
    status = _status(run, out["run"])
    assert status["items"]["failed"] == 1 and status["items"]["done"] == 0
    assert "before Bob said anything" in status["failed"][0]["error"]
    with Store("chatloom.db") as store:
        assert store.count() == 0


def test_status_of_a_selfchat_stopped_half_way_is_not_done(run, tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: Ada\n")
    (tmp_path / "b.yaml").write_text("name: Bob\n")
    (tmp_path / "t.txt").write_text("weather\n")
    n = iter(range(1000))
    with Stub(reply=lambda body: f"line number {next(n)}", fault=lambda k, body: "400" if k == 2 else None) as stub:
        code, out, _ = _gen(run, "selfchat", "--persona", "a.yaml", "--persona", "b.yaml", "--topics", "t.txt", "--turns", "6",
                            url=stub.base_url)  # fmt: skip
    assert code == 1
    status = _status(run, out["run"])
    assert status["items"] == {"done": 0, "pending": 0, "submitted": 0, "failed": 1}
    assert status["requests"]["done"] == 2 and status["requests"]["failed"] == 1
    assert Counter(last_user(r.body) is not None for r in stub.requests) == Counter({True: 3})


def _first_then_sigint(tmp_path: Path, *limit: str) -> tuple[int, str, Stub]:  # type: ignore[type-arg]
    """Run qa on 4 questions with a rate limit, wait until the first answer and a little more,
    then Ctrl+C: (exit code, stderr, the stub)."""
    q = questions(tmp_path / "q.txt", 4)
    with Stub() as stub:
        proc = spawn("generate", "qa", str(q), "--base-url", stub.base_url, "--model", "stub-model", "--concurrency", "4", *limit)
        deadline = time.monotonic() + 60
        while not stub.completed() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # a limit that let the others through would have sent them by now
        sent = len(stub.requests_for(path="/v1/chat/completions"))
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)  # the wait for the limit's next turn ends at once
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert sent == 1, sent
    return proc.returncode, err, stub


def test_the_request_rate_limit_holds_the_next_request_and_ctrl_c_ends_its_wait(tmp_path: Path) -> None:
    code, err, _ = _first_then_sigint(tmp_path, "--rpm", "1")
    assert code == 130 and "Traceback" not in err
    with Store("chatloom.db") as store:
        [r] = store.gen_runs()
        assert r["done"] == 1 and r["pending"] == 3


def test_the_token_rate_limit_holds_a_request_that_would_pass_it(tmp_path: Path) -> None:
    # each request is estimated at its prompt plus 50 reply tokens: the second does not fit in 80 a minute
    code, err, _ = _first_then_sigint(tmp_path, "--tpm", "80", "--max-tokens", "50")
    assert code == 130 and "Traceback" not in err
