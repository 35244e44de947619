"""``chatloom tokenize``: conversations → nanoGPT-style token files with loss masks.

    report = tokenize(convs, "out/", tokenizer="gpt2-chatml", template="chatml", val_ids=ids)

Per split (``train``, and ``val`` when some conversations are held out), in ``out/``:

- ``NAME.bin``: the token ids, uint16 when the vocabulary fits, else uint32; little-endian, no
  header, so ``np.memmap(path, dtype=meta["dtype"])`` reads it (as nanoGPT does);
- ``NAME.idx``: uint64 offsets (in tokens) where each conversation starts;
- ``NAME.loss``: one byte per token, 1 where the loss counts (assistant turns and their
  end-of-turn token, or a message's ``train`` flag);
- ``meta.json``: tokenizer, template, dtype, vocab size, special tokens, counts, and the report
  of every check (what was dropped, fixed or truncated, with example ids).

The same input and options give byte-identical files, with one worker or many. Every file is
written beside its target and renamed into place when complete; a run that stops (Ctrl+C, an
error) removes its temporary files, and one that was killed leaves them for the next run in the
same folder to remove (``fileio.remove_stale``).
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import orjson

from ..errors import UsageError
from ..fileio import atomic_write, remove_stale
from ..jsonl import RawLines, parse_numbered, read_span
from ..model import Conversation, ensure_id
from ..parallel import batched, ordered_map, process_pool
from . import bytebpe, stored
from .encode import Encoder, Report
from .tokenizer import get_tokenizer

CHUNK = 512  # conversations per batch (and per task for a worker)
# Python's cyclic garbage collector runs after this many new objects, not 700: tokenizing makes
# and frees lists by the hundred thousand, and at 700 the collections took a tenth of a worker's
# time (the garbage they find is bounded all the same: memory stays flat)
GC_YOUNG = 100_000


class NothingKept(UsageError):
    """Every conversation was dropped (or there was none): token files would hold nothing, so
    none is written. ``seen`` conversations were read; ``report`` says why each was dropped."""

    def __init__(self, seen: int, report: dict[str, Any]):
        self.seen, self.report = seen, report
        super().__init__(f"nothing to tokenize: {seen:,} conversations read, none kept")


@dataclass(frozen=True)
class Options:
    tokenizer: str
    template: str | None
    fix: bool = False
    max_tokens: int | None = None
    truncate: bool = False

    def encoder(self) -> Encoder:
        return Encoder(get_tokenizer(self.tokenizer), self.template, fix=self.fix, max_tokens=self.max_tokens, truncate=self.truncate,
                       keep_layouts=True)


@dataclass
class Chunk:
    """One batch's result, compact enough to send between processes."""

    ids: list[str]  # conversation ids, in input order
    kept: list[bool]
    lengths: np.ndarray  # tokens of each kept conversation
    tokens: np.ndarray
    loss: bytes
    report: Report
    layouts: tuple[str, Any] | None = None  # those built for it, to be stored (``Layouts.built``)


def encode_chunk(encoder: Encoder, convs: list[Conversation]) -> Chunk:
    before = encoder.report
    encoder.report = Report()
    try:
        enc = encoder.encode_arrays(convs)
        report = encoder.report
    finally:
        encoder.report = before
    return Chunk([c.id or "" for c in convs], enc.kept, enc.lengths, enc.tokens, enc.loss.tobytes(), report, encoder.layouts.built())


# -- worker processes ------------------------------------------------------------------------

_worker: Encoder | None = None
_decoder = msgspec.json.Decoder(list[Conversation])


def _init_worker(options: Options, verdicts: dict[str, Any], forked: Encoder | None) -> None:
    """A worker's encoder: the main process's own where the worker is its fork (nothing to load
    or check again), else one built from ``options``, adopting the main process's verdict on the
    folder."""
    global _worker
    os.environ["RAYON_NUM_THREADS"] = "1"  # one process per core: tokenizers' Rust pool (started on first use) gets no more threads
    if forked is None:
        bytebpe.adopt(verdicts)  # the main process checked the folder: not again in each worker
        encoder = options.encoder()
    else:
        encoder = forked
    if hasattr(encoder.tokenizer, "one_thread"):
        encoder.tokenizer.one_thread()  # one process per core: no threads inside
    _worker = encoder
    gc.freeze()  # what the worker starts with (the main process's modules and encoder, in a fork) is never collected
    _collect_less()


