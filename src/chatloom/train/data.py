"""What a run trains on: token files, checked against the model, or chats tokenized on the fly.

    data = prepare("tokens", model_folder, config)     # `chatloom tokenize` output: checked, used as is
    data = prepare("chats.db", model_folder, config)   # a dataset, a JSONL export, a build's output:
                                                      # tokenized with the model's own tokenizer and
                                                      # template into a cache keyed by all three
    data.train, data.val                              # TokenFile (val: None without a split)

Batches are **packed without padding**: whole conversations are packed (best fit, decreasing) into
rows of at most ``max_length`` tokens, and the rows of one step are laid end to end in a single
sequence whose ``position_ids`` restart at each conversation. transformers derives the
block-diagonal causal mask from them (with no cache), so no conversation attends to another; the
first token of each conversation is never a target. Every token computed is a real token.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..fileio import cache_dir, scratch_folder
from ..tokens import TokenFile
from ..tokens.reader import IGNORE

PROBE = [{"role": "system", "content": "S."}, {"role": "user", "content": "Hi there."}, {"role": "assistant", "content": "Hello!"},
         {"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Fine, thanks."}]


@dataclass
class Data:
    train: TokenFile
    val: TokenFile | None
    folder: Path
    meta: dict[str, Any]
    tokenized_here: bool = False  # tokenized on the fly (into the cache)


def prepare(source: str, model_folder: Path, *, max_length: int, val: float, seed: int, progress: Any = None) -> Data:
    path = Path(source)
    if (path / "meta.json").exists() and (path / "train.bin").exists():
        data = Data(TokenFile(path / "train"), TokenFile(path / "val") if (path / "val.bin").exists() else None, path,
                    _read_meta(path))
        check_match(data.meta, model_folder, str(path / "meta.json"))
        return data
    if not path.exists():
        raise UsageError(f"{source}: no such file or folder (data is `chatloom tokenize` output, a dataset, or a JSONL export)")
    return _tokenized(path, model_folder, max_length=max_length, val=val, seed=seed, progress=progress)


def _read_meta(folder: Path) -> dict[str, Any]:
    import orjson

    try:
        return orjson.loads((folder / "meta.json").read_bytes())  # type: ignore[no-any-return]
    except orjson.JSONDecodeError as err:
        raise UsageError(f"{folder / 'meta.json'}: not valid JSON ({err})") from None


def check_match(meta: dict[str, Any], model_folder: Path, where: str) -> None:
    """Token files made with another tokenizer or template than the model's are an error."""
    from ..tokens.chat_templates import folder_template, get_template
    from ..tokens.tokenizer import get_tokenizer

    ours = get_tokenizer(str(model_folder))
    theirs_name = str(meta.get("tokenizer"))
    redo = f"tokenize again with --tokenizer {model_folder}, or give the dataset as data (tokenized on the fly)"
    specials = meta.get("special_tokens", {})
    if meta.get("vocab_size") != ours.vocab_size or any(ours.special_tokens.get(t) != i for t, i in specials.items()):
        raise UsageError(f"{where}: the tokens were made by tokenizer {theirs_name} ({meta.get('vocab_size'):,} tokens), "
                         f"not by the model's ({ours.vocab_size:,} tokens): {redo}")
    try:
        theirs = get_tokenizer(theirs_name)
    except Exception:  # noqa: BLE001  the folder it was made with is gone: the vocabulary check above stands
        theirs = None
    probe_text = "Hello there, how are you? Ça va 😀 1234"
    if theirs is not None and theirs.encode_batch([probe_text]) != ours.encode_batch([probe_text]):
        raise UsageError(f"{where}: the tokens were made by tokenizer {theirs_name}, which splits text unlike the model's: {redo}")
    if folder_template(model_folder) is None:
        return  # a base model without a template: the data's template is the one it learns
    try:
        data_template = get_template(str(meta.get("template")), ours.template_tokens)
    except UsageError:
        return  # a template file that is gone: nothing to compare
    model_template = get_template(str(model_folder), ours.template_tokens)
    for gen in (False, True):
        if data_template.render(PROBE, None, add_generation_prompt=gen) != model_template.render(PROBE, None, add_generation_prompt=gen):
            raise UsageError(f"{where}: the tokens were made with chat template {meta.get('template')}, which renders chats "
                             f"unlike the model's own template (the model would be tuned to one format and prompted in another): {redo}")


# -- tokenized on the fly ------------------------------------------------------------------------


def digest_files(h: Any, paths: list[Path]) -> None:
    """Feed each file's name and bytes to the hash ``h``, a megabyte at a time."""
    for p in paths:
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as fp:
            while chunk := fp.read(1 << 20):
                h.update(chunk)


