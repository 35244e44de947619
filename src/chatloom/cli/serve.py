"""Talking to a model: ``chat`` (the terminal) and ``serve`` (an OpenAI-compatible API)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
from . import cli, json_option, print_json

WHICH = click.option("--which", type=click.Choice(["best", "final"]), default="best", show_default=True,
                     help="Which weights of a run.")


def sampling_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The sampling flags, shared by the commands that generate."""
    for option in reversed([
        click.option("--temperature", type=click.FloatRange(0, 2), default=0.7, show_default=True, help="0: greedy."),
        click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True),
        click.option("--top-k", type=click.IntRange(0), default=0, show_default=True, help="0: off."),
        click.option("--repetition-penalty", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True),
        click.option("--max-tokens", type=click.IntRange(1), default=512, show_default=True, help="Longest reply."),
        click.option("--seed", type=int, default=None, help="The same seed and history give the same reply."),
        click.option("--best-of", type=click.IntRange(1, 8), default=1, show_default=True,
                     help="Sample N replies, keep the likeliest (highest mean log-probability per token); not streamed."),
    ]):
        fn = option(fn)
    return fn


def _load(target: str, which: str) -> Any:
    from ..serve.generation import Generator
    from ..train.models import load

    if sys.stderr.isatty():
        click.echo(f"loading {target}…", err=True)
    import torch

    # a GPU when there is one (untested here: this box has none)
    return Generator(*load(target, which=which, device="cuda" if torch.cuda.is_available() else None))


@cli.command("chat")
@click.argument("target", metavar="RUN|MODEL")
@WHICH
@click.option("--prompt", default=None, help="Answer this one message on stdout and exit (for scripts).")
@click.option("--system", default=None, help="The system prompt.")
@sampling_options
@json_option
def chat(target: str, which: str, prompt: str | None, system: str | None, temperature: float, top_p: float, top_k: int,
         repetition_penalty: float, max_tokens: int, seed: int | None, best_of: int, as_json: bool) -> None:
    """Talk to a model or a training run in the terminal.

    RUN is a training run's folder (with run.yaml; --which picks best/ or final/); MODEL is
    tiny:gpt2, tiny:llama, smollm2, a .gguf file, a model folder or a Hub name in the local cache.

    Replies stream as they come. Commands: /reset (forget the conversation), /system TEXT,
    /save FILE (append the conversation to FILE as one chatloom JSONL line), /retry (the last
    reply again), /quit. Ctrl+C stops a reply. A history longer than the model's context loses
    its oldest turns first; the system prompt stays.

    \b
    Example usage:
        chatloom chat runs/my-run                         # its best weights
        chatloom chat smollm2 --system "You are terse." --temperature 0.3
        chatloom chat tiny:llama --prompt "hello" --seed 0 --json
        echo "hi" | chatloom chat runs/my-run --which final
    """
    from ..serve.chat import HELP, ChatSession, run_repl
    from ..serve.generation import Sampling

    if as_json and prompt is None:
        raise UsageError("--json needs --prompt TEXT (the interactive session prints text)")
    sampling = Sampling(temperature=temperature, top_p=top_p, top_k=top_k, repetition_penalty=repetition_penalty,
                        max_tokens=max_tokens, seed=seed)
    session = ChatSession(_load(target, which), sampling, system=system, best_of=best_of)
    if prompt is not None:
        pieces = session.say(prompt)
        if as_json:
            reply = "".join(pieces)
            last = session.last
            print_json({"model": target, "reply": reply, "finish_reason": last.finish_reason if last else "stop",
                        "usage": last.usage if last else None, "dropped_messages": session.dropped})
            return
        for piece in pieces:
            click.echo(piece, nl=False)
        click.echo()
        return
    stdin = sys.stdin
    tty = stdin.isatty()
    if tty:
        click.echo(f"chatting with {target}; {HELP}", err=True)

    def ask() -> None:
        if tty:
            click.echo("> ", nl=False, err=True)

    def write(text: str) -> None:
        click.echo(text, nl=False)
        sys.stdout.flush()

    try:
        run_repl(session, stdin, write=write, note=lambda text: click.echo(text, err=True), ask=ask)
    except KeyboardInterrupt:  # at the prompt (during a reply, Ctrl+C stops the reply only)
        click.echo("", err=True)


