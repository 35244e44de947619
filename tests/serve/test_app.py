"""The app in-process (Starlette's TestClient): the token rules, without starting a server."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from chatloom.serve.generation import Generator
from chatloom.serve.server import create_app, is_loopback, url


@pytest.fixture(scope="module")
def gen() -> Generator:
    from chatloom.train.models import load

    return Generator(*load("tiny:llama"))


def test_a_given_token_is_required_and_never_echoed(gen: Generator) -> None:
    client = TestClient(create_app(gen, model_name="m", token="s3cret-token"))
    for headers in ({}, {"Authorization": "Bearer wrong-guess"}, {"Authorization": "Basic s3cret-token"},
                    {"Authorization": "Bearer "}):
        response = client.get("/v1/models", headers=headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
        assert "wrong-guess" not in response.text and "s3cret" not in response.text
    assert client.get("/health").status_code == 401
    ok = client.get("/v1/models", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200 and ok.json()["data"][0]["id"] == "m"


def test_no_token_on_loopback(gen: Generator) -> None:
    client = TestClient(create_app(gen, model_name="m", token=None))
    assert client.get("/health").json()["active_generations"] == 0
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "max_tokens": 2}
    assert client.post("/v1/chat/completions", json=body).json()["usage"]["completion_tokens"] <= 2
    body["messages"][0]["content"] = [{"type": "image_url", "image_url": {"url": "x"}}]
    assert client.post("/v1/chat/completions", json=body).status_code == 400
    wrong = client.post("/v1/completions", json={"model": "m", "prompt": "a", "n": 2, "best_of": 1})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "best_of"
    stops = client.post("/v1/chat/completions", json={**body, "messages": [{"role": "user", "content": "x"}], "stop": [""]})
    assert stops.status_code == 400 and stops.json()["error"]["param"].startswith("stop")


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
                                                ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.org", False)])
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_url() -> None:
    assert url("::1", 8000) == "http://[::1]:8000/v1" and url("127.0.0.1", 80) == "http://127.0.0.1:80/v1"


def test_a_port_in_use_is_one_line(run) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run("serve", "tiny:llama", "--port", str(port))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: ") and result.stderr.count("\n") == 1


def test_an_empty_token_is_refused(run) -> None:
    result = run("serve", "tiny:llama", "--host", "0.0.0.0", "--token", " ")
    assert result.exit_code == 2 and result.stderr == "error: --token cannot be empty\n"


def test_the_vllm_command_line(fake_run, tiny_folder, monkeypatch) -> None:
    from chatloom.serve import vllm

    monkeypatch.setattr(vllm, "available", lambda: True)  # vLLM is not installed here: only its command line is checked
    full = vllm.command(fake_run / "best", model_name="my-run", host="127.0.0.1", port=8001)
    assert full == ["vllm", "serve", str(fake_run / "best"), "--served-model-name", "my-run", "--host", "127.0.0.1",
                    "--port", "8001"]
    lora = vllm.command(fake_run / "final", model_name="my-run", host="0.0.0.0", port=8001)
    assert lora[:3] == ["vllm", "serve", str(tiny_folder)]
    assert lora[3:8] == ["--enable-lora", "--lora-modules", f"my-run={fake_run / 'final'}", "--max-lora-rank", "8"]
