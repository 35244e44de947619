"""Keys and endpoints for LLM-assisted data: ``keys`` (set, list, rm) and ``endpoints`` (add,
list, rm, price), kept in chatloom's home."""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson
from rich.table import Table

from ..errors import UsageError
from . import cli, console, json_option, print_json


def json_object(value: str | None, flag: str) -> dict[str, Any]:
    if not value:
        return {}
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as err:
        raise UsageError(f"{flag}: not JSON ({err.msg})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{flag}: a JSON object is expected")
    return data


# -- keys -------------------------------------------------------------------------------------


@cli.group("keys")
def keys() -> None:
    """API keys, kept in chatloom's home (keys.json, mode 0600), never written anywhere else.

    \b
    Example usage:
        chatloom keys set openai                 # prompted, not echoed
        printenv OPENAI_API_KEY | chatloom keys set openai
        chatloom keys list
        chatloom keys rm openai
    """


@keys.command("set")
@click.argument("name")
def keys_set(name: str) -> None:
    """Store a key under NAME: typed at a hidden prompt, or read from stdin when it is not a
    terminal.

    \b
    Example usage:
        chatloom keys set openai
        printenv OPENAI_API_KEY | chatloom keys set openai
    """
    from ..generate.settings import set_key

    if sys.stdin.isatty():
        key = click.prompt(f"key for {name}", hide_input=True, confirmation_prompt=True, err=True)
    else:
        key = sys.stdin.readline()
    path = set_key(name, key)
    click.echo(f"key {name} saved in {path} (mode 0600)")


@keys.command("list")
@json_option
def keys_list(as_json: bool) -> None:
    """The names of the stored keys (never the keys).

    \b
    Example usage:
        chatloom keys list --json
    """
    from ..generate.settings import key_names

    names = key_names()
    if as_json:
        print_json(names)
    elif not names:
        click.echo("no keys; 'chatloom keys set NAME' adds one")
    else:
        click.echo("\n".join(names))


@keys.command("rm")
@click.argument("name")
def keys_rm(name: str) -> None:
    """Forget the key NAME.

    \b
    Example usage:
        chatloom keys rm openai
    """
    from ..generate.settings import remove_key

    remove_key(name)
    click.echo(f"key {name} removed")


# -- endpoints --------------------------------------------------------------------------------


@cli.group("endpoints")
def endpoints_group() -> None:
    """OpenAI-compatible endpoints saved by name (endpoints.yaml in chatloom's home): base URL,
    model, the key's name, and request defaults.

    \b
    Example usage:
        chatloom endpoints add local http://127.0.0.1:8000/v1 --model my-run
        chatloom endpoints add openai https://api.openai.com/v1 --model gpt-4o-mini --key openai
        chatloom endpoints list
        chatloom endpoints rm local
    """


@endpoints_group.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--model", required=True, help="The model name the endpoint serves.")
@click.option("--key", "key_name", default=None, help="The name of its key in the key store ('chatloom keys set NAME').")
@click.option("--key-env", default=None, help="Read its key from this environment variable instead.")
@click.option("--temperature", type=click.FloatRange(0, 2), default=None, help="Default temperature.")
@click.option("--max-tokens", type=click.IntRange(1), default=None, help="Default longest reply.")
@click.option("--extra-body", default=None, help="Default extra request fields, as a JSON object.")
@click.option("--price-input", type=click.FloatRange(0), default=None, help="USD per million prompt tokens (for --dry-run).")
@click.option("--price-output", type=click.FloatRange(0), default=None, help="USD per million reply tokens.")
def endpoints_add(name: str, url: str, model: str, key_name: str | None, key_env: str | None, temperature: float | None,
                  max_tokens: int | None, extra_body: str | None, price_input: float | None, price_output: float | None) -> None:  # fmt: skip
    """Save (or replace) endpoint NAME at URL.

    \b
    Example usage:
        chatloom endpoints add local http://127.0.0.1:8000/v1 --model my-run
        chatloom endpoints add openai https://api.openai.com/v1 --model gpt-4o-mini --key openai --temperature 0.7
    """
    from ..generate.settings import Endpoint, add_endpoint

    if not url.startswith(("http://", "https://")):
        raise UsageError(f"URL {url!r}: an http:// or https:// base URL is expected (e.g. http://127.0.0.1:8000/v1)")
    if (price_input is None) != (price_output is None):
        raise UsageError("give both --price-input and --price-output")
    price = {"input": price_input, "output": price_output} if price_input is not None else None
    add_endpoint(Endpoint(url.rstrip("/"), model, name, key_name, key_env, temperature, max_tokens,
                          json_object(extra_body, "--extra-body"), price))  # type: ignore[arg-type]  # fmt: skip
    click.echo(f"endpoint {name}: {url} ({model})")


@endpoints_group.command("list")
@json_option
def endpoints_list(as_json: bool) -> None:
    """The saved endpoints.

    \b
    Example usage:
        chatloom endpoints list --json
    """
    from ..generate.settings import endpoints

    found = endpoints()
    if as_json:
        print_json({n: e.public() for n, e in found.items()})
        return
    if not found:
        click.echo("no endpoints; 'chatloom endpoints add NAME URL --model MODEL' adds one")
        return
    table = Table("name", "base URL", "model", "key", "defaults", box=None, header_style="bold")
    for n, e in found.items():
        defaults = {k: v for k, v in (("temperature", e.temperature), ("max_tokens", e.max_tokens)) if v is not None}
        table.add_row(n, e.base_url, e.model, e.key or (f"${e.key_env}" if e.key_env else "$OPENAI_API_KEY"),
                      ", ".join(f"{k}={v}" for k, v in {**defaults, **e.extra_body}.items()))  # fmt: skip
    console.print(table)


@endpoints_group.command("rm")
@click.argument("name")
def endpoints_rm(name: str) -> None:
    """Forget endpoint NAME.

    \b
    Example usage:
        chatloom endpoints rm local
    """
    from ..generate.settings import remove_endpoint

    remove_endpoint(name)
    click.echo(f"endpoint {name} removed")


@endpoints_group.command("price")
@click.argument("model")
@click.option("--input", "input_usd", type=click.FloatRange(0), required=True, help="USD per million prompt tokens.")
@click.option("--output", "output_usd", type=click.FloatRange(0), required=True, help="USD per million reply tokens.")
def endpoints_price(model: str, input_usd: float, output_usd: float) -> None:
    """Set a model's price in the price table (prices.yaml) that --dry-run and status use.

    \b
    Example usage:
        chatloom endpoints price gpt-4o-mini --input 0.15 --output 0.6
    """
    from ..generate.settings import set_price

    set_price(model, input_usd, output_usd)
    click.echo(f"{model}: ${input_usd}/M prompt tokens, ${output_usd}/M reply tokens")