def start_method() -> str:
    """``fork`` where the main process runs no thread of Python's (a fork copies only the thread
    that forks: a lock another one held would stay held in the worker): a worker then starts with
    the main process's modules and encoder, 0.3-0.5 s sooner than a fresh interpreter that imports
    and loads them. Else ``spawn``. tokenizers' Rust threads, where the main process has used
    them, are dropped in a fork and its workers encode on one thread anyway."""
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return "fork"
    return "spawn"


def _work(job: tuple[str | None, Any]) -> Chunk:
    """One batch: conversations serialized by the main process, or a span of a JSONL file's lines
    (``(path, (first line number, start, end))``), read and parsed here."""
    assert _worker is not None
    path, payload = job
    if path is None:
        convs = _decoder.decode(payload)
    else:
        convs = [parse_numbered(path, lineno, line) for lineno, line in read_span(path, payload)]
        for conv in convs:
            ensure_id(conv)
    return encode_chunk(_worker, convs)


def _chunks(convs: Iterable[Conversation]) -> Iterator[list[Conversation]]:
    return batched((c for c in convs if ensure_id(c)), CHUNK)


def _collect_less() -> tuple[int, ...]:
    """The collector's threshold raised to ``GC_YOUNG``; the one before."""
    before = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, *before[1:])
    return before


_collections_lock = threading.Lock()
_encodings = 0  # under way in this process
_threshold_before: tuple[int, ...] = ()  # the threshold before the first of them


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """``GC_YOUNG`` while this process encodes (threads that tokenize at once, as the studio's
    tasks may, share it: the first raises it, the last puts back what was there)."""
    global _encodings, _threshold_before
    with _collections_lock:
        if _encodings == 0:
            _threshold_before = _collect_less()
        _encodings += 1
    try:
        yield
    finally:
        with _collections_lock:
            _encodings -= 1
            if _encodings == 0:
                gc.set_threshold(*_threshold_before)


@contextlib.contextmanager
def _encoded(options: Options, encoder: Encoder, convs: Iterable[Conversation] | RawLines, workers: int) -> Iterator[Iterator[Chunk]]:
    """Chunks in input order, encoded here by ``encoder`` (``workers`` 1) or by a pool of processes.
    A JSONL file goes to the workers as spans of its lines, which they read and parse: the main
    process neither reads the lines nor passes them on (0.15 s of its time on 50 MB, which its
    workers' cores would share)."""
    if workers <= 1:
        with _fewer_collections():
            yield (encode_chunk(encoder, batch) for batch in _chunks(convs))
        return
    if isinstance(convs, RawLines):
        jobs: Iterator[tuple[str | None, Any]] = ((convs.path, span) for span in convs.spans(CHUNK))
    else:
        encode = msgspec.json.Encoder()
        jobs = ((None, encode.encode(batch)) for batch in _chunks(convs))
    method = start_method()
    initargs = (options, bytebpe.verdicts(), encoder if method == "fork" else None)  # a fork's arguments are not pickled
    with process_pool(workers, context=method, initializer=_init_worker, initargs=initargs) as pool:
        yield ordered_map(_work, jobs, pool)


class _SplitFiles:
    """The three files of one split, written as the chunks come."""

    def __init__(self, stack: contextlib.ExitStack, folder: Path, name: str):
        self.name = name
        self.bin = stack.enter_context(atomic_write(folder / f"{name}.bin"))
        self.idx = stack.enter_context(atomic_write(folder / f"{name}.idx"))
        self.loss = stack.enter_context(atomic_write(folder / f"{name}.loss"))
        self.conversations = self.tokens = self.trained = 0

    def add(self, lengths: np.ndarray, tokens: np.ndarray, loss: bytes) -> None:
        starts = np.empty(len(lengths), dtype="<u8")
        if len(lengths):
            starts[0] = self.tokens
            np.cumsum(lengths[:-1], out=starts[1:])
            starts[1:] += self.tokens
        self.idx.write(starts.tobytes())
        self.bin.write(tokens.tobytes())
        self.loss.write(loss)
        self.conversations += len(lengths)
        self.tokens += int(lengths.sum())
        self.trained += loss.count(1)

    def counts(self) -> dict[str, int]:
        return {"conversations": self.conversations, "tokens": self.tokens, "trained_tokens": self.trained}


