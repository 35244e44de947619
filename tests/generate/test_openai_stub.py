"""The test stub of an OpenAI-compatible server, driven by the official ``openai`` SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from .openai_stub import Stub, for_content, sequence

HI = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def stub() -> Iterator[Stub]:
    with Stub() as stub:
        yield stub


def client_for(stub: Stub, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=stub.base_url, api_key=kwargs.pop("api_key", "x"), max_retries=kwargs.pop("max_retries", 0), **kwargs
    )


def chat(client: openai.OpenAI, content: str = "hello there", **kwargs):
    return client.chat.completions.create(model="stub-model", messages=[{"role": "user", "content": content}], **kwargs)


def test_chat_completion_and_models(stub: Stub) -> None:
    client = client_for(stub)
    assert [m.id for m in client.models.list()] == ["stub-model"]
    completion = chat(client, max_tokens=50)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (2, 3, 5)
    assert completion.id.startswith("chatcmpl-") and completion.model == "stub-model"
    assert completion._request_id.startswith("req_")
    assert stub.completed() == {"hello there": 1}


def test_n_choices_max_tokens_and_stream(stub: Stub) -> None:
    client = client_for(stub)
    completion = chat(client, "a b", n=2)
    assert [c.message.content for c in completion.choices] == ["echo: a b", "echo: a b #1"]
    assert completion.usage.completion_tokens == 7
    cut = chat(client, "one two three", max_tokens=2)
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == ("echo: one", "length")
    chunks = list(chat(client, "streamed words", stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: streamed words"
    assert chunks[-1].usage.completion_tokens == 3


def test_tool_calls() -> None:
    def reply(body: dict) -> dict:
        return {"content": None, "tool_calls": [{"name": "lookup", "arguments": {"q": "weather"}}]}

    tools = [
        {
            "type": "function",
            "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
        }
    ]
    with Stub(reply=reply) as stub:
        choice = chat(client_for(stub), tools=tools).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.name == "lookup"
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"q": "weather"}


def test_api_key_and_model() -> None:
    with Stub(api_key="sk-right", strict_model=True) as stub:
        with pytest.raises(openai.AuthenticationError) as refused:
            chat(client_for(stub, api_key="sk-wrong"))
        assert refused.value.status_code == 401
        assert refused.value.code == "invalid_api_key"
        assert chat(client_for(stub, api_key="sk-right")).choices[0].message.content == "echo: hello there"
        with pytest.raises(openai.NotFoundError) as unknown:
            client_for(stub, api_key="sk-right").chat.completions.create(model="gpt-nope", messages=HI)
        assert unknown.value.code == "model_not_found"


def test_faults(stub: Stub) -> None:
    stub.retry_after = 1.5
    stub.fault = sequence("429", "drop", "503", "quota")
    client = client_for(stub)
    with pytest.raises(openai.RateLimitError) as limited:
        chat(client)
    assert limited.value.response.headers["retry-after"] == "2"
    assert limited.value.response.headers["retry-after-ms"] == "1500"
    with pytest.raises(openai.APIConnectionError):
        chat(client)
    with pytest.raises(openai.InternalServerError) as unavailable:
        chat(client)
    assert unavailable.value.status_code == 503
    with pytest.raises(openai.RateLimitError) as quota:
        chat(client)
    assert quota.value.code == "insufficient_quota" and "retry-after" not in quota.value.response.headers
    assert chat(client).choices[0].message.content == "echo: hello there"
    assert [r.outcome for r in stub.requests_for(path="/v1/chat/completions")] == ["429", "drop", "503", "429", "ok"]
    assert [r.n for r in stub.requests] == [0, 1, 2, 3, 4]


def test_sdk_retries_through_faults(stub: Stub) -> None:
    """The SDK's own retries honour ``retry-after-ms`` (here 50 ms) and retry a dropped connection."""
    stub.retry_after = 0.05
    stub.fault = for_content("500", "flaky", times=2)
    assert chat(client_for(stub, max_retries=2), "flaky").choices[0].message.content == "echo: flaky"
    assert stub.outcomes() == {"500": 2, "ok": 1}
    assert [r.headers["x-stainless-retry-count"] for r in stub.requests] == ["0", "1", "2"]


def test_slow_is_a_client_timeout(stub: Stub) -> None:
    stub.slow_seconds = 2
    stub.fault = sequence("slow")
    with pytest.raises(openai.APITimeoutError):
        chat(client_for(stub, timeout=0.3))
    assert chat(client_for(stub)).choices[0].message.content == "echo: hello there"


def test_stop_and_start_on_the_same_port(stub: Stub) -> None:
    client = client_for(stub)
    url = stub.base_url
    chat(client)
    stub.stop()
    with pytest.raises(openai.APIConnectionError):
        chat(client)
    stub.start()
    assert stub.base_url == url
    assert chat(client).choices[0].message.content == "echo: hello there"


