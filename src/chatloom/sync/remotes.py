"""The kinds of remote, by the address given to ``chatloom remote add``, and one sync with any.

- ``http(s)://…``: a chatloom server (``chatloom studio``, ``chatloom serve-dataset``): feeds of
  changes both ways (``remote.py``);
- ``kajiwoto://DATASET_ID``: a Kajiwoto dataset, through its GraphQL API (``kajiwoto.py``);
- ``hf://datasets/OWNER/NAME``: a dataset repository on the Hugging Face Hub (``hub.py``).

A remote's secret (a server's token, a Kajiwoto session token or password, a Hub token) comes from
the key store by the name kept in its config (``--key``), else from the environment
(``CHATLOOM_REMOTE_TOKEN``; ``HF_TOKEN`` for the Hub): never from the config itself.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import UsageError
from ..store import Store
from .merge import SyncResult

KAJIWOTO_ENDPOINT = "https://server.chiefhappiness.co/graphql"  # kajitool's; the service's status is unknown
OPTIONS = {"chatloom": (), "kajiwoto": ("endpoint", "user", "api", "throttle"), "hub": ("endpoint", "format", "shard_size", "revision")}


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


def environment_secret(info: dict[str, Any]) -> str | None:
    """A remote's secret from the environment, when its config names no key."""
    return os.environ.get("CHATLOOM_REMOTE_TOKEN") or (os.environ.get("HF_TOKEN") if info.get("kind") == "hub" else None)


def info_of(store: Store, name: str) -> dict[str, Any]:
    remotes = store.remotes()
    if name not in remotes:
        known = ", ".join(remotes) or "none yet"
        raise UsageError(f"{name}: no such remote ({known}); add one with 'chatloom remote add {name} URL'")
    return remotes[name]


def run(store: Store, name: str, token: str | None, *, pull: bool, push: bool, dry_run: bool) -> tuple[SyncResult, dict[str, Any]]:
    """Sync ``store`` with its remote ``name`` (``token``: its secret): the result, and what else
    the kind has to say (bytes on the wire; Kajiwoto's duplicates and rows that cannot be sent)."""
    info = info_of(store, name)
    kind = info.get("kind", "chatloom")
    if kind == "kajiwoto":
        from .kajiwoto import Kajiwoto, sync_kajiwoto

        if not token:
            raise UsageError(f"{name}: Kajiwoto needs a session token (or, with --user, a password): "
                             f"'chatloom keys set NAME', then 'chatloom remote add … --key NAME'")  # fmt: skip
        client = Kajiwoto(info.get("endpoint") or KAJIWOTO_ENDPOINT, throttle=float(info.get("throttle", 2.0)), api=info.get("api", "auto"))
        try:
            result, report = sync_kajiwoto(store, name, client, user=info.get("user"), secret=token, pull=pull, push=push, dry_run=dry_run)
        finally:
            client.close()
        return result, {"bytes_sent": client.sent, "bytes_received": client.received, "duplicates_kept": report.duplicates,
                        "linked": report.linked, "not_sent": report.not_sent, "missing_history": report.missing_history}  # fmt: skip
    if kind == "hub":
        from .hub import HubRemote
        from .remote import sync_remote

        remote: Any = HubRemote.from_info(info, token, push_only=push and not pull, dataset_uid=store.dataset_uid())
    else:
        from .remote import Remote, sync_remote

        remote = Remote(info["url"], token)
    try:
        result = sync_remote(store, name, remote, pull=pull, push=push, dry_run=dry_run)
    finally:
        remote.close()
    return result, {"bytes_sent": remote.sent, "bytes_received": remote.received}
