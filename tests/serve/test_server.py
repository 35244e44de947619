"""The OpenAI-compatible server, driven by the official ``openai`` SDK against a real subprocess."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from .conftest import Server, printed, start_server, stop_server

MODEL = "tiny:llama"
HI = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def client(server: Server) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=60)


def health(server: Server) -> dict:
    return httpx.get(server.base_url.removesuffix("/v1") + "/health", timeout=10).json()


def test_models_list(client: OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert client.models.retrieve(MODEL).owned_by == "chatloom"


def test_chat_completion_has_choices_and_usage_counted_by_the_tokenizer(client: OpenAI, tiny_folder: Path) -> None:
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_folder))
    reply = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=6, seed=1, temperature=1)
    assert reply.object == "chat.completion" and reply.model == MODEL
    [choice] = reply.choices
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    prompt = tok.apply_chat_template(HI, add_generation_prompt=True, return_dict=False)
    assert reply.usage.prompt_tokens == len(prompt)
    assert 1 <= reply.usage.completion_tokens <= 6
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    if choice.finish_reason == "length":  # no end token: the reply is exactly its tokens
        assert reply.usage.completion_tokens == 6


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 1, "seed": 7}], ids=["greedy", "seeded"])
def test_stream_assembles_to_the_same_text(client: OpenAI, sampling: dict) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=12, **sampling)
    chunks = list(client.chat.completions.create(model=MODEL, messages=HI, max_tokens=12, stream=True,
                                                 stream_options={"include_usage": True}, **sampling))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_same_seed_same_reply(client: OpenAI) -> None:
    replies = {client.chat.completions.create(model=MODEL, messages=HI, max_tokens=8, seed=3, temperature=1).choices[0].message.content
               for _ in range(2)}
    assert len(replies) == 1


def test_n_gives_n_choices(client: OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=5, n=2, seed=1, temperature=1)
    assert [c.index for c in reply.choices] == [0, 1]
    assert [c.finish_reason for c in reply.choices] == ["length", "length"]  # seeded: no end token comes
    assert reply.usage.completion_tokens == 10
    assert reply.choices[0].message.content != reply.choices[1].message.content


def test_stop_strings_end_the_reply_and_are_left_out(client: OpenAI) -> None:
    args = {"model": MODEL, "messages": HI, "max_tokens": 20, "seed": 11, "temperature": 1}
    full = client.chat.completions.create(**args).choices[0].message.content
    assert len(full) > 12
    stop = full[len(full) // 2: len(full) // 2 + 3]
    expected = full[: full.find(stop)]
    cut = client.chat.completions.create(**args, stop=[stop]).choices[0]
    assert cut.message.content == expected and cut.finish_reason == "stop"
    streamed = client.chat.completions.create(**args, stop=stop, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == expected


def test_max_tokens_ends_with_length(client: OpenAI) -> None:
    for key in ("max_tokens", "max_completion_tokens"):
        reply = client.chat.completions.create(model=MODEL, messages=HI, seed=2, temperature=1, **{key: 3})
        assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 3


def test_logprobs(client: OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=4, seed=2, temperature=1, logprobs=True,
                                           top_logprobs=3)
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens
    assert "".join(t.token for t in content) == reply.choices[0].message.content
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3
        assert t.top_logprobs[0].logprob >= t.logprob  # the best is at least as likely as the chosen one


def test_tools_are_passed_to_the_template(client: OpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "now", "description": "the time", "parameters": {"type": "object"}}}]
    reply = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=2, tools=tools)
    assert reply.choices[0].message.role == "assistant"


def test_completions_endpoint(client: OpenAI) -> None:
    reply = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=4, n=2, seed=5, logprobs=1,
                                      echo=True)
    assert reply.object == "text_completion" and len(reply.choices) == 2
    for choice in reply.choices:
        assert choice.text.startswith("Once upon a time")
        assert len(choice.logprobs.tokens) == len(choice.logprobs.token_logprobs) <= 4
    chunks = list(client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=4, seed=5, stream=True))
    whole = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=4, seed=5)
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text


def test_errors_have_openai_shape(client: OpenAI, server: Server) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-9", messages=HI)
    assert err.value.body["code"] == "model_not_found" and err.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "wizard", "content": "x"}])
    assert err.value.body["param"] == "messages.0.role" and err.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=HI, temperature=5)
    assert err.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[])
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL, prompt="def f(", suffix="return 1")
    assert "does not support infill" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:  # longer than the context (1,024 positions)
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 2000}], max_tokens=5)
    assert "context" in err.value.body["message"]
    raw = httpx.post(server.base_url + "/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert raw.status_code == 400 and set(raw.json()["error"]) == {"message", "type", "param", "code"}
    missing = httpx.get(server.base_url + "/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"


def test_a_client_that_leaves_stops_its_generation(server: Server) -> None:
    before = health(server)["cancelled_generations"]
    body = {"model": MODEL, "messages": HI, "max_tokens": 1000, "temperature": 1, "seed": 1, "stream": True}
    with httpx.Client(timeout=60) as http:
        with http.stream("POST", server.base_url + "/chat/completions", json=body) as response:
            lines = response.iter_lines()
            got = [next(lines) for _ in range(6)]
            assert all(line.startswith("data: ") or not line for line in got)
    # the connection is closed: the generation stops at its next token instead of running 1,000
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = health(server)
        if state["active_generations"] == 0 and state["cancelled_generations"] > before:
            break
        time.sleep(0.05)
    assert state["active_generations"] == 0 and state["cancelled_generations"] >= before + 1


def test_off_loopback_needs_the_printed_token(tmp_path: Path, fake_run: Path) -> None:
    srv = start_server(str(fake_run), "--host", "0.0.0.0", "--which", "final", home=tmp_path / "home")
    try:
        printed(srv.stdout, "token: ")
        token = next(line.split()[1] for line in srv.stdout if line.startswith("token: "))
        assert len(token) >= 32
        with pytest.raises(openai.AuthenticationError) as err:
            OpenAI(base_url=srv.base_url, api_key="wrong", max_retries=0).models.list()
        assert err.value.body["code"] == "invalid_api_key"
        assert httpx.get(srv.base_url + "/models").status_code == 401  # no header at all
        good = OpenAI(base_url=srv.base_url, api_key=token, max_retries=0)
        assert [m.id for m in good.models.list().data] == ["my-run"]  # a run is named by its folder
        reply = good.chat.completions.create(model="my-run", messages=HI, max_tokens=3)
        assert reply.choices[0].message.role == "assistant"
        stream = good.chat.completions.create(model="my-run", messages=HI, max_tokens=1000, stream=True)
        next(iter(stream))  # a reply is streaming when the server is told to stop
    finally:
        code = stop_server(srv)
    # it shut down by itself (the stream ended at its next token), not killed; uvicorn re-raises the
    # SIGTERM it caught once it is done, so the exit status is that signal's
    assert code in (0, -signal.SIGTERM)
    assert "Traceback" not in srv.output()
    assert srv.output().count(token) == 1  # printed once at the start, never logged


def test_vllm_engine_is_a_clear_error_without_vllm(run) -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    result = run("serve", "tiny:llama", "--engine", "vllm")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: vllm is not installed (it needs a GPU machine and its own environment)"


def test_concurrent_requests_get_the_replies_they_get_alone(client: OpenAI, server: Server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    prompts = [[{"role": "user", "content": "hi " * k}] for k in (1, 6, 15, 3)]

    def ask(messages: list) -> str:
        return client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10, temperature=0).choices[0].message.content

    alone = [ask(m) for m in prompts]
    busy = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=300, temperature=1, stream=True)
    next(iter(busy))  # the worker is busy: the four below wait, and run together
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(ask, prompts))
    busy.close()
    assert together == alone
