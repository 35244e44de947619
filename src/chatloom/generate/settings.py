"""Keys, endpoints and prices, kept in chatloom's home (``$CHATLOOM_HOME``, else ``~/.chatloom``).

    keys.json        {NAME: KEY}, mode 0600 (written whole: a temp file of mode 0600, renamed)
    endpoints.yaml   {NAME: {base_url, model, key, temperature, max_tokens, extra_body, price}}
    prices.yaml      {MODEL: {input: USD per 1M tokens, output: USD per 1M tokens}}

A key is read from the key store, ``--key-env VAR`` or ``$OPENAI_API_KEY`` and handed to the
``openai`` client only: it is never written to a dataset, a journal, a log, an error or a report.
``scrub`` takes it out of any text that came back from a server (some echo the key they refused).
"""

from __future__ import annotations

import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from ..errors import ChatloomError, UsageError
from ..fileio import atomic_write, home

KEYS = "keys.json"
ENDPOINTS = "endpoints.yaml"
PRICES = "prices.yaml"
#: USD per million tokens (input, output) of a few hosted models, as published in 2026-11; the
#: user's prices.yaml or an endpoint's own price wins
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "gpt-4o": {"input": 2.5, "output": 10.0},
    "gpt-4o-mini": {"input": 0.15, "output": 0.6},
    "gpt-4.1": {"input": 2.0, "output": 8.0},
    "gpt-4.1-mini": {"input": 0.4, "output": 1.6},
    "gpt-4.1-nano": {"input": 0.1, "output": 0.4},
}


# -- keys -------------------------------------------------------------------------------------


def _keys_path() -> Path:
    return home() / KEYS


def _read_keys() -> dict[str, str]:
    path = _keys_path()
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except orjson.JSONDecodeError as err:
        raise ChatloomError(f"{path}: not a key file (bad JSON: {err.msg})") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ChatloomError(f"{path}: not a key file (an object of names to keys is expected)")
    return data


def _write_keys(keys: dict[str, str]) -> None:
    with atomic_write(_keys_path(), mode=0o600) as f:
        f.write(orjson.dumps(keys, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


def set_key(name: str, key: str) -> Path:
    """Store ``key`` under ``name`` (mode 0600); returns the file."""
    _check_name(name, "key")
    if shown_name(name) != name:
        raise UsageError(
            f"key name {shown_name(name)}: that looks like a key; name it (e.g. 'openai') and type the key at the prompt"
        )
    key = key.strip()
    if not key:
        raise UsageError("the key is empty")
    keys = _read_keys()
    keys[name] = key
    _write_keys(keys)
    return _keys_path()


def remove_key(name: str) -> None:
    keys = _read_keys()
    if name not in keys:
        raise ChatloomError(f"no key named {name}; 'chatloom keys list' lists them")
    del keys[name]
    _write_keys(keys)


def key_names() -> list[str]:
    return sorted(_read_keys())


def keys_file_mode() -> int | None:
    """The key file's permission bits (None: no file)."""
    try:
        return stat.S_IMODE(_keys_path().stat().st_mode)
    except FileNotFoundError:
        return None


def shown_name(name: str) -> str:
    """A key's name as messages show it: one that looks like a key itself (typed where its name
    belongs) is cut to its head, so that no message carries a key."""
    if len(name) > 24 or name.lower().startswith(("sk-", "sk_", "hf_", "key-", "bearer")):
        return name[:4] + "…"
    return name


def get_key(name: str) -> str:
    keys = _read_keys()
    if name not in keys:
        shown = shown_name(name)
        if shown != name:
            raise ChatloomError(
                f"no key named {shown} in the key store: give the key's *name* ('chatloom keys set NAME' stores the key)"
            )
        raise ChatloomError(f"no key named {name}; set it with 'chatloom keys set {name}'")
    return keys[name]


# -- endpoints --------------------------------------------------------------------------------


@dataclass
class Endpoint:
    """Where requests go: an OpenAI-compatible base URL and model, the key's name in the key
    store (or the variable it is read from), and request defaults."""

    base_url: str
    model: str
    name: str | None = None
    key: str | None = None
    key_env: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)
    price: dict[str, float] | None = None

    def public(self) -> dict[str, Any]:
        """What a run records of it: everything but the name's lookups are kept; a key never is."""
        return {k: v for k, v in asdict(self).items() if v not in (None, {})}

    def __post_init__(self) -> None:
        if self.key is not None and shown_name(self.key) != self.key:
            raise UsageError(
                f"--key {shown_name(self.key)}: that looks like a key; give its name in the key store ('chatloom keys set NAME')"
            )

    def api_key(self) -> str | None:
        """The key: ``key_env``'s variable, else the key store's ``key``, else $OPENAI_API_KEY."""
        if self.key_env:
            value = os.environ.get(self.key_env)
            if not value:
                raise ChatloomError(f"${self.key_env} is not set (--key-env {self.key_env})")
            return value
        if self.key:
            return get_key(self.key)
        return os.environ.get("OPENAI_API_KEY") or None


def _endpoints_path() -> Path:
    return home() / ENDPOINTS


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ChatloomError(f"{path}{where}: not valid YAML") from None
    if not isinstance(data, dict):
        raise ChatloomError(f"{path}: a mapping of names is expected")
    return data


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    with atomic_write(path) as f:
        f.write(yaml.safe_dump(data, sort_keys=True, allow_unicode=True).encode())


def endpoints() -> dict[str, Endpoint]:
    path = _endpoints_path()
    out = {}
    for name, spec in _read_yaml(path).items():
        try:
            out[str(name)] = Endpoint(name=str(name), **spec)
        except TypeError as err:
            raise ChatloomError(f"{path}: endpoint {name}: {err}") from None
    return out


def add_endpoint(ep: Endpoint) -> None:
    """Save ``ep`` under its name. Its key must be a name in the key store (a key typed in its
    place is refused, not written into endpoints.yaml)."""
    assert ep.name
    _check_name(ep.name, "endpoint")
    if ep.key is not None:
        get_key(ep.key)
    data = _read_yaml(_endpoints_path())
    data[ep.name] = {k: v for k, v in ep.public().items() if k != "name"}
    _write_yaml(_endpoints_path(), data)


def remove_endpoint(name: str) -> None:
    data = _read_yaml(_endpoints_path())
    if name not in data:
        raise ChatloomError(f"no endpoint named {name}; 'chatloom endpoints list' lists them")
    del data[name]
    _write_yaml(_endpoints_path(), data)


def get_endpoint(name: str) -> Endpoint:
    found = endpoints().get(name)
    if found is None:
        raise ChatloomError(f"no endpoint named {name}; add it with 'chatloom endpoints add {name} URL --model MODEL'")
    return found


# -- prices -----------------------------------------------------------------------------------


def set_price(model: str, input_usd: float, output_usd: float) -> None:
    path = home() / PRICES
    data = _read_yaml(path)
    data[model] = {"input": input_usd, "output": output_usd}
    _write_yaml(path, data)


def price_of(ep: Endpoint) -> dict[str, float] | None:
    """USD per million input and output tokens: the endpoint's own, the user's table, the defaults."""
    if ep.price:
        return ep.price
    user = _read_yaml(home() / PRICES)
    return user.get(ep.model) or DEFAULT_PRICES.get(ep.model)


# -- secrets out of text ----------------------------------------------------------------------


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return text


def _check_name(name: str, what: str) -> None:
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise UsageError(f"{what} name {shown_name(name)!r}: use letters, digits, '-', '_' and '.'")
