"""Reading token files in a training loop.

    tf = TokenFile("out/train")             # out/train.bin, .idx, .loss and out/meta.json
    x, y, loss = tf.get_batch(12, 1024)     # nanoGPT's get_batch: random windows, y shifted by one
    rows = tf.packed(1024)                  # whole conversations packed into fixed-length rows
    row = rows[0]                           # input_ids, labels (-100 where no loss), position_ids, …
    torch.utils.data.DataLoader(rows, batch_size=8)   # a map-style dataset: works as is
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson

IGNORE = -100  # the label that PyTorch's cross entropy and HF models skip


class TokenFile:
    """One split written by ``chatloom tokenize``, memory-mapped."""

    def __init__(self, path: str | os.PathLike[str]):
        base = Path(path)
        if base.suffix in (".bin", ".idx", ".loss"):
            base = base.with_suffix("")
        self.base = base
        meta_path = base.parent / "meta.json"
        self.meta: dict[str, Any] = orjson.loads(meta_path.read_bytes()) if meta_path.exists() else {}
        dtype = np.dtype(self.meta.get("dtype", "uint16")).newbyteorder("<")
        self.tokens = np.memmap(base.with_suffix(".bin"), dtype=dtype, mode="r")
        self.loss = np.memmap(base.with_suffix(".loss"), dtype=np.uint8, mode="r")
        self.starts = np.fromfile(base.with_suffix(".idx"), dtype="<u8").astype(np.int64)
        if len(self.tokens) != len(self.loss):
            raise ValueError(f"{base}: .bin has {len(self.tokens)} tokens but .loss has {len(self.loss)}")
        self.ends = np.append(self.starts[1:], len(self.tokens)).astype(np.int64)
        self.eos = self.meta.get("eos_token_id")

    def __len__(self) -> int:
        """The number of conversations."""
        return len(self.starts)

    def conversation(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and loss mask of conversation ``i``."""
        s, e = self.starts[i], self.ends[i]
        return np.asarray(self.tokens[s:e]), np.asarray(self.loss[s:e])

    def get_batch(self, batch_size: int, block_size: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, ...]:
        """``x``, ``y`` and ``loss`` (int64, int64, uint8; shape batch × block): random windows as
        nanoGPT's ``get_batch``; ``loss[b, t]`` says whether predicting ``y[b, t]`` counts."""
        rng = rng or np.random.default_rng()
        if len(self.tokens) <= block_size:
            raise ValueError(f"{self.base}: {len(self.tokens)} tokens, not more than block_size {block_size}")
        ix = rng.integers(0, len(self.tokens) - block_size, size=batch_size)
        x = np.stack([self.tokens[i : i + block_size] for i in ix]).astype(np.int64)
        y = np.stack([self.tokens[i + 1 : i + 1 + block_size] for i in ix]).astype(np.int64)
        loss = np.stack([self.loss[i + 1 : i + 1 + block_size] for i in ix])
        return x, y, loss

    def packed(self, block_size: int, pad_id: int | None = None) -> PackedConversations:
        return PackedConversations(self, block_size, pad_id)


class PackedConversations:
    """Whole conversations packed, in order, into rows of ``block_size`` tokens (a map-style dataset).

    Each row holds one or more whole conversations and padding. ``position_ids`` restart at 0 for
    each conversation and ``seq_ids`` number them within the row (-1 for padding), so attention
    never crosses a conversation: pass ``position_ids`` to a flash-attention model, or build the
    block-diagonal causal mask with ``attention_mask(row)``. Conversations longer than a row are
    left out and counted in ``skipped`` (tokenize with ``--max-tokens`` to avoid them).
    """

    def __init__(self, tf: TokenFile, block_size: int, pad_id: int | None = None):
        self.tf, self.block_size = tf, block_size
        self.pad_id = pad_id if pad_id is not None else (tf.eos if tf.eos is not None else 0)
        lengths = tf.ends - tf.starts
        rows: list[list[int]] = []
        used = block_size + 1
        self.skipped = 0
        for i, n in enumerate(lengths.tolist()):
            if n > block_size:
                self.skipped += 1
                continue
            if used + n > block_size:
                rows.append([])
                used = 0
            rows[-1].append(i)
            used += n
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, r: int) -> dict[str, np.ndarray]:
        L = self.block_size
        input_ids = np.full(L, self.pad_id, dtype=np.int64)
        labels = np.full(L, IGNORE, dtype=np.int64)
        position_ids = np.zeros(L, dtype=np.int64)
        seq_ids = np.full(L, -1, dtype=np.int64)
        at = 0
        for j, i in enumerate(self.rows[r]):
            ids, loss = self.tf.conversation(i)
            ids = ids.astype(np.int64)
            n = len(ids)
            input_ids[at : at + n] = ids
            labels[at : at + n] = np.where(loss == 1, ids, IGNORE)
            position_ids[at : at + n] = np.arange(n)
            seq_ids[at : at + n] = j
            at += n
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "seq_ids": seq_ids}


def attention_mask(row: dict[str, np.ndarray]) -> np.ndarray:
    """The causal, block-diagonal mask of a packed row (True where a token may attend)."""
    seq = row["seq_ids"]
    same = (seq[:, None] == seq[None, :]) & (seq[:, None] >= 0)
    return same & np.tri(len(seq), dtype=bool)
