"""``chatloom train`` on tiny random models built from a config (seconds each): the loss falls, the
mask is obeyed, packed conversations never see each other, best/ and final/ are written, a run
killed with SIGKILL resumes to the same weights, and what cannot work says so before any work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from chatloom.tokens import TokenFile, tokenize
from chatloom.train.data import IGNORE, Collator, PackedRows
from chatloom.train.models import load, resolve
from tests.conftest import conv, write_jsonl

WORDS = "the cat sat on a mat while dogs ran in parks and birds sang songs of rain and sun".split()


def chats(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        turns = []
        for _ in range(2 * int(rng.integers(1, 3))):
            turns.append(" ".join(rng.choice(WORDS, size=int(rng.integers(3, 9)))))
        out.append(conv(*turns, id=f"c{i}"))
    return out


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    """gpt2-chatml token files of 60 short chats (the tiny models' own tokenizer and template)."""
    from chatloom.formats.split import validation_ids

    convs = chats(60)
    tokenize(convs, tmp_path / "tokens", val_ids=validation_ids([c.id for c in convs], 0.2, 0))
    return tmp_path / "tokens"


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    assert files, f"no weights in {folder}"
    out: dict[str, torch.Tensor] = {}
    for f in files:
        out.update(load_file(str(f)))
    return out


def test_the_loss_falls_and_best_and_final_are_written(run, tokens: Path, tmp_path: Path) -> None:
    result = run("train", "--model", "tiny:llama", "--data", str(tokens), "-o", "run", "--method", "full", "--lr", "3e-3",
                 "--max-steps", "8", "--eval-every", "4", "--batch-size", "2", "--max-length", "128", "--precision", "fp32", "--json")
    out = json.loads(result.output)
    assert result.exit_code == 0
    assert out["steps"] == 8 and out["samples"] > 0
    metrics = [json.loads(line) for line in Path("run/metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 9))
    losses = [m["loss"] for m in metrics if "loss" in m]
    evals = [m["eval_loss"] for m in metrics if "eval_loss" in m]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.1
    assert len(evals) == 2 and evals[1] < evals[0]
    assert all(m["tokens_per_s"] > 0 for m in metrics if "loss" in m)
    for name in ("run.yaml", "data.json", "versions.json", "loss.png", "report.html", "best/config.json", "final/config.json",
                 "best/tokenizer_config.json", "final/chat_template.jinja"):
        assert Path("run", name).exists(), name
    assert json.loads(Path("run/best/chatloom-best.json").read_text())["step"] == 8
    data = json.loads(Path("run/data.json").read_text())
    assert data["packing"]["padding"] == 0.0 and data["packing"]["fill"] > 0.85
    assert data["packing"]["conversations"] == 48  # all 48 training chats fit in 128 tokens
    report = Path("run/report.html").read_text()
    assert "base model" in report and "tuned model" in report and "<script" not in report
    model, tok = load("run", which="final")  # a full run's folder loads as it is
    assert type(model).__name__ == "LlamaForCausalLM" and tok.eos_token == "<|im_end|>"


def test_a_conversation_packed_after_another_gives_the_same_logits_as_alone(tokens: Path) -> None:
    tf = TokenFile(tokens / "train")
    model, _ = load("tiny:llama", dtype="fp32")
    collate = Collator({"train": tf})
    packed = collate([("train", [0, 1, 2])])
    alone = collate([("train", [2])])
    n = len(alone["input_ids"][0])
    with torch.no_grad():
        a = model(**{k: v for k, v in packed.items() if k != "labels"}, use_cache=False).logits[0, -n:]
        b = model(**{k: v for k, v in alone.items() if k != "labels"}, use_cache=False).logits[0]
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    assert (packed["position_ids"][0] == 0).sum() == 3  # positions restart at each conversation
    starts = np.flatnonzero(packed["position_ids"][0].numpy() == 0)
    assert (packed["labels"][0, starts] == IGNORE).all()  # no conversation's first token is a target


def test_the_mask_is_obeyed(tmp_path: Path) -> None:
    """Changing the text of a user turn no trained token comes after leaves the gradient of a
    packed batch as it was; changing an assistant reply does not."""
    base = [conv("hello there", "hi, how are you", "fine thanks and you", id="a"), conv("what is up", "nothing much", id="b")]

    def grads(convs: list) -> list[torch.Tensor]:
        folder = tmp_path / f"t{len(list(tmp_path.iterdir()))}"
        tokenize(convs, folder, fix=True)
        tf = TokenFile(folder / "train")
        torch.manual_seed(0)
        model, _ = load("tiny:llama", dtype="fp32")
        model.train()
        batch = Collator({"train": tf})([("train", [0, 1])])
        model(**batch, use_cache=False).loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    before = grads(base)
    user_changed = [conv("hello there", "hi, how are you", "a completely different question here", id="a"), base[1]]
    reply_changed = [conv("hello there", "a different reply", "fine thanks and you", id="a"), base[1]]
    # the same up to float rounding (the row is longer: sums run in another order); a changed reply moves it by far more
    assert max((x - y).abs().max().item() for x, y in zip(before, grads(user_changed))) < 1e-7
    assert max((x - y).abs().max().item() for x, y in zip(before, grads(reply_changed))) > 1e-4


def test_packing_fills_rows_and_keeps_every_conversation_once(tokens: Path) -> None:
    tf = TokenFile(tokens / "train")
    rows = PackedRows(tf, 128, seed=3)
    flat = sorted(i for row in rows.rows for i in row)
    assert flat == list(range(len(tf)))
    assert all(sum(int(tf.ends[i] - tf.starts[i]) for i in row) <= 128 for row in rows.rows)
    assert len(rows) <= -(-rows.tokens // 128) + 1  # best fit: at most one row more than the tokens need
    assert rows.rows == PackedRows(tf, 128, seed=3).rows  # seeded: a resumed run sees the same rows
    assert PackedRows(tf, 8).skipped == len(tf)


def _train_cmd(out: str, tokens: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "chatloom", "train", "--model", "tiny:gpt2", "--data", str(tokens), "-o", out, "--max-steps", "10",
            "--eval-every", "3", "--batch-size", "2", "--max-length", "128", "--precision", "fp32", "--lr", "1e-3", *extra]


def test_sigkill_then_resume_gives_the_same_steps_and_weights(tokens: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_train_cmd("whole", tokens), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(_train_cmd("killed", tokens), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = Path("killed/checkpoints/checkpoint-6/chatloom-complete")
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "no checkpoint at step 6"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not Path("killed/final").exists()
    done = subprocess.run([sys.executable, "-m", "chatloom", "train", "--resume", "killed", "--json"], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"] == 10
    killed = [json.loads(line) for line in Path("killed/metrics.jsonl").read_text().splitlines()]
    whole_metrics = [json.loads(line) for line in Path("whole/metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in killed] == [m["step"] for m in whole_metrics] == list(range(1, 11))  # no step twice, none lost
    assert [m["step"] for m in killed if "eval_loss" in m] == [3, 6, 9, 10]  # and the end is always evaluated
    assert [m["loss"] for m in killed] == pytest.approx([m["loss"] for m in whole_metrics], abs=1e-5)
    whole, resumed = _weights(Path("whole/final")), _weights(Path("killed/final"))
    assert whole.keys() == resumed.keys()
    assert all(torch.allclose(whole[k], resumed[k], atol=1e-6) for k in whole)


def test_qlora_without_cuda_is_a_clear_error_before_any_work(run, tokens: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run("train", "--model", "tiny:gpt2", "--data", str(tokens), "-o", "q", "--method", "qlora")
    assert result.exit_code == 2
    assert "qlora needs a CUDA GPU" in result.stderr and "Traceback" not in result.stderr
    assert not Path("q").exists()


def test_config_errors_name_the_key_and_the_example_is_valid(run, tokens: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"model: tiny:gpt2\ndata: {tokens}\noutput: r\nlora:\n  rank: 8\n")
    result = run("train", str(bad))
    assert result.exit_code == 2 and f"{bad}: lora.rank: unknown key" in result.stderr
    bad.write_text(f"model: tiny:gpt2\ndata: {tokens}\noutput: r\nmax_steps: lots\n")
    assert "max_steps: " in run("train", str(bad)).stderr
    assert "data: required" in run("train", "--model", "tiny:gpt2", "-o", "r").stderr
    example = run("train", "--example").output
    import yaml

    from chatloom.train.config import TrainConfig

    config = TrainConfig.model_validate(yaml.safe_load(example))
    assert config.method == "lora" and config.lora.target_modules == "all-linear"


def test_token_files_of_another_tokenizer_or_template_are_refused(run, tmp_path: Path) -> None:
    convs = chats(10)
    tokenize(convs, tmp_path / "cl100k", tokenizer="cl100k_base", template=str(_plain(tmp_path)))
    result = run("train", "--model", "tiny:gpt2", "--data", str(tmp_path / "cl100k"), "-o", "r1")
    assert result.exit_code == 2 and "not by the model's" in result.stderr
    tokenize(convs, tmp_path / "vicuna", template="vicuna")
    result = run("train", "--model", "tiny:gpt2", "--data", str(tmp_path / "vicuna"), "-o", "r2")
    assert result.exit_code == 2 and "chat template vicuna" in result.stderr
    assert not Path("r1").exists() and not Path("r2").exists()


def _plain(tmp_path: Path) -> Path:
    plain = tmp_path / "plain.jinja"
    plain.write_text("{% for m in messages %}{{ m.role }}: {{ m.content }}{{ eos_token if m.role == 'assistant' }}\n{% endfor %}")
    return plain


def test_chats_are_tokenized_on_the_fly_into_a_cache_keyed_by_the_template(run, tmp_path: Path) -> None:
    import shutil

    data = write_jsonl(tmp_path / "chats.jsonl", chats(40))
    args = ["--data", str(data), "--max-steps", "2", "--eval-every", "2", "--max-length", "128", "--precision", "fp32", "--json"]
    first = run("train", "--model", "tiny:llama", "-o", "a", *args)
    assert first.exit_code == 0, first.stderr
    info = json.loads(Path("a/data.json").read_text())
    assert info["tokenized_on_the_fly"] and info["splits"]["val"]["conversations"] == 2  # 5 % of 40
    again = run("train", "--model", "tiny:llama", "-o", "b", *args)
    assert again.exit_code == 0 and json.loads(Path("b/data.json").read_text())["tokens_folder"] == info["tokens_folder"]
    edited = tmp_path / "edited"  # the same model with another template: other tokens, never the stale ones
    shutil.copytree(resolve("tiny:llama"), edited)
    (edited / "chat_template.jinja").write_text(_plain(tmp_path).read_text())
    cfg = json.loads((edited / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (edited / "tokenizer_config.json").write_text(json.dumps(cfg))
    third = run("train", "--model", str(edited), "-o", "c", *args)
    assert third.exit_code == 0, third.stderr
    assert json.loads(Path("c/data.json").read_text())["tokens_folder"] != info["tokens_folder"]


def test_early_stopping_keeps_the_best(run, tokens: Path) -> None:
    result = run("train", "--model", "tiny:gpt2", "--data", str(tokens), "-o", "run", "--method", "full", "--lr", "0.5",
                 "--max-steps", "30", "--eval-every", "1", "--patience", "1", "--max-length", "128", "--precision", "fp32", "--json")
    out = json.loads(result.output)
    assert out["stopped_early"] and out["steps"] < 30
    best = json.loads(Path("run/best/chatloom-best.json").read_text())
    assert best["eval_loss"] == pytest.approx(out["best_eval_loss"])
    assert best["step"] < out["steps"]


def test_merge_folds_the_adapter_into_a_full_model(run, tokens: Path) -> None:
    assert run("train", "--model", "tiny:llama", "--data", str(tokens), "-o", "run", "--max-steps", "2", "--eval-every", "2",
               "--lr", "1e-2", "--max-length", "128", "--precision", "fp32").exit_code == 0
    assert Path("run/best/adapter_config.json").exists()
    result = run("train", "merge", "run", "-o", "merged")
    assert result.exit_code == 0
    import transformers

    merged = transformers.AutoModelForCausalLM.from_pretrained("merged")
    adapted, _ = load("run", which="best", dtype="fp32")
    ids = torch.tensor([[50257, 882, 318, 50258]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-5)
    assert (Path("merged") / "chat_template.jinja").exists()
    assert run("train", "merge", "run", "-o", "merged").exit_code == 2  # never over a folder that holds something
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):  # an adapter saved without its tokenizer
        Path("run/best", name).unlink(missing_ok=True)
    _, tok = load("run", which="best")
    assert tok.eos_token == "<|im_end|>"  # the base model's


def test_models_that_cannot_be_had_offline_are_clear_errors(run, tokens: Path, tmp_path: Path) -> None:
    result = run("train", "--model", "nobody/no-such-model", "--data", str(tokens), "-o", "r")
    assert result.exit_code == 2 and "not in the Hugging Face cache" in result.stderr and "chatloom works offline" in result.stderr
    assert "no such tiny model" in run("train", "--model", "tiny:bert", "--data", str(tokens), "-o", "r").stderr
    (tmp_path / "empty").mkdir()
    assert "not a model folder" in run("train", "--model", str(tmp_path / "empty"), "--data", str(tokens), "-o", "r").stderr
    assert "no such file or folder" in run("train", "--model", "tiny:gpt2", "--data", "nothing-here", "-o", "r").stderr
    assert not Path("r").exists()


def test_a_hub_name_is_read_from_the_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = cache / "models--someone--tiny-chat" / "snapshots" / commit
    shutil.copytree(resolve("tiny:llama"), snapshot)  # the layout huggingface_hub writes (real files, not links: it reads both)
    (cache / "models--someone--tiny-chat" / "refs").mkdir()
    (cache / "models--someone--tiny-chat" / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert resolve("someone/tiny-chat") == snapshot
    model, tok = load("someone/tiny-chat")
    assert type(model).__name__ == "LlamaForCausalLM" and tok.eos_token == "<|im_end|>"


def test_ctrl_c_keeps_the_last_checkpoint_and_says_how_to_go_on(tokens: Path) -> None:
    proc = subprocess.Popen(_train_cmd("stopped", tokens), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marker = Path("stopped/checkpoints/checkpoint-3/chatloom-complete")
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == "interrupted: the last whole checkpoint is kept; `chatloom train --resume stopped` goes on from it"
    assert marker.exists() and not Path("stopped/final").exists()