@cli.command("serve")
@click.argument("target", metavar="RUN|MODEL")
@WHICH
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any but loopback needs a token (one is made when --token is not given).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: a free port.")
@click.option("--token", envvar="CHATLOOM_SERVE_TOKEN", default=None,
              help="Every request must send 'Authorization: Bearer TOKEN'; also $CHATLOOM_SERVE_TOKEN (kept out of `ps`).")
@click.option("--model-name", default=None, help="The model's name in the API (default: the run's folder name, or MODEL).")
@click.option("--engine", type=click.Choice(["transformers", "vllm"]), default="transformers", show_default=True,
              help="vllm: hand the model to `vllm serve` (a GPU machine with vLLM installed; untested here).")
def serve(target: str, which: str, host: str, port: int, token: str | None, model_name: str | None, engine: str) -> None:
    """Serve a model or a training run over an OpenAI-compatible HTTP API.

    RUN and MODEL are as for `chatloom chat`; the API names the model after the run's folder,
    else MODEL as given (--model-name to choose).

    Routes: GET /v1/models, POST /v1/chat/completions and /v1/completions (streaming with
    "stream": true), GET /health. Any OpenAI client works with base_url http://HOST:PORT/v1.
    Requests that arrive while the model is busy wait, and then run together as one batch (up to
    8 replies; those with a seed run alone). A client that disconnects stops its reply. The
    token is never logged.

    \b
    Example usage:
        chatloom serve runs/my-run                        # http://127.0.0.1:8000/v1
        chatloom serve smollm2 --port 8080 --model-name smol
        chatloom serve runs/my-run --host 0.0.0.0         # prints a new token; requests need it
        CHATLOOM_SERVE_TOKEN=s3cret chatloom serve runs/my-run --host 0.0.0.0
        curl http://127.0.0.1:8000/v1/chat/completions -H "Content-Type: application/json" \\
          -d '{"model": "my-run", "messages": [{"role": "user", "content": "hi"}]}'
    """
    import secrets

    from ..serve.server import is_loopback
    from ..train.models import run_model_folder

    run_folder = run_model_folder(target, which)
    name = model_name or (Path(target).resolve().name if run_folder else target)
    if token is not None and not token.strip():
        raise UsageError("--token cannot be empty")
    made = False
    if token is None and not is_loopback(host):
        token, made = secrets.token_urlsafe(32), True
    if engine == "vllm":
        _exec_vllm(target, run_folder, name, host, port, token, made)
        return
    from ..serve.server import create_app, listen
    from ..serve.server import serve as run_server

    sock = listen(host, port)
    app = create_app(_load(target, which), model_name=name, token=token)

    def started(url: str) -> None:
        click.echo(f"serving {name} at {url} (OpenAI-compatible; Ctrl+C stops)")
        if made:
            click.echo(f"token: {token}  (send 'Authorization: Bearer TOKEN'; it is not shown again)")
        elif token:
            click.echo("requests need the token given ('Authorization: Bearer TOKEN')")
        sys.stdout.flush()

    run_server(app, sock, host=host, on_start=started)


def _exec_vllm(target: str, run_folder: Path | None, name: str, host: str, port: int, token: str | None, made: bool) -> None:
    from ..serve import vllm
    from ..train.models import resolve

    if not vllm.available():
        raise UsageError("vllm is not installed (it needs a GPU machine and its own environment)")
    argv = vllm.command(run_folder or resolve(target), model_name=name, host=host, port=port)
    env = dict(os.environ)
    if token:
        env["VLLM_API_KEY"] = token
        if made:
            click.echo(f"token: {token}  (send 'Authorization: Bearer TOKEN'; it is not shown again)")
    click.echo(" ".join(argv), err=True)
    sys.stdout.flush()
    os.execvpe(argv[0], argv, env)
