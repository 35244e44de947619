"""``chatloom studio``: the web app over a dataset."""

from __future__ import annotations

import secrets
import socket
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
from . import cli, dataset_option


@cli.command("studio")
@dataset_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any but loopback needs a token (one is made when --token is not given).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="0: a free port.")
@click.option("--token", envvar="CHATLOOM_STUDIO_TOKEN", default=None,
              help="Needed by every request (a link with ?token=, or 'Authorization: Bearer'); env CHATLOOM_STUDIO_TOKEN.")
@click.option("--open", "open_browser", is_flag=True, help="Open the studio in the browser.")
@click.option("--endpoint", "endpoint_name", default=None, help="LLM assist: a saved endpoint ('chatloom endpoints add').")
@click.option("--base-url", default=None, help="LLM assist: an OpenAI-compatible base URL (with --model).")
@click.option("--model", default=None, help="LLM assist: the model's name at --base-url.")
@click.option("--key", "key_name", default=None, help="LLM assist: the key's name in the key store ('chatloom keys set').")
@click.option("--key-env", default=None, help="LLM assist: the variable holding the key.")
@click.option("--upload-limit", default=512, show_default=True, type=click.IntRange(1), help="Largest import file, MiB.")
def studio(dataset: str, host: str, port: int, token: str | None, open_browser: bool, endpoint_name: str | None,
           base_url: str | None, model: str | None, key_name: str | None, key_env: str | None, upload_limit: int) -> None:
    """Read, edit and write chats in the browser, with LLM help.

    Binds 127.0.0.1 unless told otherwise; on any other address every request needs the token
    (printed, as a link that signs the browser in). The LLM key stays on this machine.

    \b
    Example usage:
        chatloom studio -d chats.db --open
        chatloom studio -d chats.db --base-url http://127.0.0.1:8000/v1 --model my-run
        chatloom studio -d chats.db --endpoint openai
        chatloom studio -d chats.db --host 0.0.0.0          # prints a link with a new token
    """
    from ..serve.server import is_loopback, listen
    from ..store import Store
    from ..studio import Config, create_app

    if token is not None and not token.strip():
        raise UsageError("--token cannot be empty")
    made = False
    if token is None and not is_loopback(host):
        token, made = secrets.token_urlsafe(24), True
    if (base_url is None) != (model is None) and endpoint_name is None:
        raise UsageError("--base-url and --model go together")
    endpoint: dict[str, Any] = {}
    if endpoint_name:
        endpoint = {"name": endpoint_name, **({"model": model} if model else {})}
    elif base_url:
        endpoint = {"base_url": base_url, "model": model, **({"key": key_name} if key_name else {}), **({"key_env": key_env} if key_env else {})}
    if endpoint:
        from fastapi import HTTPException

        from ..studio.assist import checked_endpoint

        try:
            endpoint = checked_endpoint(endpoint)
        except HTTPException as err:
            raise UsageError(str(err.detail)) from None
    path = Path(dataset)
    Store(path, create=True).close()  # a new dataset, or a check (and migration) of the one given
    sock = listen(host, port)
    bound = sock.getsockname()[1]
    names = {host, "127.0.0.1", "localhost", "[::1]"} if is_loopback(host) else set()
    hosts = {f"{n}:{bound}" for n in names} | names if names else set()
    config = Config(dataset=path, token=token, hosts=hosts, endpoint=endpoint, upload_limit=upload_limit << 20)
    app, _ = create_app(config)
    shown = f"[{host}]" if ":" in host else host
    link = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else shown}:{bound}/"
    if token:
        link += f"?token={token}" if made else ""

    def started() -> None:
        click.echo(f"studio for {path} at {link} (Ctrl+C stops)")
        if made:
            click.echo("the link holds a new token: anyone with it can edit this dataset; it is not shown again")
        elif token:
            click.echo("requests need the token given (open the page with ?token=TOKEN, or send 'Authorization: Bearer TOKEN')")
        sys.stdout.flush()
        if open_browser:
            import webbrowser

            webbrowser.open(link)

    run(app, sock, started)


def run(app: Any, sock: socket.socket, on_start: Any) -> None:
    """Serve ``app`` on ``sock`` until Ctrl+C; ``on_start()`` once it serves."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                on_start()

    # keep-alive past uvicorn's 5 s: a browser's or a client's idle connection is not closed just
    # as it sends its next request (a client then sees a dropped connection)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2, timeout_keep_alive=65)
    Server(config).run(sockets=[sock])


@cli.command("serve-dataset")
@dataset_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any but loopback needs a token (one is made when --token is not given).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="0: a free port.")
@click.option("--token", envvar="CHATLOOM_STUDIO_TOKEN", default=None, help="Needed by every request ('Authorization: Bearer').")
@click.pass_context
def serve_dataset(ctx: click.Context, dataset: str, host: str, port: int, token: str | None) -> None:
    """Serve a dataset as a sync remote (the studio's server, for other machines' 'chatloom sync').

    \b
    Example usage:
        chatloom serve-dataset -d chats.db --host 0.0.0.0           # prints a new token
        chatloom remote add server http://SERVER:8765 --key server -d laptop.db   # on the laptop
    """
    ctx.invoke(studio, dataset=dataset, host=host, port=port, token=token, open_browser=False, endpoint_name=None, base_url=None,
               model=None, key_name=None, key_env=None, upload_limit=512)