def _tokenized(path: Path, model_folder: Path, *, max_length: int, val: float, seed: int, progress: Any) -> Data:
    from .. import jsonl
    from ..formats.split import validation_ids
    from ..model import ensure_id
    from ..tokens import tokenize
    from ..tokens.chat_templates import folder_template

    h = hashlib.sha256(b"chatloom-train-tokens-v1\0")
    tok_files = sorted(p for p in model_folder.iterdir() if p.name.startswith(("tokenizer", "vocab", "merges", "special_tokens")))
    digest_files(h, tok_files)
    h.update((folder_template(model_folder) or "chatml").encode() + b"\0")
    h.update(f"{max_length}:{val}:{seed}".encode())
    store = None
    if path.is_dir():
        inner = path / "data" if (path / "data" / "train.jsonl").exists() else path
        files = [inner / "train.jsonl"] + ([inner / "val.jsonl"] if (inner / "val.jsonl").exists() else [])
        if not files[0].exists():
            raise UsageError(f"{path}: not token files (no meta.json), nor an export or build output (no train.jsonl)")
        digest_files(h, files)
    elif path.suffix in (".jsonl", ".json"):
        files = [path]
        digest_files(h, files)
    else:
        from ..store import Store

        files = []
        store = Store(str(path))
        for conv in store.iter_conversations():
            h.update(jsonl.dumps(conv))
    folder = cache_dir("train-tokens") / h.hexdigest()[:24]
    template = str(model_folder) if folder_template(model_folder) is not None else None
    options = dict(tokenizer=str(model_folder), template=template, fix=True, max_tokens=max_length, truncate=True)
    if not folder.exists():  # the cache entry is made whole in a scratch folder, then moved into place
        with scratch_folder(folder.parent, "train-tokens") as scratch:
            made = scratch / "tokens"
            if store is not None:
                val_ids = validation_ids(store.ids(), val, seed) if val else None
                tokenize(store.iter_conversations(), made, val_ids=val_ids, progress=progress, **options)
            elif len(files) == 2:  # an export's own split
                tokenize(jsonl.RawLines(files[0]), made, progress=progress, **options)
                _tokenize_val(files[1], made, options)
            else:
                ids = [ensure_id(c) for c in jsonl.read_path(files[0])]
                val_ids = validation_ids(ids, val, seed) if val else None
                tokenize(jsonl.RawLines(files[0]), made, val_ids=val_ids, progress=progress, **options)
            with contextlib.suppress(OSError):  # another run made the same entry first: theirs stands
                made.rename(folder)
    meta = _read_meta(folder)
    data = Data(TokenFile(folder / "train"), TokenFile(folder / "val") if (folder / "val.bin").exists() else None, folder, meta,
                tokenized_here=True)
    return data


def _tokenize_val(path: Path, folder: Path, options: dict[str, Any]) -> None:
    """An export's val.jsonl into ``folder/val.*`` beside the train files (via a scratch folder)."""
    import shutil

    from .. import jsonl
    from ..tokens import tokenize

    scratch = folder / ".val"
    meta = tokenize(jsonl.RawLines(path), scratch, **options)
    for ext in ("bin", "idx", "loss"):
        os.replace(scratch / f"train.{ext}", folder / f"val.{ext}")
    shutil.rmtree(scratch, ignore_errors=True)
    import orjson

    main = _read_meta(folder)
    main["splits"]["val"] = meta["splits"]["train"]
    (folder / "meta.json").write_bytes(orjson.dumps(main, option=orjson.OPT_INDENT_2) + b"\n")


# -- packing ---------------------------------------------------------------------------------------


class PackedRows:
    """Conversations of a TokenFile (the first ``limit``) packed (best fit decreasing) into rows of
    at most ``max_length`` tokens; a map-style dataset whose items are lists of conversation indices.
    The packing is seeded, so a resumed run sees the same rows in the same order."""

    def __init__(self, tf: TokenFile, max_length: int, seed: int = 0, limit: int | None = None):
        self.tf, self.max_length = tf, max_length
        lengths = (tf.ends - tf.starts).astype(np.int64)[:limit]
        fits = np.flatnonzero(lengths <= max_length)
        self.skipped = int(len(lengths) - len(fits))
        self.tokens = int(lengths[fits].sum())
        order = fits[np.argsort(-lengths[fits], kind="stable")]
        rows: list[list[int]] = []
        room: list[int] = []  # free tokens of each row

        free_sorted: list[tuple[int, int]] = []  # (free, row) for best fit: the fullest row it fits in
        for i in order.tolist():
            n = int(lengths[i])
            at = bisect.bisect_left(free_sorted, (n, -1))
            if at < len(free_sorted):
                free, r = free_sorted.pop(at)
                rows[r].append(i)
                room[r] = free - n
                bisect.insort(free_sorted, (room[r], r))
            else:
                rows.append([i])
                room.append(max_length - n)
                bisect.insort(free_sorted, (room[-1], len(rows) - 1))
        random.Random(seed).shuffle(rows)
        self.rows = rows
        self.capacity = len(rows) * max_length

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, r: int) -> list[int]:
        return self.rows[r]

    @property
    def fill(self) -> float:
        """The share of the rows' room the conversations fill (how well they pack)."""
        return self.tokens / self.capacity if self.capacity else 0.0


class Collator:
    """Rows of one step → one sequence with no padding: ``input_ids``, ``labels`` (IGNORE where
    the loss does not count, and on each conversation's first token) and ``position_ids``
    restarting at each conversation (shape 1 × the step's tokens). Items are ``(split, row)``;
    ``tokens`` counts the training tokens collated so far (for tokens/s)."""

    def __init__(self, files: dict[str, TokenFile | None]):
        self.files = files
        self.tokens = 0

    def __call__(self, items: list[tuple[str, list[int]]]) -> dict[str, Any]:
        import torch

        ids_parts, label_parts, pos_parts = [], [], []
        for split, row in items:
            tf = self.files[split]
            assert tf is not None
            for i in row:
                ids, loss = tf.conversation(i)
                ids = ids.astype(np.int64)
                labels = np.where(loss == 1, ids, IGNORE)
                labels[0] = IGNORE
                ids_parts.append(ids)
                label_parts.append(labels)
                pos_parts.append(np.arange(len(ids), dtype=np.int64))
        input_ids = np.concatenate(ids_parts)
        if items and items[0][0] == "train":
            self.tokens += len(input_ids)
        return {
            "input_ids": torch.from_numpy(input_ids)[None],
            "labels": torch.from_numpy(np.concatenate(label_parts))[None],
            "position_ids": torch.from_numpy(np.concatenate(pos_parts))[None],
        }
