"""Read a file in a worker process while this one writes the dataset.

Parsing a chat export and writing it into SQLite both cost CPU, and Python threads share one
core for Python work. On a machine with two cores or more, a large file is therefore read in a
forked child process: it parses, sessionizes and digests batches of conversations and sends each
one down a pipe as msgpack, while the parent decodes it and writes. The pipe holds at most one
batch in flight beyond the one being written, so memory stays flat.

What the child's ``Reader`` learns (bad records and their examples, speakers, drops, bytes read)
travels with the batches and at the end, and is merged into the parent's reader, so a caller sees
the same counts as from an in-process read. An error in the child (a ``SourceError``, ``strict``
meeting a bad record, a bug) is raised in the parent at the same place in the sequence: after the
batches before it. The parent stopping early (an error while writing, Ctrl+C) ends the child.

    for batch in read_batches(source, path, reader, batch_size=5000):
        store_batch(batch)          # [(Conversation, digest), ...]
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
import traceback
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from ..model import Conversation
from ..parallel import prefetch
from ..store import Batch, make_batches

if TYPE_CHECKING:
    from ..sources import Reader, Source

#: files smaller than this are read in this process: a fork costs more than it saves
MIN_BYTES = 4 << 20
#: every batch is sent in pieces of about this many messages (still one transaction): writing
#: starts as soon as one comes, and the writer never waits long for the next one nor has a big
#: last batch left to write after the parse ends. On the 20 MB WhatsApp bench file, 4,096 gave
#: 1.21 s end to end, against 1.25 s for 2,048, 1.39 s for 8,192, and 1.60 s for the first
#: batch alone in pieces that doubled (the DCE JSON of 176 MB: 1.43, 1.49-1.60, 1.61, 1.96 s).
PIECE_MESSAGES = 4096


class _Batch(msgspec.Struct, array_like=True, tag="b"):
    convs: list[Conversation]
    digests: list[str]
    consumed: int  # bytes of the file read so far
    piece: bool  # its transaction goes on with the next batch (``store.Batch.piece``)


class _End(msgspec.Struct, array_like=True, tag="e"):
    bad_count: int
    examples: list[str]
    speakers: dict[str, int]
    dropped: dict[str, int]
    first_bad: tuple[str | int | None, str] | None


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Batch | _End).decode
_FAILED = b"!"  # a frame that starts with it holds a pickled (exception, counts up to it) pair, not msgpack


def usable(path: Path) -> bool:
    """Whether reading ``path`` in a worker process pays: a large file, a spare core, and fork
    (Linux; spawning a fresh interpreter would cost more than the overlap gains)."""
    if sys.platform != "linux" or os.environ.get("CHATLOOM_PARSE_PROCESS") == "0":
        return False
    if os.environ.get("CHATLOOM_PARSE_PROCESS") == "1":
        return True
    return len(os.sched_getaffinity(0)) > 1 and path.stat().st_size >= MIN_BYTES


def read_batches(source: Source, path: Path, reader: Reader, *, batch_size: int) -> Iterator[Batch]:
    """Batches of (conversation, digest), ids set, as ``store.make_batches`` makes them,
    parsed in a forked child process. ``reader`` ends with the child's counts."""
    parent, child = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.get_context("fork").Process(
        target=_child, args=(child, parent, source, path, reader, batch_size), name="chatloom-parse", daemon=True
    )
    process.start()
    child.close()
    frames = prefetch(_frames(parent), depth=1)  # the pipe is drained while this process writes
    try:
        for frame in frames:
            if frame.startswith(_FAILED):  # the error, and the counts up to it
                exc, end = pickle.loads(frame[1:])
                _take_counts(reader, _decode(end))
                raise exc
            item = _decode(frame)
            if isinstance(item, _End):
                _take_counts(reader, item)
                return
            reader.advance(item.consumed)
            yield Batch(zip(item.convs, item.digests, strict=True), piece=item.piece)
        raise RuntimeError(f"{reader.file}: the process reading it ended without a word (exit code {process.exitcode})")
    finally:
        if process.is_alive():
            process.terminate()  # a no-op once it has finished; else its end unblocks the drain below
        process.join()
        frames.close()
        parent.close()


def _take_counts(reader: Reader, end: Any) -> None:
    """The child's reader began as a copy of this one: its counts are the totals."""
    reader.bad_count, reader.examples = end.bad_count, end.examples
    reader.speakers, reader.dropped = Counter(end.speakers), Counter(end.dropped)
    reader.first_bad = tuple(end.first_bad) if end.first_bad is not None else None  # type: ignore[assignment]


def _end(reader: Reader) -> bytes:
    return _encode(_End(reader.bad_count, reader.examples, dict(reader.speakers), dict(reader.dropped), reader.first_bad))


def _frames(conn: Any) -> Iterator[bytes]:
    while True:
        try:
            yield conn.recv_bytes()
        except (EOFError, OSError):
            return


def _child(conn: Any, other_end: Any, source: Source, path: Path, reader: Reader, batch_size: int) -> None:
    # The pipe's reading end came along with the fork: closed here, so that once the parent is
    # gone (even killed with -9) nothing reads the pipe and the next send ends this process.
    other_end.close()

    consumed = [0]

    def advance(n: int) -> None:
        consumed[0] = n

    reader.progress = advance
    try:
        try:
            for batch in make_batches(source.read(path, reader), batch_size, piece_messages=PIECE_MESSAGES):
                conn.send_bytes(_encode(_Batch([c for c, _ in batch], [d for _, d in batch], consumed[0], batch.piece)))
            conn.send_bytes(_end(reader))
        except (BrokenPipeError, KeyboardInterrupt):  # the parent stopped reading, or Ctrl+C: it reports
            pass
        except BaseException as exc:
            try:
                frame = pickle.dumps((exc, _end(reader)))
                pickle.loads(frame)  # an exception that cannot make the trip goes as its text
            except Exception:
                frame = pickle.dumps((RuntimeError("".join(traceback.format_exception(exc))), _end(reader)))
            conn.send_bytes(_FAILED + frame)
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        conn.close()
        # Out at once: no flushing of the stdio buffers the fork copied, whose locks a thread of
        # the parent (a progress bar's) may have held at that moment.
        os._exit(0)
