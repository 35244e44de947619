"""``chatloom chat``: the terminal session (stdin lines, as CliRunner sends them) and --prompt."""

from __future__ import annotations

import json
from pathlib import Path

from chatloom import jsonl

ARGS = ["--seed", "0", "--max-tokens", "6"]


def test_session_commands(run, tmp_path: Path) -> None:
    result = run("chat", "tiny:llama", *ARGS, input="/system be brief\nhello\n/retry\n/save out.jsonl\n/quit\nnot read\n")
    assert result.exit_code == 0, result.output
    assert "(system prompt: be brief)" in result.stderr
    assert "(saved 3 messages to out.jsonl)" in result.stderr
    replies = result.stdout.split("\n")
    assert replies[0] == replies[1]  # /retry with the same seed and history: the same reply
    [conv] = list(jsonl.read_path(tmp_path / "out.jsonl"))
    assert [(m.role, m.content) for m in conv.messages[:2]] == [("system", "be brief"), ("user", "hello")]
    assert conv.messages[2].role == "assistant" and conv.messages[2].content == replies[0]


def test_reset_unknown_commands_and_nothing_to_retry(run, tmp_path: Path) -> None:
    result = run("chat", "tiny:llama", *ARGS, input="/retry\n/frob\n/save\nhi\n/reset\n/save a.jsonl\n//slash\n/save b.jsonl\n")
    assert result.exit_code == 0
    assert "nothing to retry yet" in result.stderr
    assert "unknown command /frob" in result.stderr
    assert "/save needs a file name" in result.stderr
    assert "cannot save: nothing to save yet" in result.stderr  # after /reset
    assert not (tmp_path / "a.jsonl").exists()
    [conv] = list(jsonl.read_path(tmp_path / "b.jsonl"))
    assert conv.messages[0].content == "/slash"  # // sends one /


def test_prompt_once(run) -> None:
    first = run("chat", "tiny:llama", "--prompt", "hello", *ARGS, "--temperature", "1", "--json")
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    assert out["usage"]["completion_tokens"] <= 6 and out["usage"]["prompt_tokens"] > 0
    assert out["finish_reason"] in ("length", "stop") and isinstance(out["reply"], str)
    again = run("chat", "tiny:llama", "--prompt", "hello", *ARGS, "--temperature", "1")
    assert again.stdout == out["reply"] + "\n"  # same seed, same reply; plain text without --json


def test_best_of_in_chat(run) -> None:
    result = run("chat", "tiny:llama", "--prompt", "hi", *ARGS, "--temperature", "1", "--best-of", "3", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["usage"]["completion_tokens"] <= 6


def test_a_training_run(run, fake_run: Path) -> None:
    best = json.loads(run("chat", str(fake_run), "--prompt", "hi", *ARGS, "--temperature", "1", "--json").stdout)
    final = json.loads(run("chat", str(fake_run), "--which", "final", "--prompt", "hi", *ARGS, "--temperature", "1",
                           "--json").stdout)
    assert best["reply"] != final["reply"]  # final/ is a LoRA adapter that changes the model


def test_bad_input_is_one_line(run, tmp_path: Path) -> None:
    result = run("chat", "no-such-model", "--prompt", "hi")
    assert result.exit_code == 2 and result.stderr.startswith("error: no-such-model") and result.stderr.count("\n") == 1
    result = run("chat", "tiny:llama", "--json")
    assert result.exit_code == 2 and result.stderr == "error: --json needs --prompt TEXT (the interactive session prints text)\n"
    run_folder = tmp_path / "r"
    run_folder.mkdir()
    (run_folder / "run.yaml").write_text("{}\n")
    result = run("chat", str(run_folder), "--prompt", "hi")
    assert result.exit_code == 2 and "the run has no best/ yet" in result.stderr
    result = run("chat", "tiny:llama", "--prompt", "word " * 2000, "--max-tokens", "5")
    assert result.exit_code == 2 and "context" in result.stderr and "Traceback" not in result.output
