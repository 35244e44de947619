"""A dataset repository on the Hugging Face Hub as a remote (``hf://datasets/OWNER/NAME``),
through ``huggingface_hub``: ``chatloom sync|pull|push`` against it as against a chatloom server.

- **Layout**: ``data/train-0000k-of-0000N.parquet`` (or ``.jsonl``), ``shard_size`` conversations
  each, rows sorted by id, in chatloom's lossless Arrow mapping (``formats.tables.arrow_row``: the
  ``parquet`` export's columns; a JSONL line is the same row as JSON), and a dataset card
  (``README.md``) whose YAML ``datasets.load_dataset`` reads: the ``default`` config's ``train``
  split, the features, the number of examples; its text gives the counts and the build recipe if
  one is given. No chat content is in the card.
- **Read whole**: the Hub has no changes feed. ``changes`` reads the snapshot at the branch head
  (each shard downloaded once into chatloom's own cache, ``$CHATLOOM_HOME/cache/hub``, never
  ``~/.cache``) and gives
  every conversation's state and the head commit as the mark; ``whole = True`` tells
  ``sync_remote`` that a conversation missing there was deleted there.
- **Write once**: ``apply`` takes every change whose expected state is the snapshot's, writes the
  new snapshot (the rows left as they were, with the changes merged in by id) and makes **one**
  commit with ``parent_commit`` = the head it read: when the branch moved meanwhile the Hub refuses
  it (HTTP 412) and nothing is overwritten; the error asks for a pull. Files whose bytes did not
  change are not sent again (``create_commit`` leaves them out).
- **A repo not there** is created (private) by the first push or sync; a pull of it says so.
- **Push only**: a push refuses to commit when a commit newer than the last sync (the mark) was
  made by anyone but this dataset (each commit names its dataset in its description): pull first.
- **Interrupted**: a commit is all or nothing, so a push killed at any point left either the old
  snapshot or the new one; run again, it finds the rest to do, or nothing. A pull writes here one
  conversation at a time (``sync_remote``).
- **The token** is given to ``huggingface_hub`` in memory only (``HfApi(token=…)``): it is written to
  no file, no commit, no message. With none, no token is sent (a saved ``hf auth login`` is not read).
- Xet is off (``HF_HUB_DISABLE_XET``): files go as regular or LFS uploads.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any

import msgspec
import orjson

from ..errors import UsageError
from ..formats.tables import arrow_row, arrow_schema, from_arrow_row
from ..model import Conversation
from ..store.sync import DELETED, conversation_state
from .remote import RemoteError

ENDPOINT = "https://huggingface.co"
SHARD_SIZE = 100_000  # conversations per shard
CARD_MARK = "Conversations kept in sync with a chatloom dataset"  # a card chatloom wrote (and may write again)
ROW_GROUP = 1024  # rows per Parquet row group (and per read batch)
FORMATS = {"parquet": ".parquet", "jsonl": ".jsonl"}
SHARD = re.compile(r"data/train-(\d{5})-of-(\d{5})\.(parquet|jsonl)")
_URL = re.compile(r"hf://datasets/([A-Za-z0-9][\w.-]{0,95})/([A-Za-z0-9][\w.-]{0,95})/?")
MARK = "chatloom-dataset: "  # in each commit's description, then the dataset's uid


def parse_hub_url(url: str) -> str:
    """The repo id (``OWNER/NAME``) of ``hf://datasets/OWNER/NAME``."""
    m = _URL.fullmatch(url)
    if m is None or any(part.endswith((".", "-")) or ".." in part or "--" in part for part in m.groups()):
        raise UsageError(f"{url}: a Hub remote is hf://datasets/OWNER/NAME (letters, digits, '-', '_', '.')")
    return f"{m[1]}/{m[2]}"


def _hub() -> Any:
    """``huggingface_hub``, with Xet off and no progress bars on the terminal."""
    os.environ.setdefault("HF_HUB_DISABLE_XET", "1")  # read when huggingface_hub is first imported
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.utils import disable_progress_bars

    constants.HF_HUB_DISABLE_XET = True  # and if something imported it before us
    disable_progress_bars("huggingface_hub.http_get")
    return huggingface_hub


