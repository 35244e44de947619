"""``chatloom generate`` against a real OpenAI-compatible server on 127.0.0.1 (the test's own stub,
which speaks the protocol the ``openai`` SDK expects and injects faults): what is written, the
journal, failures that stay failures, resuming, the three generators, dry runs and budgets."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from chatloom.generate.client import retry_after
from chatloom.generate.jobs import stop_rule
from chatloom.model import Conversation, Message
from chatloom.store import PlannedRequest, Store
from tests.generate.conftest import questions
from tests.generate.openai_stub import Stub, for_content, last_user, sequence


def gen(run: Any, *args: str, url: str, json_out: bool = True) -> tuple[int, Any, str]:
    """``chatloom generate ARGS --base-url URL --model stub-model [--json]``: (exit, JSON or text, stderr)."""
    extra = ["--json"] if json_out else []
    result = run("generate", *args, "--base-url", url, "--model", "stub-model", *extra)
    out = result.stdout
    return result.exit_code, (json.loads(out) if json_out and out.strip().startswith("{") else out), result.stderr


def conversations(db: str = "chatloom.db") -> list[Conversation]:
    with Store(db) as store:
        return list(store.iter_conversations())


def test_qa_writes_one_conversation_per_question_with_its_provenance(run, tmp_path: Path) -> None:
    q = questions(tmp_path / "q.txt", 5)
    with Stub(latency=0.01) as stub:
        code, out, _ = gen(run, "qa", str(q), "--system", "You are Ada.", "--temperature", "0.3", "--max-tokens", "20",
                           "--add-tag", "ada", url=stub.base_url)  # fmt: skip
        assert code == 0, out
        assert out["done"] == 5 and out["failed"] == 0 and out["requests"] == 5
        assert stub.completed() == {f"question {i}?": 1 for i in range(5)}
        sent = stub.requests_for(path="/v1/chat/completions")[0].body
        assert sent["temperature"] == 0.3 and sent["max_tokens"] == 20
        assert sent["messages"][0] == {"role": "system", "content": "You are Ada."}
    convs = conversations()
    assert len(convs) == 5
    by_q = {c.messages[1].content: c for c in convs}
    c = by_q["question 3?"]
    assert [m.role for m in c.messages] == ["system", "user", "assistant"]
    assert c.messages[2].content == "echo: question 3?"
    assert c.tags == ["generated", "ada"]
    g = c.meta["generated"]
    assert g["run"] == out["run"] and g["model"] == "stub-model" and g["parameters"] == {"temperature": 0.3, "max_tokens": 20}
    assert g["usage"]["total_tokens"] > 0 and len(g["prompt_hash"]) == 16 and g["finish_reason"] in ("stop", "length")


def test_the_same_command_again_sends_nothing_and_a_grown_input_only_the_new(run, tmp_path: Path) -> None:
    q = questions(tmp_path / "q.txt", 4)
    with Stub() as stub:
        assert gen(run, "qa", str(q), url=stub.base_url)[0] == 0
        code, out, _ = gen(run, "qa", str(q), url=stub.base_url)
        assert code == 0 and out["requests"] == 0 and out["done_before"] == 4
        questions(q, 6)  # two more questions in the same file: the same run, two new items
        code, out2, _ = gen(run, "qa", str(q), url=stub.base_url)
        assert out2["run"] == out["run"] and out2["requests"] == 2 and out2["done"] == 2
        assert set(stub.completed().values()) == {1}
    assert len(conversations()) == 6


def test_a_duplicated_question_is_two_items(run, tmp_path: Path) -> None:
    q = tmp_path / "q.txt"
    q.write_text("hello?\nhello?\nbye?\n")
    with Stub() as stub:
        code, out, _ = gen(run, "qa", str(q), url=stub.base_url)
    assert code == 0 and out["done"] == 3
    assert sorted(c.messages[0].content for c in conversations()) == ["bye?", "hello?", "hello?"]


def test_retries_429_500_drops_and_timeouts_then_succeeds_once_each(run, tmp_path: Path) -> None:
    q = questions(tmp_path / "q.txt", 6)
    plan = sequence("429", "500", "drop", "503", "slow", "429")
    with Stub(fault=plan, retry_after=0.2, slow_seconds=10) as stub:  # (a timeout well above any normal answer on a busy machine)
        code, out, _ = gen(run, "qa", str(q), "--timeout", "3", "--concurrency", "2", url=stub.base_url)
        assert code == 0 and out["done"] == 6 and out["failed"] == 0
        assert out["retries"] >= 6
        outcomes = stub.outcomes()
        assert outcomes["429"] == 2 and outcomes["500"] == 1 and outcomes["503"] == 1 and outcomes["drop"] == 1
        # what was answered in time was kept: nothing asked again (the slow answer came after the
        # client had given up on it, so that question was asked twice)
        answered = Counter(r.key for r in stub.requests_for(path="/v1/chat/completions", outcome="ok"))
        assert sorted(answered.values()) == [1] * 6
    with Store("chatloom.db") as store:
        rows = store.gen_rows(out["run"])
    assert all(r.status == "done" for r in rows)
    assert sum(r.attempts for r in rows) == 6 + 6  # every retry counted on its row
    assert len(conversations()) == 6


def test_retry_after_is_honoured_by_every_request() -> None:
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a date in the past: now
    assert retry_after({}) is None


def test_a_request_that_keeps_failing_stays_failed_is_listed_and_retried_on_demand(run, tmp_path: Path) -> None:
    q = questions(tmp_path / "q.txt", 3)
    with Stub(fault=for_content("500", "question 1?", times=99)) as stub:
        code, out, err = gen(run, "qa", str(q), "--max-attempts", "2", url=stub.base_url)
        assert code == 1 and out["done"] == 2 and out["failed"] == 1
        assert stub.outcomes()["500"] == 2
        status = json.loads(run("generate", "status", out["run"], "--json").stdout)
        assert status["items"] == {"done": 2, "pending": 0, "submitted": 0, "failed": 1}
        [failed] = status["failed"]
        assert failed["attempts"] == 2 and failed["error"].startswith("HTTP 500")
        assert "question 1?" not in [c.messages[0].content for c in conversations()]  # no empty result
        # again without --retry-failed: nothing is sent, the failure is still said (exit 1)
        code, again, _ = gen(run, "qa", str(q), url=stub.base_url)
        assert code == 1 and again["requests"] == 0 and again["failed_total"] == 1
        stub.fault = None
        code, retried, _ = gen(run, "qa", str(q), "--retry-failed", url=stub.base_url)
        assert code == 0 and retried["done"] == 1 and retried["requests"] == 1
    text = run("generate", "status", out["run"]).stdout
    assert "3 done" in text and "0 failed" in text
    assert len(conversations()) == 3


def test_an_empty_reply_is_a_failure_not_an_empty_result(run, tmp_path: Path) -> None:
    q = questions(tmp_path / "q.txt", 2)
    with Stub(reply=lambda body: "" if last_user(body) == "question 0?" else "fine") as stub:
        code, out, _ = gen(run, "qa", str(q), url=stub.base_url)
    assert code == 1 and out["failed"] == 1
    status = json.loads(run("generate", "status", out["run"], "--json").stdout)
    assert status["failed"][0]["error"] == "the reply was empty"
    assert [c.messages[0].content for c in conversations()] == ["question 1?"]


def test_a_refused_key_stops_the_run_in_one_line_and_leaves_the_rows_pending(run, tmp_path: Path) -> None:
    q = questions(tmp_path / "q.txt", 3)
    with Stub(api_key="sk-right") as stub:
        result = run("generate", "qa", str(q), "--base-url", stub.base_url, "--model", "stub-model")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "HTTP 401" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    with Store("chatloom.db") as store:
        [r] = store.gen_runs()
        assert r["pending"] == 3 and r["failed"] == 0


def test_dry_run_sends_nothing_and_prices_what_is_left(run, tmp_path: Path) -> None:
    q = questions(tmp_path / "q.txt", 10)
    run("endpoints", "add", "priced", "http://127.0.0.1:9/v1", "--model", "my-model", "--price-input", "1", "--price-output", "2")
    result = run("generate", "qa", str(q), "--endpoint", "priced", "--max-tokens", "100", "--dry-run", "--json")
    est = json.loads(result.stdout)
    assert est["items"] == 10 and est["requests"] == 10 and est["max_output_tokens"] == 1000
    assert 10 * 4 < est["prompt_tokens"] < 10 * 20
    assert est["max_cost_usd"] == pytest.approx((est["prompt_tokens"] * 1 + 1000 * 2) / 1e6)
    assert est["first_requests"][0]["messages"] == [{"role": "user", "content": "question 0?"}]
    text = run("generate", "qa", str(q), "--endpoint", "priced", "--dry-run").stdout
    assert "question 0?" in text and "cost ≤ $" in text and "nothing was sent" in text
    assert not Path("chatloom.db").exists()  # a dry run writes nothing, not even a new dataset


def test_max_items_and_the_token_budget_stop_early_and_leave_the_rest_pending(run, tmp_path: Path) -> None:
    q = questions(tmp_path / "q.txt", 10)
    with Stub() as stub:
        code, out, _ = gen(run, "qa", str(q), "--max-items", "3", url=stub.base_url)
        assert code == 0 and out["done"] == 3 and out["journal"]["pending"] == 7
        # each request here costs ~7 tokens: a budget of 20 stops after the run's total passes it
        code, out, _ = gen(run, "qa", str(q), "--budget-tokens", "30", "--concurrency", "1", url=stub.base_url)
        assert code == 0 and out["stopped"] == "budget" and 0 < out["done"] < 7 and out["left"] > 0
        code, out, _ = gen(run, "qa", str(q), url=stub.base_url)
        assert code == 0 and out["journal"] == {"pending": 0, "submitted": 0, "done": 10, "failed": 0}
        assert set(stub.completed().values()) == {1}


def test_answers_are_rewritten_from_a_field_of_jsonl_and_csv(run, tmp_path: Path) -> None:
    jl = tmp_path / "squad.jsonl"
    jl.write_text('{"q": "Where is Paris?", "a": "France"}\n{"q": "Who wrote Hamlet?", "a": "Shakespeare"}\n')
    csv_path = tmp_path / "q.csv"
    csv_path.write_text('question,answer\n"What is 2+2, really?",4\n')
    with Stub() as stub:
        code, out, _ = gen(run, "qa", str(jl), "--question", "q", "--answers", "a", url=stub.base_url)
        assert code == 0 and out["done"] == 2
        sent = [r.body["messages"][-1]["content"] for r in stub.requests_for(path="/v1/chat/completions")]
        assert any("Short answer: France" in s and "Where is Paris?" in s for s in sent)
        code, out, _ = gen(run, "qa", str(csv_path), "--answers", "answer", url=stub.base_url)
        assert code == 0 and out["done"] == 1
    convs = {c.messages[0].content: c for c in conversations()}
    assert convs["Where is Paris?"].meta["short_answer"] == "France"
    assert convs["What is 2+2, really?"].meta["short_answer"] == "4"


def test_bad_input_is_one_line_naming_file_and_line_and_nothing_is_written(run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "fine?"}\n{"question": broken\n')
    result = run("generate", "qa", str(bad), "--base-url", "http://127.0.0.1:9/v1", "--model", "m")
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {bad}:2: not JSON (") and result.stderr.count("\n") == 1
    assert not Path("chatloom.db").exists()
    result = run("generate", "qa", str(questions(tmp_path / "q.txt", 1)), "--base-url", "http://127.0.0.1:9/v1")
    assert result.exit_code == 2 and "--model" in result.stderr


def test_templates_can_be_overridden(run, tmp_path: Path) -> None:
    q = questions(tmp_path / "q.txt", 1)
    folder = tmp_path / "tpl"
    folder.mkdir()
    (folder / "qa.jinja").write_text("In one word: {{ question }}")
    with Stub() as stub:
        code, out, _ = gen(run, "qa", str(q), "--templates", str(folder), url=stub.base_url)
        assert code == 0
        assert stub.requests_for(path="/v1/chat/completions")[0].body["messages"][-1]["content"] == "In one word: question 0?"


# -- reply ------------------------------------------------------------------------------------


def _dataset(tmp_path: Path, run: Any, convs: list[Conversation]) -> None:
    with Store("chatloom.db", create=True) as store:
        for c in convs:
            store.put(c)


TOOLS = [{"type": "function", "function": {"name": "weather", "description": "Weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]  # fmt: skip


def test_reply_fills_the_missing_last_turn_with_the_conversations_tools(run, tmp_path: Path) -> None:
    _dataset(tmp_path, run, [
        Conversation(id="a", messages=[Message(role="user", content="hi there")]),
        Conversation(id="b", messages=[Message(role="user", content="hi"), Message(role="assistant", content="hello")]),
        Conversation(id="c", messages=[Message(role="user", content="weather in Oslo?")], tools=TOOLS),
    ])  # fmt: skip

    def reply(body: dict) -> Any:
        if body.get("tools"):
            return {"content": "", "tool_calls": [{"name": "weather", "arguments": '{"city": "Oslo"}'}]}
        return "hello, you"

    with Stub(reply=reply) as stub:
        code, out, _ = gen(run, "reply", "--all", url=stub.base_url)
        assert code == 0 and out["done"] == 2 and out["skipped"] == 1
        with_tools = [r.body for r in stub.requests_for(path="/v1/chat/completions") if r.body.get("tools")]
        assert len(with_tools) == 1 and with_tools[0]["tools"] == TOOLS
    with Store("chatloom.db") as store:
        a, b, c = store.get("a"), store.get("b"), store.get("c")
        assert [m.content for m in a.messages] == ["hi there", "hello, you"] and "generated" in a.tags
        assert [m.content for m in b.messages] == ["hi", "hello"] and "generated" not in b.tags
        assert c.messages[-1].tool_calls[0]["function"]["name"] == "weather"
        assert [r.op for r in store.history("a")] == ["create", "generate"]


def test_regenerate_keeps_the_old_text_in_the_history_and_n_keeps_alternatives(run, tmp_path: Path) -> None:
    _dataset(tmp_path, run, [Conversation(id="x", messages=[
        Message(role="system", content="Be brief."), Message(role="user", content="one"), Message(role="assistant", content="old 1"),
        Message(role="user", content="two"), Message(role="assistant", content="old 2")])])  # fmt: skip
    with Stub() as stub:
        code, out, _ = gen(run, "reply", "--ids", "x", "--mode", "regenerate", "--turns", "all", "--n", "2", url=stub.base_url)
        assert code == 0 and out["done"] == 2
        histories = sorted(len(r.body["messages"]) for r in stub.requests_for(path="/v1/chat/completions"))
        assert histories == [2, 4]  # each turn asked with the history above it only
    with Store("chatloom.db") as store:
        x = store.get("x")
        assert [m.content for m in x.messages] == ["Be brief.", "one", "echo: one", "two", "echo: two"]
        assert x.messages[2].meta["alternatives"] == [{"content": "echo: one #1"}]
        assert [r.op for r in store.history("x")] == ["create", "generate", "generate"]
        store.undo("x")
        store.undo("x")
        assert [m.content for m in store.get("x").messages][2::2] == ["old 1", "old 2"]


def test_reply_refuses_a_conversation_that_changed_since_the_request(run, tmp_path: Path) -> None:
    """An edit between planning and the reply: the reply is not written over it; the request fails
    with why, and a new run asks anew."""
    _dataset(tmp_path, run, [Conversation(id="a", messages=[Message(role="user", content="first")])])

    def reply(body: dict) -> str:
        with Store("chatloom.db") as store:  # another editor saves while the request is out
            conv = store.get("a")
            conv.messages[0] = Message(role="user", content="edited")
            store.put(conv)
        return "answer"

    with Stub(reply=reply) as stub:
        code, out, _ = gen(run, "reply", "--ids", "a", url=stub.base_url)
    assert code == 1 and out["failed"] == 1
    status = json.loads(run("generate", "status", out["run"], "--json").stdout)
    assert "changed above message 1" in status["failed"][0]["error"]
    with Store("chatloom.db") as store:
        assert [m.content for m in store.get("a").messages] == ["edited"]


# -- selfchat ---------------------------------------------------------------------------------


def _personas(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "ada.yaml", tmp_path / "bob.yaml"
    a.write_text("name: Ada\ndescription: a retired engineer\nstyle: dry humour\n")
    b.write_text("name: Bob\ndescription: a baker\nsystem: You are Bob, a cheerful baker. Keep it short.\n")
    return a, b


def test_selfchat_alternates_speakers_and_names_the_assistant(run, tmp_path: Path) -> None:
    a, b = _personas(tmp_path)
    topics = tmp_path / "topics.txt"
    topics.write_text("# seed topics\nbread\ntrains\n")
    counter = {"n": 0}

    def reply(body: dict) -> str:
        counter["n"] += 1
        return f"line {counter['n']} about {len(body['messages'])}"

    with Stub(reply=reply) as stub:
        code, out, _ = gen(run, "selfchat", "--persona", str(a), "--persona", str(b), "--topics", str(topics), "--turns", "4",
                           url=stub.base_url)  # fmt: skip
        assert code == 0 and out["done"] == 2 and out["requests"] == 8
        first = [r.body for r in stub.requests_for(path="/v1/chat/completions")]
        ada_view = next(x for x in first if "Ada" in x["messages"][0]["content"])
        assert "Start a conversation with Bob about" in ada_view["messages"][1]["content"]
        assert any(x["messages"][0]["content"].startswith("You are Bob, a cheerful baker") for x in first)
    convs = conversations()
    assert len(convs) == 2
    for c in convs:
        assert [m.role for m in c.messages] == ["system", "user", "assistant", "user", "assistant"]
        assert [m.name for m in c.messages[1:]] == ["Ada", "Bob", "Ada", "Bob"]
        assert c.messages[0].content.startswith("You are Bob")
        assert c.meta["selfchat"]["assistant"] == "Bob" and c.meta["selfchat"]["ended"] == "turns"


def test_stop_rule_goodbye_and_repeat() -> None:
    lines = [(0, "Hello Bob, how is the bread?"), (1, "Warm and crusty today!")]
    assert stop_rule(lines, "Well, goodbye then!", 2, 10) == (True, True, "goodbye")
    assert stop_rule(lines, "warm and crusty today", 2, 10) == (True, False, "repeat")
    assert stop_rule(lines, "Warm and crusty today!!", 2, 10)[:2] == (True, False)
    assert stop_rule(lines, "What flour do you use?", 2, 10) == (False, True, "turns")
    assert stop_rule(lines, "What flour do you use?", 9, 10) == (True, True, "turns")
    assert stop_rule([], "Bye! Just kidding, hello.", 0, 10) == (False, True, "turns")  # the opening line is never an end


def test_selfchat_ends_on_goodbye_and_on_repeats(run, tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("name: Ada\n")
    b.write_text("name: Bob\n")  # no system of their own: the shipped template's names the topic
    topics = tmp_path / "topics.txt"
    topics.write_text("goodbyes\nrepeats\n")

    said: Counter[str] = Counter()

    def reply(body: dict) -> str:
        topic = "goodbyes" if any("goodbyes" in m["content"] for m in body["messages"][:2]) else "repeats"
        said[topic] += 1
        if topic == "goodbyes":
            return "Lovely chat, goodbye!" if said[topic] == 4 else f"Tell me more, part {said[topic]}."
        return "Same thing again." if said[topic] >= 3 else f"Opening words, part {said[topic]}."

    with Stub(reply=reply) as stub:
        code, out, _ = gen(run, "selfchat", "--persona", str(a), "--persona", str(b), "--topics", str(topics), "--turns", "10",
                           "--no-system-in-data", url=stub.base_url)  # fmt: skip
    assert code == 0 and out["done"] == 2
    convs = {c.meta["selfchat"]["topic"]: c for c in conversations()}
    bye = convs["goodbyes"]
    assert bye.meta["selfchat"]["ended"] == "goodbye" and bye.messages[-1].content == "Lovely chat, goodbye!"
    rep = convs["repeats"]
    assert rep.meta["selfchat"]["ended"] == "repeat"
    # Ada's "Same thing again.", then Bob's repeat of it: the repeat is dropped, and so is Ada's line
    # that would have ended the conversation on the user's side
    assert [(m.name, m.content) for m in rep.messages] == [("Ada", "Opening words, part 1."), ("Bob", "Opening words, part 2.")]
    assert all(m.role != "system" for c in convs.values() for m in c.messages)


def test_selfchat_goes_on_from_its_last_line_after_the_server_died(run, tmp_path: Path) -> None:
    a, b = _personas(tmp_path)
    topics = tmp_path / "topics.txt"
    topics.write_text("weather\n")
    lines = itertools.count(1)
    with Stub(fault=lambda n, body: "500" if n >= 3 else None, reply=lambda body: f"line number {next(lines)}") as stub:
        code, out, _ = gen(run, "selfchat", "--persona", str(a), "--persona", str(b), "--topics", str(topics), "--turns", "6",
                           "--max-attempts", "1", url=stub.base_url)  # fmt: skip
        assert code == 1 and out["failed"] == 1 and not conversations()
        stub.fault = None
        stub.reset()
        code, out, _ = gen(run, "selfchat", "--persona", str(a), "--persona", str(b), "--topics", str(topics), "--turns", "6",
                           "--retry-failed", url=stub.base_url)  # fmt: skip
        assert code == 0 and out["done"] == 1
        assert out["requests"] == 3  # lines 4..6 only: the first three came from the journal
    [c] = conversations()
    assert len(c.messages) == 7


# -- keys never leak --------------------------------------------------------------------------

KEY = "sk-test-6f1d2a9c8b7e4d3f0a1b2c3d4e5f6a7b"


def test_the_key_is_stored_0600_and_never_written_anywhere_else(run, tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = run("keys", "set", "stub", input=KEY + "\n")
    assert result.exit_code == 0 and KEY not in result.stdout + result.stderr
    assert (home / "keys.json").stat().st_mode & 0o777 == 0o600
    assert run("keys", "list", "--json").stdout.strip() == '[\n  "stub"\n]'
    q = questions(tmp_path / "q.txt", 3)
    outputs = []
    # a server that echoes the key it refuses (some do): the error must not carry it
    with Stub(api_key=KEY, echo_key=True, batch_polls=0, reply=lambda body: f"echo: {last_user(body)}") as stub:
        run("endpoints", "add", "s", stub.base_url, "--model", "stub-model", "--key", "stub")
        for args in (["generate", "qa", str(q), "--endpoint", "s"], ["generate", "qa", str(q), "--endpoint", "s", "--batch", "--run", "b"],
                     ["generate", "status", "--json"], ["generate", "collect", "b"], ["generate", "collect", "b"],
                     ["export", "-o", "out.jsonl"], ["generate", "status", "b"], ["endpoints", "list", "--json"]):  # fmt: skip
            r = run(*args)
            outputs.append(r.stdout + r.stderr)
        sent = stub.requests_for(path="/v1/chat/completions", outcome="ok")  # (batch lines carry no headers)
        assert sent and all({k.lower(): v for k, v in r.headers.items()}["authorization"] == f"Bearer {KEY}" for r in sent)
        # a refused key: the server's message quotes the wrong key; ours does not, here or in collect
        run("keys", "set", "wrong", input="sk-wrong-" + KEY[9:] + "\n")
        r = run("generate", "qa", str(q), "--endpoint", "s", "--key", "wrong", "--run", "w")
        assert r.exit_code == 2 and "HTTP 401: Incorrect API key provided: ***." in r.stderr
        outputs.append(r.stdout + r.stderr)
        run("generate", "qa", str(questions(tmp_path / "q2.txt", 2, "other")), "--endpoint", "s", "--batch", "--run", "b2")
        run("keys", "set", "stub", input="sk-wrong-" + KEY[9:] + "\n")  # the run's key, changed (a rotated key, say)
        r = run("generate", "collect", "b2")
        assert r.exit_code == 2 and "401" in r.stderr and "***" in r.stderr and len(r.stderr.splitlines()) == 1
        outputs.append(r.stdout + r.stderr)
        r = run("generate", "qa", str(q), "--endpoint", "s", "--key", KEY, "--run", "typed")  # the key typed for its name
        assert r.exit_code == 2 and "sk-t…" in r.stderr and "name" in r.stderr
        outputs.append(r.stdout + r.stderr)
        r = run("endpoints", "add", "t", stub.base_url, "--model", "m", "--key", KEY)
        assert r.exit_code == 2 and not (tmp_path / "home" / "endpoints.yaml").read_text().count(KEY)
        outputs.append(r.stdout + r.stderr)
    assert len(conversations()) == 6  # three answered at once, three through the batch (b2 waits)
    wrong = "sk-wrong-" + KEY[9:]
    for text in outputs:
        assert KEY not in text and wrong not in text and KEY[-12:] not in text
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "keys.json"
              and (KEY.encode() in p.read_bytes() or KEY[-12:].encode() in p.read_bytes())]  # fmt: skip
    assert leaked == []
    with sqlite3.connect("chatloom.db") as db:  # the WAL checkpointed: every table's text searched too
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for row in db.execute(f'SELECT * FROM "{table}"'):
                assert KEY not in repr(row)


def test_keys_and_endpoints_commands(run, tmp_path: Path) -> None:
    assert run("keys", "list").stdout.startswith("no keys")
    r = run(
        "generate",
        "qa",
        str(questions(tmp_path / "q.txt", 1)),
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--model",
        "m",
        "--key",
        "nope",
    )
    assert r.exit_code == 2 and "no key named nope" in r.stderr
    r = run("generate", "qa", "q.txt", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--key-env", "UNSET_VAR_X")
    assert r.exit_code == 2 and "$UNSET_VAR_X is not set" in r.stderr
    assert run("endpoints", "add", "local", "http://127.0.0.1:8000/v1", "--model", "my-run", "--temperature", "0.5",
               "--extra-body", '{"top_k": 40}').exit_code == 0  # fmt: skip
    listed = json.loads(run("endpoints", "list", "--json").stdout)
    assert listed == {"local": {"base_url": "http://127.0.0.1:8000/v1", "model": "my-run", "name": "local", "temperature": 0.5,
                                "extra_body": {"top_k": 40}}}  # fmt: skip
    assert run("endpoints", "rm", "local").exit_code == 0 and run("endpoints", "list", "--json").stdout.strip() == "{}"
    r = run("endpoints", "rm", "local")
    assert r.exit_code == 2 and "no endpoint named local" in r.stderr
    r = run("generate", "qa", "q.txt", "--endpoint", "local")
    assert r.exit_code == 2 and "chatloom endpoints add local" in r.stderr
    assert run("keys", "rm", "x").exit_code == 2


def test_endpoint_defaults_are_sent_and_flags_win(run, tmp_path: Path) -> None:
    q = questions(tmp_path / "q.txt", 1)
    with Stub() as stub:
        run("endpoints", "add", "s", stub.base_url, "--model", "stub-model", "--temperature", "0.5", "--max-tokens", "7",
            "--extra-body", '{"top_k": 40}')  # fmt: skip
        assert run("generate", "qa", str(q), "--endpoint", "s", "--temperature", "0.1").exit_code == 0
        body = stub.requests_for(path="/v1/chat/completions")[0].body
    assert body["temperature"] == 0.1 and body["max_tokens"] == 7 and body["top_k"] == 40 and body["model"] == "stub-model"


# -- the journal itself -----------------------------------------------------------------------


def test_a_completion_and_its_conversation_are_one_transaction(tmp_path: Path) -> None:
    store = Store(tmp_path / "d.db", create=True)
    store.gen_run("r", "qa", {})
    store.gen_plan("r", [PlannedRequest("k", "k", "h", {"model": "m", "messages": []})])

    def write(s: Store) -> str:
        s.put(Conversation(id="c", messages=[Message(role="user", content="x")]))
        raise RuntimeError("killed between the conversation and the journal")

    with pytest.raises(RuntimeError):
        store.gen_done("r", "k", {"choices": []}, None, attempts=1, write=write)
    assert store.count() == 0 and store.gen_row("r", "k").status == "pending"
    assert store.gen_done("r", "k", {"choices": []}, {"prompt_tokens": 1, "completion_tokens": 2}, attempts=1, write=lambda s: s.put(
        Conversation(id="c", messages=[Message(role="user", content="x")])) and "c") == "c"  # fmt: skip
    assert store.count() == 1 and store.gen_row("r", "k").status == "done"
    # done is final: a late second completion writes nothing
    assert store.gen_done("r", "k", {}, None, attempts=1, write=lambda s: pytest.fail("written twice")) == "c"
    assert store.gen_usage("r")["total_tokens"] == 3
    assert orjson.loads(json.dumps(store.gen_runs()))[0]["done"] == 1


def test_completions_committed_together_are_each_taken_back_alone(tmp_path: Path) -> None:
    from chatloom.errors import ChatloomError
    from chatloom.store import Completion

    store = Store(tmp_path / "d.db", create=True)
    store.gen_run("r", "qa", {})
    store.gen_plan("r", [PlannedRequest(k, k, "h", {"model": "m", "messages": []}) for k in "abc"])

    def writes(k: str):  # type: ignore[no-untyped-def]
        def write(s: Store) -> str:
            s.put(Conversation(id=k, messages=[Message(role="user", content=k)]))
            if k == "b":
                raise ChatloomError("b changed meanwhile")
            return k

        return write

    results = store.gen_done_many("r", [Completion(k, {"choices": []}, None, 1, writes(k)) for k in "abc"])
    assert results[0] == "a" and results[2] == "c" and isinstance(results[1], ChatloomError)
    assert sorted(c.id for c in store.iter_conversations()) == ["a", "c"]  # b's conversation taken back with its row
    assert [store.gen_row("r", k).status for k in "abc"] == ["done", "pending", "done"]
