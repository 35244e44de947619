"""The kinds of remote, by the address given to ``chatloom remote add``, and one sync with any.

- ``http(s)://…``: a chatloom server (``chatloom studio``, ``chatloom serve-dataset``): feeds of
  changes both ways (``remote.py``);
- ``kajiwoto://DATASET_ID``: a Kajiwoto dataset, through its GraphQL API (``kajiwoto.py``);
- ``hf://datasets/OWNER/NAME``: a dataset repository on the Hugging Face Hub (``hub.py``).

A remote's secret (a server's token, a Kajiwoto session token or password, a Hub token) comes from
the key store by the name kept in its config (``--key``), else from the environment, each kind
its own variable (``CHATLOOM_REMOTE_TOKEN``, ``CHATLOOM_KAJIWOTO_SECRET``, ``HF_TOKEN``): never
from the config itself, and never one kind's secret sent to another.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from ..errors import UsageError
from ..model import Conversation
from ..store import Store
from .merge import SyncResult
from .sides import Side

KAJIWOTO_ENDPOINT = "https://server.chiefhappiness.co/graphql"  # kajitool's; the service's status is unknown
OPTIONS = {"chatloom": (), "kajiwoto": ("endpoint", "user", "api", "throttle"), "hub": ("endpoint", "format", "shard_size")}


def kind_of(url: str) -> str:
    if url.startswith(("http://", "https://")):
        return "chatloom"
    if url.startswith("kajiwoto://"):
        from .kajiwoto import parse_url

        parse_url(url)
        return "kajiwoto"
    if url.startswith("hf://"):
        from .hub import parse_hub_url

        parse_hub_url(url)
        return "hub"
    raise UsageError(f"{url}: a remote is a chatloom server's http(s) URL, kajiwoto://DATASET_ID or hf://datasets/OWNER/NAME")


#: where each kind's secret is read from the environment when its config names no key: each its
#: own, so that no service is ever sent another's secret
ENVIRONMENT = {"chatloom": "CHATLOOM_REMOTE_TOKEN", "kajiwoto": "CHATLOOM_KAJIWOTO_SECRET", "hub": "HF_TOKEN"}


def environment_secret(info: dict[str, Any]) -> str | None:
    """A remote's secret from the environment, when its config names no key."""
    return os.environ.get(ENVIRONMENT[info.get("kind", "chatloom")]) or None


def check_endpoint(url: str) -> str:
    """An ``--endpoint`` as given, when it is an http(s) URL."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as err:
        raise UsageError(f"--endpoint {url}: not a URL ({err})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(f"--endpoint {url}: an http:// or https:// URL")
    return url


def info_of(store: Store, name: str) -> dict[str, Any]:
    remotes = store.remotes()
    if name not in remotes:
        known = ", ".join(remotes) or "none yet"
        raise UsageError(f"{name}: no such remote ({known}); add one with 'chatloom remote add {name} URL'")
    return remotes[name]


def _kajiwoto_client(info: dict[str, Any]) -> Any:
    from .kajiwoto import Kajiwoto

    return Kajiwoto(info.get("endpoint") or KAJIWOTO_ENDPOINT, throttle=float(info.get("throttle", 2.0)), api=info.get("api", "auto"))


def _need_secret(name: str, token: str | None) -> str:
    if not token:
        raise UsageError(f"{name}: Kajiwoto needs a session token (or, with --user, a password): "
                         f"'chatloom keys set NAME', then 'chatloom remote add … --key NAME'")  # fmt: skip
    return token


def open_remote(store: Store, name: str, token: str | None, *, pull: bool = True, push: bool = True, dry_run: bool = False) -> Any:
    """Remote ``name`` of ``store`` as ``sync_remote`` reads and writes it, by its kind
    (``token``: its secret); ``push``: this run may write there (a Hub repo is made, and Kajiwoto
    rows added, only then)."""
    info = info_of(store, name)
    kind = info.get("kind", "chatloom")
    if kind == "kajiwoto":
        from .kajiwoto import connect

        client = _kajiwoto_client(info)
        try:
            return connect(store, name, client, user=info.get("user"), secret=_need_secret(name, token), push=push, dry_run=dry_run)
        except BaseException:
            client.close()
            raise
    if kind == "hub":
        from ..fileio import home
        from .hub import HubRemote

        return HubRemote.from_info(info, token, push_only=push and not pull, creates=push, dataset_uid=store.dataset_uid() if push else None,
                                   name=name, cache_dir=home() / "cache" / "hub")  # fmt: skip
    from .remote import Remote

    return Remote(info["url"], token)


class RemoteSide(Side):
    """A remote as one side of ``chatloom diff``: its conversations read whole (a server's feed
    from the start, Kajiwoto's rows, the Hub's snapshot); nothing is written anywhere. It closes
    ``store`` (the dataset whose remote it is) when it is closed."""

    def __init__(self, store: Store, name: str, token: str | None):
        self.store, self.name = store, name
        self.remote = open_remote(store, name, token, push=False, dry_run=True)
        states, _ = self.remote.changes(None)
        self._states = sorted(states.items())

    def states(self) -> Iterator[tuple[str, str]]:
        return iter(self._states)

    def get(self, conv_id: str) -> Conversation | None:
        return self.remote.get([conv_id]).get(conv_id)

    def close(self) -> None:
        self.remote.close()
        self.store.close()


def remote_name(a: str, b: str) -> bool:
    """Whether ``b`` names a remote of dataset ``a`` (and no file)."""
    from pathlib import Path

    from ..store.db import is_dataset_file

    if Path(b).exists() or not Path(a).is_file() or not is_dataset_file(Path(a)):
        return False
    with Store(a) as store:
        return b in store.remotes()


def run(store: Store, name: str, token: str | None, *, pull: bool, push: bool, dry_run: bool) -> tuple[SyncResult, dict[str, Any]]:
    """Sync ``store`` with its remote ``name`` (``token``: its secret): the result, and what else
    the kind has to say (bytes on the wire; Kajiwoto's duplicates and rows that cannot be sent)."""
    from .kajiwoto import KajiwotoRemote, sync_kajiwoto
    from .remote import sync_remote

    remote = open_remote(store, name, token, pull=pull, push=push, dry_run=dry_run)
    try:
        if isinstance(remote, KajiwotoRemote):
            result = sync_kajiwoto(store, name, remote, pull=pull, push=push, dry_run=dry_run)
        else:
            result = sync_remote(store, name, remote, pull=pull, push=push, dry_run=dry_run)
    finally:
        remote.close()
    extra: dict[str, Any] = {"bytes_sent": remote.sent, "bytes_received": remote.received}
    if isinstance(remote, KajiwotoRemote):
        r = remote.report
        extra |= {"duplicates_kept": r.duplicates, "linked": r.linked, "not_sent": r.not_sent, "missing_history": r.missing_history}
    return result, extra
