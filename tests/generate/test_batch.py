"""Batch mode against the stub's Batch API (``/v1/files``, ``/v1/batches``) and, for an endpoint
without one (vLLM's server), the file run elsewhere and its output collected: failed lines stay
failed, never empty; a retry sends only them."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import orjson

from chatloom.store import Store
from tests.generate.conftest import questions
from tests.generate.openai_stub import Stub


def _lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _by_question(path: Path) -> dict[str, str]:
    return {line["body"]["messages"][-1]["content"]: line["custom_id"] for line in _lines(path)}


def _asked(db: str = "chatloom.db") -> list[str]:
    with Store(db) as store:
        return sorted(c.messages[0].content for c in store.iter_conversations())


def test_submit_poll_collect_and_retry_the_failed_lines(run, tmp_path: Path) -> None:
    q = questions(tmp_path / "q.txt", 4)
    with Stub(batch_polls=1) as stub:
        args = ["generate", "qa", str(q), "--base-url", stub.base_url, "--model", "stub-model", "--run", "qa-batch"]
        r = run(*args, "--batch", "--batch-dir", "out", "--json")
        assert r.exit_code == 0, r.stderr
        sent = json.loads(r.stdout)
        [path] = [Path(f) for f in sent["files"]]
        assert path == Path("out/qa-batch.batch.jsonl") and len(sent["batches"]) == 1
        lines = _lines(path)
        assert [(x["method"], x["url"], x["body"]["model"]) for x in lines] == [
            ("POST", "/v1/chat/completions", "stub-model")
        ] * 4
        keys = _by_question(path)
        stub.batch_fail = lambda cid: True if cid == keys["question 1?"] else ("expired" if cid == keys["question 2?"] else False)
        status = json.loads(run("generate", "status", "qa-batch", "--json").stdout)
        assert status["items"]["submitted"] == 4 and status["batches"] == sent["batches"]
        # again while it is in the batch: nothing new is sent or submitted
        again = run(*args, "--batch", "--batch-dir", "out")
        assert "nothing to submit" in again.stdout and len(stub.batches) == 1

        first = run("generate", "collect", "qa-batch", "--json")
        assert first.exit_code == 0 and json.loads(first.stdout)["waiting"] == {sent["batches"][0]: "in_progress"}
        second = run("generate", "collect", "qa-batch", "--json")
        assert second.exit_code == 1 and json.loads(second.stdout) | {"waiting": {}} == {
            "run": "qa-batch",
            "done": 2,
            "failed": 2,
            "waiting": {},
        }
        status = json.loads(run("generate", "status", "qa-batch", "--json").stdout)
        errors = {f["key"]: f["error"] for f in status["failed"]}
        assert errors[keys["question 1?"]].startswith("HTTP 400")
        assert "expired" in errors[keys["question 2?"]]
        assert _asked() == ["question 0?", "question 3?"]  # the failed ones: no conversation, empty or not

        r = run(*args, "--batch", "--batch-dir", "out", "--retry-failed", "--json")
        retry = json.loads(r.stdout)
        assert set(_by_question(Path(retry["files"][0]))) == {"question 1?", "question 2?"}
        stub.batch_fail = None
        run("generate", "collect", "qa-batch")
        third = run("generate", "collect", "qa-batch", "--json")
        assert third.exit_code == 0 and json.loads(third.stdout)["done"] == 2
    assert _asked() == ["question 0?", "question 1?", "question 2?", "question 3?"]
    with Store("chatloom.db") as store:
        assert store.gen_counts("qa-batch") == {"pending": 0, "submitted": 0, "done": 4, "failed": 0}


def test_an_endpoint_without_batches_gets_the_file_and_collect_reads_its_output(run, tmp_path: Path) -> None:
    """As with vLLM: `vllm run-batch -i FILE -o OUT` runs the file; `collect --file OUT` reads it."""
    q = questions(tmp_path / "q.txt", 3)
    with Stub(batches_supported=False) as stub:
        r = run("generate", "qa", str(q), "--base-url", stub.base_url, "--model", "stub-model", "--run", "offline", "--batch")
        assert r.exit_code == 0 and "has no batch API" in r.stdout and "vllm run-batch -i offline.batch.jsonl" in r.stdout
        with Store("chatloom.db") as store:
            assert store.gen_counts("offline")["pending"] == 3  # not submitted anywhere: still to do
        # run the file as vllm run-batch does: one output line per input line, by custom_id
        client = openai.OpenAI(base_url=stub.base_url, api_key="x", max_retries=0)
        out = []
        for line in _lines(Path("offline.batch.jsonl")):
            if line["body"]["messages"][-1]["content"] == "question 2?":
                out.append({"id": "r2", "custom_id": line["custom_id"], "response": {"status_code": 500, "request_id": "r2",
                            "body": {"error": {"message": "model crashed", "type": "server_error"}}}, "error": None})  # fmt: skip
                continue
            body = client.chat.completions.create(**line["body"]).model_dump(mode="json")
            out.append({"id": "r", "custom_id": line["custom_id"], "response": {"status_code": 200, "request_id": "r", "body": body},
                        "error": None})  # fmt: skip
        Path("offline.out.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in reversed(out)))
    r = run("generate", "collect", "offline", "--file", "offline.out.jsonl", "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["done"] == 2 and json.loads(r.stdout)["failed"] == 1
    assert _asked() == ["question 0?", "question 1?"]
    status = json.loads(run("generate", "status", "offline", "--json").stdout)
    assert status["failed"][0]["error"] == "HTTP 500: model crashed"


def test_a_selfchat_cannot_be_batched(run, tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: A\n")
    (tmp_path / "t.txt").write_text("x\n")
    r = run("generate", "selfchat", "--persona", "a.yaml", "--persona", "a.yaml", "--topics", "t.txt", "--batch",
            "--base-url", "http://127.0.0.1:9/v1", "--model", "m")  # fmt: skip
    assert r.exit_code == 2 and "--batch cannot run a self-chat" in r.stderr