def test_stop_cuts_requests_in_flight(stub: Stub) -> None:
    stub.latency = 5

    async def run() -> None:
        client = openai.AsyncOpenAI(base_url=stub.base_url, api_key="x", max_retries=0)
        request = asyncio.ensure_future(client.chat.completions.create(model="m", messages=HI))
        while stub.in_flight == 0:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(stub.stop)
        with pytest.raises(openai.APIConnectionError):
            await request
        await client.close()

    asyncio.run(run())
    assert stub.outcomes() == {"stopped": 1}


def test_concurrent_requests_are_answered_at_once(stub: Stub) -> None:
    stub.latency = 0.2

    async def run() -> list[str]:
        client = openai.AsyncOpenAI(base_url=stub.base_url, api_key="x", max_retries=0)
        calls = [client.chat.completions.create(model="m", messages=[{"role": "user", "content": f"q{i}"}]) for i in range(32)]
        completions = await asyncio.gather(*calls)
        await client.close()
        return [c.choices[0].message.content for c in completions]

    assert asyncio.run(run()) == [f"echo: q{i}" for i in range(32)]
    assert stub.max_in_flight >= 16
    assert stub.completed() == {f"q{i}": 1 for i in range(32)}


def _line(custom_id: str, content: str) -> bytes:
    body = {"model": "stub-model", "messages": [{"role": "user", "content": content}]}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}).encode() + b"\n"


def test_batch_round_trip() -> None:
    with Stub(batch_fail=lambda custom_id: custom_id == "b") as stub:
        client = client_for(stub)
        upload = client.files.create(
            file=("in.jsonl", _line("a", "first") + _line("b", "second") + _line("c", "third")), purpose="batch"
        )
        assert (upload.purpose, upload.filename, upload.bytes) == ("batch", "in.jsonl", len(stub.file_content(upload.id)))
        assert client.files.retrieve(upload.id).id == upload.id
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert batch.status == "validating" and batch.output_file_id is None
        assert client.batches.retrieve(batch.id).status == "in_progress"
        done = client.batches.retrieve(batch.id)
        assert done.status == "completed"
        assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (3, 2, 1)
        output = [json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()]
        errors = [json.loads(line) for line in client.files.content(done.error_file_id).text.splitlines()]
        assert [line["custom_id"] for line in output] == ["a", "c"]
        assert output[0]["response"]["status_code"] == 200 and output[0]["error"] is None
        assert output[0]["response"]["body"]["choices"][0]["message"]["content"] == "echo: first"
        assert output[0]["response"]["request_id"].startswith("req_") and output[0]["id"].startswith("batch_req_")
        assert [(e["custom_id"], e["response"]["status_code"], e["error"]) for e in errors] == [("b", 400, None)]
        assert errors[0]["response"]["body"]["error"]["type"] == "invalid_request_error"
        assert stub.completed() == {"first": 1, "third": 1}


def test_batch_at_once_expired_and_invalid() -> None:
    with Stub(batch_polls=0, batch_fail=lambda custom_id: "expired" if custom_id == "late" else False) as stub:
        client = client_for(stub)
        upload = client.files.create(file=("in.jsonl", _line("early", "x") + _line("late", "y")), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert batch.status == "expired"
        [error] = [json.loads(line) for line in client.files.content(batch.error_file_id).text.splitlines()]
        assert (error["custom_id"], error["response"], error["error"]["code"]) == ("late", None, "batch_expired")
        bad = client.files.create(file=("bad.jsonl", _line("a", "x") + b"{not json\n" + _line("a", "y")), purpose="batch")
        failed = client.batches.create(input_file_id=bad.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert failed.status == "failed"
        assert [(e.code, e.line) for e in failed.errors.data] == [("invalid_json_line", 2), ("duplicate_custom_id", 3)]


def test_no_batches_like_vllm() -> None:
    with Stub(batches_supported=False) as stub:
        client = client_for(stub)
        with pytest.raises(openai.NotFoundError):
            client.files.create(file=("in.jsonl", _line("a", "x")), purpose="batch")
        with pytest.raises(openai.NotFoundError):
            client.batches.retrieve("batch_123")
        assert chat(client).choices[0].message.content == "echo: hello there"


def test_proxy_applies_faults_then_forwards(stub: Stub) -> None:
    stub.model = "upstream-model"
    with Stub(upstream=stub.base_url, fault=sequence("429")) as proxy:
        client = client_for(proxy)
        with pytest.raises(openai.RateLimitError):
            chat(client, "via proxy")
        assert chat(client, "via proxy").choices[0].message.content == "echo: via proxy"
        assert [m.id for m in client.models.list()] == ["upstream-model"]
        stub.fault = sequence(None, "500")
        with pytest.raises(openai.InternalServerError):
            chat(client)
    assert stub.outcomes() == {"ok": 1, "500": 1}
    assert proxy.outcomes() == {"429": 1, "ok": 1, "500": 1}
    stub.stop()
    with Stub(upstream=stub.base_url) as proxy:
        assert httpx.post(proxy.base_url + "/chat/completions", json={"messages": HI}).status_code == 502
