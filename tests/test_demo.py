"""The demo's steps (the same commands `make demo` runs), through `python -m chatloom`."""

import json
import re
import shlex
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_demo_steps(tmp_path):
    recipe = (REPO / "Makefile").read_text().split("\ndemo:")[1].split("\n\n")[0]
    steps = [line.strip().replace("$(BIN)/chatloom", "").replace("$(DEMO)", "demo") for line in recipe.splitlines() if "$(BIN)/chatloom" in line and not line.strip().startswith("@")]
    assert len(steps) >= 3
    recipe_copy = tmp_path / "demo.yaml"  # the shipped recipe, its paths under this test's folder
    recipe_copy.write_text((REPO / "examples" / "demo.yaml").read_text().replace("demo-output/", "demo/"))
    for step in steps:
        shipped = {"examples/demo.yaml": str(recipe_copy), "examples/questions.txt": str(REPO / "examples" / "questions.txt")}
        args = [shipped.get(a, a) for a in shlex.split(step)]  # as make's shell splits it
        result = subprocess.run([sys.executable, "-m", "chatloom", *args], capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, (step, result.stderr)
    stats = subprocess.run([sys.executable, "-m", "chatloom", "stats", "-d", "demo/chitchat.db", "--json"], capture_output=True, text=True, cwd=tmp_path)
    data = json.loads(stats.stdout)
    assert data["conversations"] == 7168 + 3 and data["tokens"]["total"] > 1_000_000  # chitchat + the 3 generated answers
    assert (tmp_path / "demo" / "tokens.png").read_bytes()[:4] == b"\x89PNG"
    train = (tmp_path / "demo" / "export" / "train.jsonl").read_text().splitlines()
    val = (tmp_path / "demo" / "export" / "val.jsonl").read_text().splitlines()
    assert len(train) + len(val) == 7168 and len(val) == round(7168 * 0.05)
    assert re.match(r'\{"id":"chitchat:', train[0])
    meta = json.loads((tmp_path / "demo" / "tokens" / "meta.json").read_text())
    kept = meta["splits"]["train"]["conversations"] + meta["splits"]["val"]["conversations"]
    assert kept + meta["report"]["dropped"]["no trained token"] == 7168  # single-message chats: nothing to train on
    assert (tmp_path / "demo" / "tokens" / "train.bin").stat().st_size == 2 * meta["splits"]["train"]["tokens"]
    report = json.loads((tmp_path / "demo" / "build" / "report.json").read_text())
    assert report["inputs"] == {"chitchat": 7168}
    assert report["output"]["conversations"] + report["dropped"] == 7168
    assert {s["step"] for s in report["steps"]} >= {"turns", "exact_dedup", "near_dedup", "pii", "truncate"}
    assert (tmp_path / "demo" / "build" / "data" / "val.jsonl").exists()
    run = tmp_path / "demo" / "run"  # SmolLM2-135M-Instruct with LoRA, a few steps on the build's output
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 8 and [m["step"] for m in metrics if "eval_loss" in m] == [4, 8]
    assert (run / "best" / "adapter_model.safetensors").exists() and (run / "final" / "adapter_model.safetensors").exists()
    assert "tuned model" in (run / "report.html").read_text() and (run / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((run / "data.json").read_text())["tokenized_on_the_fly"]
    chat = subprocess.run([sys.executable, "-m", "chatloom", "chat", "demo/run", "--prompt", "Hi!", "--max-tokens", "8", "--seed", "0",
                           "--json"], capture_output=True, text=True, cwd=tmp_path)
    assert json.loads(chat.stdout)["reply"].strip()  # the tuned model answers
    # the tuned model, served for one command, answered the demo's questions into the dataset
    listed = json.loads(subprocess.run([sys.executable, "-m", "chatloom", "ls", "-d", "demo/chitchat.db", "--tag", "demo", "--json"],
                                       capture_output=True, text=True, cwd=tmp_path).stdout)  # fmt: skip
    assert len(listed) == 3
    status = json.loads(subprocess.run([sys.executable, "-m", "chatloom", "generate", "status", "-d", "demo/chitchat.db", "--json"],
                                       capture_output=True, text=True, cwd=tmp_path).stdout)  # fmt: skip
    assert [(r["kind"], r["done"], r["failed"]) for r in status] == [("qa", 3, 0)]
