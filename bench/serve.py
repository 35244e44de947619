"""Benchmark: ``chatloom serve`` beside a bare ``model.generate`` loop on the same model and prompt.

    .venv/bin/python bench/serve.py                      # tiny:llama (random, built in a second)
    .venv/bin/python bench/serve.py --model smollm2      # SmolLM2-135M-Instruct (the first run converts its GGUF)
    .venv/bin/python bench/serve.py --tokens 64 --streams 8

Measured, greedy (so that every run makes the same tokens):

1. one stream: tokens/s of a ``stream: true`` chat completion through the server (the official
   ``openai`` SDK, from the request to the last chunk) beside ``model.generate`` on the same prompt
   in this process, with no server (target: the server within 10%, a ratio of at least 0.90);
2. eight streams at once: their aggregate tokens/s beside the same eight requests one after
   another. Requests that wait together run as one batch, so the target is a gain (1.5×; a
   batch of 8 makes 5× the tokens of one row in `generate` alone on 2 cores, but the first
   request runs alone and the others then wait for it).

Each figure is the best of ``--repeat`` runs; the bare and served runs take turns. The server and
this process each use every core, one at a time; the client (this process) shares the cores with
the server while it streams, as a local client would. Writes bench/out/serve.json for bench/run.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Tell me a long story about a lighthouse keeper and the sea."}]


def start_server(model: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "chatloom", "serve", model, "--port", "0"], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if match := re.search(r"at (http://\S+/v1)", line):
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # keep draining
            return proc, match.group(1)
    raise SystemExit(f"chatloom serve {model} did not start (exit {proc.wait()})")


def stream_once(client, model: str, tokens: int) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    made = 0
    for chunk in client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=tokens, temperature=0,
                                                stream=True, stream_options={"include_usage": True}):
        if chunk.usage is not None:
            made = chunk.usage.completion_tokens
    return made, time.perf_counter() - start


def bare_once(model, tok, ids, tokens: int) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    import torch

    x = torch.tensor([ids])
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=tokens, do_sample=False, use_cache=True,
                             pad_token_id=model.generation_config.pad_token_id or tok.eos_token_id)
    return out.shape[1] - len(ids), time.perf_counter() - start


def best_rate(runs: list[tuple[int, float]]) -> float:
    return max(n / t for n, t in runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny:llama", help="tiny:llama (default), smollm2, or any model chatloom takes")
    ap.add_argument("--tokens", type=int, default=128, help="tokens a reply (greedy; fewer when the model ends it)")
    ap.add_argument("--streams", type=int, default=8, help="concurrent streams")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(SRC))
    from openai import OpenAI

    from chatloom.train.models import load

    model, tok = load(args.model)
    ids = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=False)
    bare_once(model, tok, ids, 8)  # warm-up
    proc, base_url = start_server(args.model)
    try:
        client = OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=600)
        name = client.models.list().data[0].id
        stream_once(client, name, 8)  # warm-up
        bare, served = [], []
        for _ in range(args.repeat):  # interleaved, so that a busy moment of the box hits both
            bare.append(bare_once(model, tok, ids, args.tokens))
            served.append(stream_once(client, name, args.tokens))
        sequential, concurrent = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            made = sum(stream_once(client, name, args.tokens)[0] for _ in range(args.streams))
            sequential.append((made, time.perf_counter() - start))
            start = time.perf_counter()
            with ThreadPoolExecutor(args.streams) as pool:
                made = sum(n for n, _ in pool.map(lambda _: stream_once(client, name, args.tokens), range(args.streams)))
            concurrent.append((made, time.perf_counter() - start))
    finally:
        proc.terminate()
        proc.wait(10)

    rows = [
        ("bare model.generate, 1 stream", best_rate(bare)),
        ("chatloom serve, 1 stream (SSE, openai SDK)", best_rate(served)),
        (f"chatloom serve, {args.streams} streams one after another", best_rate(sequential)),
        (f"chatloom serve, {args.streams} streams at once (aggregate)", best_rate(concurrent)),
    ]
    print(f"model {args.model}, {args.tokens} tokens a reply, greedy, best of {args.repeat}, {os.cpu_count()} cores")
    print(f"{'':<52}{'tokens/s':>10}")
    for label, rate in rows:
        print(f"{label:<52}{rate:>10.1f}")
    overhead = rows[1][1] / rows[0][1]
    together = rows[3][1] / rows[2][1]
    print(f"server / bare: {overhead:.2f} (target >= 0.90); {args.streams} at once / one after another: {together:.2f} "
          "(target >= 1.5)")
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "serve.json").write_text(json.dumps({
        "model": args.model, "tokens": args.tokens, "streams": args.streams,
        "rates": {label: rate for label, rate in rows},
        "summary": [{"measure": "1 stream: server / bare generate", "ratio": overhead, "target": 0.90},
                    {"measure": f"{args.streams} streams at once / one after another", "ratio": together, "target": 1.5}],
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