def tokenize(
    convs: Iterable[Conversation] | RawLines,
    out: str | os.PathLike[str],
    *,
    tokenizer: str = "gpt2-chatml",
    template: str | None = None,
    val_ids: set[str] | None = None,
    fix: bool = False,
    max_tokens: int | None = None,
    truncate: bool = False,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``out/{train,val}.{bin,idx,loss}`` and ``out/meta.json``; return the meta.

    :param convs: conversations, or a JSONL file's ``RawLines`` (then the workers parse the lines,
        and a bad line is a SourceError naming the file and line).
    :param val_ids: conversations for the ``val`` split (see ``chatloom.formats.split``); None: train only.
    :param workers: processes; the files are identical whatever the number.
    """
    options = Options(tokenizer, template, fix, max_tokens, truncate)
    encoder = options.encoder()  # fails early on a bad tokenizer or template, before any file
    tok = encoder.tokenizer
    dtype = encoder.dtype
    folder = Path(out)
    remove_stale(folder, [f"{n}.{ext}" for n in ("train", "val") for ext in ("bin", "idx", "loss")] + ["meta.json"])
    report = Report()
    done = 0
    built: dict[str, list[Any]] = {}  # layouts built in this run, to be stored, by key
    names = ["train", "val"] if val_ids is not None else ["train"]
    with contextlib.ExitStack() as stack:
        files = {name: _SplitFiles(stack, folder, name) for name in names}
        with _encoded(options, encoder, convs, workers) as chunks:
            for chunk in chunks:
                report.merge(chunk.report)
                if chunk.layouts is not None:
                    built.setdefault(chunk.layouts[0], []).append(chunk.layouts[1])
                if val_ids is None:
                    files["train"].add(chunk.lengths, chunk.tokens, chunk.loss)
                else:
                    _split_chunk(chunk, val_ids, files)
                done += len(chunk.ids)
                if progress is not None:
                    progress(done)
        if not any(f.conversations for f in files.values()):  # raised in the block: no file is written
            raise NothingKept(done, report.as_dict())
        meta = {
            "tokenizer": tok.name,
            "template": encoder.template.name,
            "dtype": dtype.name,
            "vocab_size": tok.vocab_size,
            "special_tokens": dict(sorted(tok.special_tokens.items(), key=lambda kv: kv[1])),
            "bos_token_id": encoder.bos,
            "eos_token_id": encoder.eos,
            "splits": {name: f.counts() for name, f in files.items()},
            "max_tokens": max_tokens,
            "fix": fix,
            "report": report.as_dict(),
            **(extra_meta or {}),
        }
        with atomic_write(folder / "meta.json") as fp:
            fp.write(orjson.dumps(meta, option=orjson.OPT_INDENT_2) + b"\n")
    for key, packs in built.items():  # the next run on such data builds no layout
        stored.save(key, packs)
    return meta


def _split_chunk(chunk: Chunk, val_ids: set[str], files: dict[str, _SplitFiles]) -> None:
    """Send each kept conversation of a chunk to its split, in order, in two contiguous groups."""
    kept_ids = [cid for cid, kept in zip(chunk.ids, chunk.kept) if kept]
    is_val = np.fromiter((cid in val_ids for cid in kept_ids), dtype=bool, count=len(kept_ids))
    ends = np.cumsum(chunk.lengths).astype(np.int64)
    starts = ends - chunk.lengths.astype(np.int64)
    loss = np.frombuffer(chunk.loss, dtype=np.uint8)
    for name, select in (("train", ~is_val), ("val", is_val)):
        if not select.any():
            continue
        spans = [np.arange(s, e) for s, e in zip(starts[select], ends[select])]
        take = np.concatenate(spans) if spans else np.empty(0, dtype=np.int64)
        files[name].add(chunk.lengths[select], chunk.tokens[take], loss[take].tobytes())
