"""A real ``chatloom serve`` in a subprocess (tiny:llama, a free port), and a fake training run."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO

URL = re.compile(r"at (http://\S+/v1)")


@dataclass
class Server:
    proc: subprocess.Popen
    base_url: str
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "".join(self.stdout + self.stderr)


def _pump(stream, lines: list[str], q: queue.Queue | None) -> None:
    for line in stream:
        lines.append(line)
        if q is not None:
            q.put(line)


def start_server(*args: str, home: Path) -> Server:
    """``chatloom serve ARGS --port 0``; returns once it prints its URL."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
               CHATLOOM_HOME=str(home), OMP_WAIT_POLICY="PASSIVE", PYTHONUNBUFFERED="1")
    env.pop("CHATLOOM_SERVE_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "chatloom", "serve", *args, "--port", "0"], env=env, cwd=home.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = Server(proc, "")
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, server.stdout, lines), daemon=True).start()
    threading.Thread(target=_pump, args=(proc.stderr, server.stderr, None), daemon=True).start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if proc.poll() is not None:
                raise RuntimeError(f"chatloom serve exited {proc.returncode}: {server.output()}") from None
            continue
        if match := URL.search(line):
            server.base_url = match.group(1).replace("0.0.0.0", "127.0.0.1")
            return server
    proc.kill()
    raise RuntimeError(f"chatloom serve did not start: {server.output()}")


def printed(lines: list[str], text: str, seconds: float = 30) -> str:
    """What a server printed (``lines``, filled by its pump thread), once ``text`` is in it (or the
    time is up): a line that follows the URL line may come a moment after it."""
    deadline = time.monotonic() + seconds
    while not any(text in line for line in lines) and time.monotonic() < deadline:
        time.sleep(0.02)
    return "".join(lines)


def stop_server(server: Server) -> int | None:
    """SIGTERM, as a service manager stops it; its exit code, or None when it had to be killed."""
    server.proc.terminate()
    try:
        return server.proc.wait(15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
        return None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server("tiny:llama", home=tmp_path_factory.mktemp("serve") / "home")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def tiny_folder() -> Path:
    from chatloom.train.models import resolve

    return resolve("tiny:llama")


@pytest.fixture(scope="session")
def fake_run(tmp_path_factory: pytest.TempPathFactory, tiny_folder: Path) -> Path:
    """A training run as `chatloom train` leaves it: run.yaml, best/ a full model, final/ a LoRA
    adapter (random and large, so that it changes the model) on the tiny model's folder."""
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    run = tmp_path_factory.mktemp("runs") / "my-run"
    run.mkdir()
    (run / "run.yaml").write_text("model: tiny:llama\n")
    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_folder))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tiny_folder))
    model.save_pretrained(run / "best")
    tok.save_pretrained(run / "best")
    torch.manual_seed(0)
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 1.0)  # large enough to change what the tiny model samples
    lora.save_pretrained(run / "final")
    tok.save_pretrained(run / "final")
    config = (run / "final" / "adapter_config.json").read_text()
    assert str(tiny_folder) in config  # the base is named by its absolute folder
    return run