class HubRemote:
    """A Hub dataset repo, read whole at the branch head and written in one commit per push."""

    whole = True  # what the snapshot lacks was deleted there

    def __init__(self, repo_id: str, token: str | None = None, *, endpoint: str = ENDPOINT, revision: str = "main",
                 fmt: str = "parquet", shard_size: int = SHARD_SIZE, private: bool = True, push_only: bool = False,
                 dataset_uid: str | None = None, name: str | None = None, recipe: str | None = None,
                 cache_dir: str | Path | None = None, creates: bool | None = None):  # fmt: skip
        if fmt not in FORMATS:
            raise UsageError(f"{fmt}: a Hub remote's format is parquet or jsonl")
        if shard_size < 1:
            raise UsageError(f"shard_size {shard_size}: at least 1 conversation per shard")
        hub = _hub()
        self.repo_id, self.revision, self.fmt, self.shard_size = repo_id, revision, fmt, shard_size
        self.url = f"hf://datasets/{repo_id}"
        self.endpoint = endpoint.rstrip("/")
        self.api = hub.HfApi(endpoint=self.endpoint, token=token or False, library_name="chatloom")
        self.has_token = bool(token)
        self.private, self.push_only, self.dataset_uid, self.recipe = private, push_only, dataset_uid, recipe
        self.creates = push_only if creates is None else creates  # a run that pushes makes a repo that is not there yet
        self.pull_hint = f"'chatloom pull {name}'" if name else "a pull ('chatloom pull NAME')"
        self._own_cache = cache_dir is None
        self.cache = Path(tempfile.mkdtemp(prefix="chatloom-hub-") if cache_dir is None else cache_dir)
        self.cache.mkdir(parents=True, exist_ok=True)
        self.sent = self.received = 0  # bytes of files on the wire
        self._read = False
        self._head: str | None = None  # the commit the snapshot is read from (None: no repo yet)
        self._shards: list[tuple[str, Path]] = []  # (path in the repo, local file), in order
        self._states: dict[str, str] = {}
        self._where: dict[str, tuple[int, int]] = {}  # id -> (its shard, its row there)
        self._groups: dict[Path, list[tuple[int, int]]] = {}  # a shard's row groups: (first row, where)
        self._group: tuple[Any, list[dict[str, Any]]] = (None, [])  # the group last read, by (shard, where)
        self._sorted = True  # ids ascending through the shards, each once (as chatloom writes them)
        self.since: str | None = None
        self._work: Path | None = None  # the shards of this remote's last commit
        self._card_before: str | None = None  # the card at the head, when there is one
        self._foreign: set[str] = set()  # columns of the shards there that chatloom does not write

    @classmethod
    def from_info(cls, info: dict[str, Any], token: str | None, *, push_only: bool = False, **kw: Any) -> HubRemote:
        """The remote a stored config describes (``chatloom remote add … hf://datasets/OWNER/NAME``)."""
        return cls(parse_hub_url(info["url"]), token, endpoint=info.get("endpoint") or ENDPOINT, revision=info.get("revision") or "main",
                   fmt=info.get("format") or "parquet", shard_size=int(info.get("shard_size") or SHARD_SIZE),
                   private=info.get("private", True), push_only=push_only, **kw)  # fmt: skip

    # -- errors --------------------------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """``huggingface_hub``'s and the network's errors as one line each (``RemoteError``)."""
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

        try:
            yield
        except RevisionNotFoundError:
            raise RemoteError(f"{self.url}: no revision {self.revision!r} on {self.endpoint}") from None
        except HfHubHTTPError as err:
            status = err.response.status_code if err.response is not None else None
            if status in (401, 403) and not isinstance(err, RepositoryNotFoundError) or (status == 401 and not self.has_token):
                raise RemoteError(f"{self.url}: the Hub " + ("refused the token (does it have write access?)" if self.has_token else
                                  "wants a token: 'chatloom keys set NAME', then 'chatloom remote add … --key NAME'")) from None  # fmt: skip
            if isinstance(err, RepositoryNotFoundError):
                raise RemoteError(f"{self.url}: no such dataset on {self.endpoint}; 'chatloom push' creates it") from None
            if status in (409, 412):
                raise self._stale() from None
            first = (err.server_message or str(err)).strip().splitlines()
            raise RemoteError(f"{self.url}: HTTP {status}: {first[0][:200] if first else ''}") from None
        except (*_network_errors(), LocalEntryNotFoundError) as err:
            raise RemoteError(f"{self.url}: cannot reach {self.endpoint}: {type(err).__name__}: {str(err)[:200]}") from None
        except OSError as err:
            raise RemoteError(f"{self.url}: {type(err).__name__}: {str(err)[:200]}") from None

    def _stale(self) -> RemoteError:
        return RemoteError(f"{self.url}: the Hub has a newer commit than this dataset has seen; run {self.pull_hint} first "
                           f"(nothing was overwritten)")  # fmt: skip

    # -- the snapshot at the head ----------------------------------------------------------------

    def _snapshot(self) -> None:
        """Download the shards at the branch head (into the cache) and read every conversation's state."""
        if self._read:
            return
        from huggingface_hub.errors import RepositoryNotFoundError

        with self._errors():
            try:
                info = self.api.dataset_info(self.repo_id, revision=self.revision)
            except RepositoryNotFoundError:
                if not self.creates or not self.has_token:
                    raise
                self._read = True  # none yet: the push creates it
                return
        self._head = info.sha
        if any(s.rfilename == "README.md" for s in info.siblings or []):
            self._card_before = self._download("README.md").read_text(encoding="utf-8", errors="replace")
        names = sorted(s.rfilename for s in info.siblings or [] if SHARD.fullmatch(s.rfilename))
        columns = set(arrow_schema().names)
        last: str | None = None
        for k, name in enumerate(names):
            path = self._download(name)
            self._shards.append((name, path))
            for n, row in enumerate(_rows(path)):
                self._foreign.update(k for k in row if k not in columns)
                conv_id = row.get("id")
                if not conv_id:
                    raise RemoteError(f"{self.url}: {name}: row {n} has no id (chatloom syncs conversations by id)")
                try:
                    self._states[conv_id] = conversation_state(from_arrow_row(row))
                except (TypeError, ValueError, KeyError, msgspec.ValidationError) as err:
                    raise RemoteError(f"{self.url}: {name}: row {n} ({conv_id}) is not a conversation: {err}") from None
                self._sorted &= last is None or conv_id > last
                self._where[conv_id] = (k, n)
                last = conv_id
        self._read = True

    def _download(self, name: str) -> Path:
        """One file at the head, from the cache when a run before this one fetched it."""
        hub = _hub()
        cached = hub.try_to_load_from_cache(self.repo_id, name, cache_dir=self.cache, revision=self._head, repo_type="dataset")
        if isinstance(cached, str):
            return Path(cached)
        with self._errors():
            path = Path(self.api.hf_hub_download(self.repo_id, name, repo_type="dataset", revision=self._head, cache_dir=self.cache))
        self.received += path.stat().st_size
        return path

    def changes(self, since: str | None) -> tuple[dict[str, str], str | None]:
        """Every conversation at the head, and the head commit (the mark); ``since``: the mark of
        the last sync, which a push only checks the commits after."""
        self.since = since
        self._snapshot()
        return dict(self._states), self._head

    def states(self, ids: list[str]) -> dict[str, str | None]:
        self._snapshot()
        return {i: self._states.get(i) for i in ids}

    def get(self, ids: list[str]) -> dict[str, Conversation | None]:
        """The conversations at the head, read by row group (in shard order; one group kept), so
        that one asked for alone costs a group, not a shard."""
        self._snapshot()
        found: dict[str, Conversation | None] = dict.fromkeys(ids)
        for conv_id in sorted((i for i in found if i in self._where), key=self._where.__getitem__):
            found[conv_id] = from_arrow_row(self._row(*self._where[conv_id]))
        return found

    def _row(self, k: int, n: int) -> dict[str, Any]:
        """Row ``n`` of shard ``k``."""
        path = self._shards[k][1]
        if path not in self._groups:
            self._groups = {path: _groups(path)}  # the starts of one shard's groups at a time
        groups = self._groups[path]
        first, where = groups[bisect.bisect_right(groups, (n, math.inf)) - 1]
        if self._group[0] != (path, where):
            self._group = ((path, where), _group(path, where))
        return self._group[1][n - first]

    # -- a push: one commit ------------------------------------------------------------------------

    def apply(self, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Take each change whose expected state is the snapshot's, all in one commit based on the
        head read; answer each with whether it was taken and the state there now."""
        self._snapshot()
        results, new = [], {}
        for ch in changes:
            now = self._states.get(ch["id"])
            if (ch["expected"] or DELETED) != (now or DELETED):
                results.append({"change": ch["change"], "applied": False, "state": now or DELETED})
                continue
            conv = None if ch["conversation"] is None else msgspec.convert(ch["conversation"], Conversation)
            if conv is not None:
                conv.id = ch["id"]
            if conv is not None or now is not None:
                new[ch["id"]] = conv
            results.append({"change": ch["change"], "applied": True, "state": DELETED if conv is None else conversation_state(conv)})
        if new:
            self._commit(new)
        return results

    def _commit(self, new: dict[str, Conversation | None]) -> None:
        hub = _hub()
        if self._foreign:  # rewriting the shards would drop them
            raise RemoteError(f"{self.url}: its files have columns chatloom does not keep ({', '.join(sorted(self._foreign)[:5])}); "
                              "a push would drop them, so nothing was pushed (push to a dataset repo of chatloom's own)")  # fmt: skip
        if self.push_only:
            self._check_ours()
        if self._head is None:
            self._create()
        work = Path(tempfile.mkdtemp(prefix="chatloom-hub-push-"))
        try:
            files, where, card = self._write(new, work)
            ops: list[Any] = [hub.CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files]
            ops.append(hub.CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode()))
            ops += [hub.CommitOperationDelete(path_in_repo=name) for name, _ in self._shards if name not in dict(files)]
            added = sum(1 for i, c in new.items() if c is not None and i not in self._states)
            deleted = sum(1 for c in new.values() if c is None)
            message = f"chatloom: {added:,} added, {len(new) - added - deleted:,} changed, {deleted:,} deleted"
            with self._errors():
                info = self.api.create_commit(self.repo_id, ops, commit_message=message, repo_type="dataset", revision=self.revision,
                                              commit_description=f"{MARK}{self.dataset_uid}" if self.dataset_uid else None,
                                              parent_commit=self._head)  # fmt: skip
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        self.sent += sum(path.stat().st_size for _, path in files) + len(card)
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
        self._work, self._head, self._shards, self._where, self._sorted = work, info.oid, files, where, True
        self._groups, self._group = {}, (None, [])
        for conv_id, conv in new.items():
            if conv is None:
                self._states.pop(conv_id, None)
            else:
                self._states[conv_id] = conversation_state(conv)

    def _check_ours(self) -> None:
        """A push only: every commit after the last sync's mark is this dataset's, else pull first."""
        if self._head is None:
            return
        since = self.since
        if self._head == since:
            return
        with self._errors():
            commits = self.api.list_repo_commits(self.repo_id, repo_type="dataset", revision=self._head)
        newer = []
        for c in commits:
            if c.commit_id == since:
                break
            newer.append(c)
        else:
            newer = newer[:-1]  # never synced (or the mark is gone): the repo's first commit is the Hub's own
        ours = f"{MARK}{self.dataset_uid}"
        if self.dataset_uid is None or any(ours not in f"{c.title}\n{c.message}" for c in newer):
            raise self._stale()

    def _create(self) -> None:
        """The first push: create the repo (private), and base the commit on its first commit,
        unless another push filled it meanwhile."""
        with self._errors():
            self.api.create_repo(self.repo_id, repo_type="dataset", private=self.private, exist_ok=True)
            info = self.api.dataset_info(self.repo_id, revision=self.revision)
        if any(SHARD.fullmatch(s.rfilename) for s in info.siblings or []):
            raise self._stale()
        self._head = info.sha

    def _write(self, new: dict[str, Conversation | None], work: Path) -> tuple[list[tuple[str, Path]], dict[str, tuple[int, int]], str]:
        """The new snapshot's shards in ``work`` (and which holds each id), and its card: the rows
        there, without those changed, merged by id with the new versions."""
        total = len(self._states) + sum(1 for i, c in new.items() if c is not None and i not in self._states) \
            - sum(1 for i, c in new.items() if c is None and i in self._states)  # fmt: skip
        count = max(1, math.ceil(total / self.shard_size))
        names = [f"data/train-{k:05d}-of-{count:05d}{FORMATS[self.fmt]}" for k in range(count)]
        old: Iterator[tuple[str, dict[str, Any]]] = ((r["id"], r) for _, p in self._shards for r in _rows(p) if r["id"] not in new)
        if not self._sorted:  # another writer's layout: sorted (and each id once) in memory
            old = iter(sorted(dict(old).items()))
        fresh = sorted((i, arrow_row(c)) for i, c in new.items() if c is not None)
        rows = heapq.merge(old, fresh, key=itemgetter(0))
        files: list[tuple[str, Path]] = []
        where: dict[str, tuple[int, int]] = {}
        stats = {"conversations": 0, "messages": 0, "num_bytes": 0}
        for k, name in enumerate(names):
            path = work / name.rsplit("/", 1)[1]
            _write_shard(path, self.fmt, _noting(zip(range(self.shard_size), rows), where, k), stats)
            files.append((name, path))
        stats["download_size"] = sum(p.stat().st_size for _, p in files)
        return files, where, self._card(len(files), stats)

    def _card(self, shards: int, stats: dict[str, int]) -> str:
        """The dataset card: YAML that ``datasets`` reads (config, features, split), and the counts."""
        import yaml

        meta = {
            "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
            "dataset_info": {"features": _features(arrow_schema()),
                             "splits": [{"name": "train", "num_bytes": stats["num_bytes"], "num_examples": stats["conversations"]}],
                             "download_size": stats["download_size"], "dataset_size": stats["num_bytes"]},  # fmt: skip
            "tags": ["chatloom", "conversational"],
        }
        body = [
            f"# {self.repo_id}", "",
            f"{CARD_MARK} (`chatloom push`).", "",
            "| split | conversations | messages |", "|---|---:|---:|",
            f"| train | {stats['conversations']:,} | {stats['messages']:,} |", "",
            f"One row per conversation, in {shards:,} {self.fmt} shard{'s' if shards != 1 else ''} under `data/`, sorted by id: "
            "`messages` (role, content, name, tool_calls, tool_call_id, train, meta as JSON), `tools` and `source` and `meta` "
            "as JSON, `id`, `title`, `language`, `tags`, `created_at`, `updated_at`.", "",
            "```python", "from datasets import load_dataset", "", f'ds = load_dataset("{self.repo_id}", split="train")', "```", "",
        ]  # fmt: skip
        if self.recipe:
            body += ["## Build recipe", "", "```yaml", self.recipe.rstrip("\n"), "```", ""]
        text = "\n".join(body)
        theirs_meta, theirs_text = _split_card(self._card_before or "")
        if theirs_text.strip() and CARD_MARK not in theirs_text:  # a card someone wrote: their words stay, the data's keys are ours
            meta = {**theirs_meta, **meta, "tags": list(dict.fromkeys([*(theirs_meta.get("tags") or []), *meta["tags"]]))}
            text = theirs_text
        return f"---\n{yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)}---\n\n" + text

    def close(self) -> None:
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
        if self._own_cache:
            shutil.rmtree(self.cache, ignore_errors=True)
        else:
            self._prune()

    def _prune(self) -> None:
        """Drop this repo's older snapshots from the cache: only the head read is kept."""
        if self._head is None:
            return
        hub = _hub()
        try:
            info = hub.scan_cache_dir(self.cache)
        except (OSError, ValueError, hub.CacheNotFound):
            return
        old = [r.commit_hash for repo in info.repos if repo.repo_id == self.repo_id and repo.repo_type == "dataset"
               for r in repo.revisions if r.commit_hash != self._head]  # fmt: skip
        if old:
            plan = info.delete_revisions(*old)  # what huggingface_hub says those revisions alone hold
            for path in (*plan.snapshots, *plan.refs, *plan.blobs, *plan.repos):
                if Path(path).is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    Path(path).unlink(missing_ok=True)


def _noting(rows: Iterator[tuple[int, tuple[str, dict[str, Any]]]], where: dict[str, tuple[int, int]], k: int) -> Iterator[dict[str, Any]]:
    """The rows of shard ``k``, each id noted as there."""
    for n, (conv_id, row) in rows:
        where[conv_id] = (k, n)
        yield row


def _features(fields: Any) -> list[dict[str, Any]]:
    """Arrow fields as a card's ``features`` (what ``datasets.Features(...)._to_yaml_list()`` writes,
    without importing ``datasets``): ``dtype`` for a value, ``struct`` / ``list`` of fields."""
    import pyarrow as pa

    def kind(t: Any) -> dict[str, Any]:
        if pa.types.is_struct(t):
            return {"struct": _features([t.field(i) for i in range(t.num_fields)])}
        if pa.types.is_list(t):
            inner = kind(t.value_type)
            return {"list": inner["dtype"] if "dtype" in inner else inner.get("struct", inner)}
        return {"dtype": str(t)}

    return [{"name": f.name, **kind(f.type)} for f in fields]


def _split_card(card: str) -> tuple[dict[str, Any], str]:
    """A card's YAML front matter (a dict; empty when there is none or it does not parse) and its text."""
    import yaml

    if card.startswith("---"):
        head, sep, text = card[3:].partition("\n---")
        if sep:
            try:
                meta = yaml.safe_load(head)
            except yaml.YAMLError:
                meta = None
            if isinstance(meta, dict):
                return meta, text.lstrip("-").lstrip("\n")
    return {}, card


def _network_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client errors ``huggingface_hub`` lets through: httpx2's (its 2.x), httpx's, or
    requests' (older ones), whichever are installed; an invalid URL is one of them."""
    import importlib

    found: list[type[BaseException]] = []
    for module, names in (("httpx2", ("HTTPError", "InvalidURL")), ("httpx", ("HTTPError", "InvalidURL")), ("requests", ("RequestException",))):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        found += [getattr(mod, n) for n in names if isinstance(getattr(mod, n, None), type)]
    return tuple(found)


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of one shard, a batch at a time."""
    if path.name.endswith(".jsonl"):
        with open(path, "rb") as fp:
            for line in fp:
                if line.strip():
                    yield orjson.loads(line)
        return
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=ROW_GROUP):
        yield from batch.to_pylist()


def _groups(path: Path) -> list[tuple[int, int]]:
    """(first row, where) of each group of a shard's rows: a Parquet row group's index, or the
    byte offset of every ``ROW_GROUP``-th JSONL row."""
    out: list[tuple[int, int]] = []
    if path.name.endswith(".jsonl"):
        n = at = 0
        with open(path, "rb") as fp:
            for line in fp:
                if line.strip():
                    if n % ROW_GROUP == 0:
                        out.append((n, at))
                    n += 1
                at += len(line)
        return out
    import pyarrow.parquet as pq

    meta, n = pq.ParquetFile(path).metadata, 0
    for g in range(meta.num_row_groups):
        out.append((n, g))
        n += meta.row_group(g).num_rows
    return out


def _group(path: Path, where: int) -> list[dict[str, Any]]:
    """The rows of one group (see ``_groups``)."""
    if path.name.endswith(".jsonl"):
        rows: list[dict[str, Any]] = []
        with open(path, "rb") as fp:
            fp.seek(where)
            for line in fp:
                if line.strip():
                    rows.append(orjson.loads(line))
                    if len(rows) == ROW_GROUP:
                        break
        return rows
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).read_row_group(where).to_pylist()


def _write_shard(path: Path, fmt: str, rows: Iterator[dict[str, Any]], stats: dict[str, int]) -> None:
    """Write one shard (an empty one too: ``datasets`` then reads an empty split)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema()
    with open(path, "wb") as fp:
        writer = pq.ParquetWriter(fp, schema) if fmt == "parquet" else None
        batch: list[dict[str, Any]] = []
        for row in itertools.chain(rows, [None]):
            if row is not None:
                batch.append(row)
                stats["conversations"] += 1
                stats["messages"] += len(row.get("messages") or [])
            if batch and (row is None or len(batch) == ROW_GROUP):
                table = pa.RecordBatch.from_pylist(batch, schema=schema)
                stats["num_bytes"] += table.nbytes
                if writer is not None:
                    writer.write_batch(table)
                else:
                    fp.writelines(orjson.dumps(r) + b"\n" for r in table.to_pylist())
                batch = []
        if writer is not None:
            writer.close()
