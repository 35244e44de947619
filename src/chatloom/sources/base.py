"""The importer interface: a Source reads a path and yields Conversations.

A source is one small class (DESIGN §3). It never writes: the store does. Faults inside one
record are reported to the ``Reader`` (``reader.bad(where, message)``), which counts them and keeps
the first examples, or, with ``strict``, turns the first into a ``SourceError`` that stops the
file. A fault of the whole file (unreadable, wrong format) raises ``SourceError`` at once.

    class MySource(Source):
        name = "mine"
        summary = "My app's export"
        def detect(self, path, head): return head.startswith(b"MYAPP")
        def read(self, path, reader): ...yield Conversation(...)
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import SourceError, SourceParamError
from ..model import Conversation
from .options import ImportOptions

HEAD_BYTES = 65536
BOM = b"\xef\xbb\xbf"  # UTF-8's byte order mark, which Windows tools write and JSON parsers refuse
NOT_UTF8 = "not UTF-8 text (export it as UTF-8, or convert it: iconv -f WINDOWS-1252 -t UTF-8)"


def under(prefix: str, message: str) -> str:
    """A record's fault (``$.x: what``, a JSON path inside the record, or ``what``) as said from
    the file's top, where the record is at ``prefix`` (``$[3]``): ``$[3].x: what``."""
    return prefix + message[1:] if message.startswith("$") else f"{prefix}: {message}"


def skip_bom(f: Any) -> int:
    """Move a binary file to the start of its content, past a UTF-8 BOM; returns that place."""
    f.seek(0)
    start = 3 if f.read(3) == BOM else 0
    f.seek(start)
    return start


@dataclass
class Reader:
    """What a source reports while it reads one file: bad records and progress."""

    file: str
    strict: bool = False
    progress: Callable[[int], None] | None = None  # called with bytes consumed so far
    max_examples: int = 3
    bad_count: int = 0
    examples: list[str] = field(default_factory=list)
    speakers: Counter[str] = field(default_factory=Counter)  # posts per speaker (message streams)
    dropped: Counter[str] = field(default_factory=Counter)  # conversations or posts left out, by reason
    first_bad: tuple[str | int | None, str] | None = None  # the first bad record's place and message

    def bad(self, where: str | int | None, message: str) -> None:
        """A record is bad: skip and count it, or (strict) stop the file."""
        err = SourceError(message, file=self.file, where=where)
        if self.strict:
            raise SourceParamError("{message} ({strict}: nothing of this file was imported)", file=self.file, where=where, message=message)
        self.bad_count += 1
        if self.first_bad is None:
            self.first_bad = (where, message)
        if len(self.examples) < self.max_examples:
            self.examples.append(str(err))

    def all_bad(self, conversations: int) -> SourceError | None:
        """The error for a file of which every record was bad: ``conversations`` came of it and
        nothing else was read (no speaker's message, nothing dropped for a reason of its own).
        Nothing at all imported from a file that had records is a failure, not a success with a
        warning."""
        if not self.bad_count or conversations or self.speakers or self.dropped or self.first_bad is None:
            return None
        where, message = self.first_bad
        every = "its one record is" if self.bad_count == 1 else f"all {self.bad_count:,} of its records are"
        return SourceError(f"nothing imported: {every} bad; the first: {message}", file=self.file, where=where)

    @property
    def showing(self) -> bool:
        """Whether the next bad record is shown (an example, or the error under ``strict``): a
        place that is dear to find is only worth finding then."""
        return self.strict or len(self.examples) < self.max_examples

    def advance(self, consumed: int) -> None:
        if self.progress is not None:
            self.progress(consumed)


class Source:
    """Base class of importers. Subclasses set ``name``, ``summary`` and implement ``read``."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    #: file name endings this source reads when given a folder
    extensions: ClassVar[tuple[str, ...]] = ()
    #: a message stream (Discord, WhatsApp, Telegram): needs ``me``, sessionized
    stream: ClassVar[bool] = False
    #: whether ``detect`` can recognize this format (``-f`` on another format is then an error)
    detectable: ClassVar[bool] = True

    def __init__(self, options: ImportOptions | None = None):
        """``options``: the import options (``sources/options.py``); each source reads the ones
        it knows."""
        self.options = options if options is not None else ImportOptions()

    def detect(self, path: Path, head: bytes) -> bool:
        """Whether the file (its first bytes in ``head``) looks like this format."""
        return False

    def resolve(self, path: str) -> list[Path]:
        """The files a PATH argument names. A folder gives its files with our extensions."""
        p = Path(path)
        if not p.exists():
            raise SourceError("no such file or folder", file=path)
        check_regular(p)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(self.extensions))
            if not files:
                raise SourceError(f"no {self.name} files ({', '.join(self.extensions)}) in this folder", file=path)
            return files
        return [p]

    def read(self, path: Path, reader: Reader) -> Iterator[Conversation]:
        raise NotImplementedError


def csv_rows(text: str, path: Path, reader: Reader) -> list[tuple[int, list[str]]]:
    """The rows of a CSV text, each with the line it starts on (quoted fields may hold newlines),
    fields of any length (a 50 MB message too), as RFC 4180 has them: a field with a quote in it
    is quoted, and its quotes doubled. A row that breaks that rule (a stray quote: ``"a"b``, or
    ``a"b`` unquoted; or a quote left open, which swallows the next line) is a bad record, told
    to ``reader`` with its line and skipped. A quote left open to the end of the file is an error:
    the file was cut short (or its last quote is missing)."""
    if _CSV_FILE.fullmatch(text) is not None:  # the common case, checked at C speed: no fault
        return _csv_rows(text)
    rows, pos, line = [], 0, 1
    while pos < len(text):
        end = _CSV_ROW.match(text, pos).end()  # type: ignore[union-attr]  # (it matches the empty string)
        term = _CSV_END.match(text, end)
        if term is not None:
            rows += [(line, fields) for _, fields in _csv_rows(text[pos:end])]
            nxt = term.end()
        else:
            if text[end] == '"' and (end == pos or text[end - 1] == ","):  # a field opens a quote that never closes
                where = line + text.count("\n", pos, end)
                left = "the file ends inside a quoted field (truncated?)" if text.count("\n", end) < 2 else (
                    "a quote opened here is never closed (the file is cut short, or the quote is one too many)")
                raise SourceError(left, file=str(path), where=where)
            first_line_end = text.find("\n", pos)
            fault_line_end = text.find("\n", end)
            # a quote left open swallowed the line break: the next line starts a row of its own
            nxt = len(text) if first_line_end < 0 else first_line_end + 1
            if first_line_end >= end or first_line_end < 0:  # the fault is on the row's first line: skip that line
                nxt = len(text) if fault_line_end < 0 else fault_line_end + 1
            reader.bad(line, "a stray quote (RFC 4180: a field with a quote in it is quoted, and its quotes doubled); row skipped")
        line += text.count("\n", pos, nxt)
        pos = nxt
    return rows


def _csv_rows(text: str) -> list[tuple[int, list[str]]]:
    rows, line = [], 1
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    for row in reader:
        rows.append((line, row))
        line = reader.line_num + 1
    return rows


_CSV_FIELD = r'(?:"[^"]*+(?:""[^"]*+)*+"|[^",\r\n]*+)'  # RFC 4180: quoted (quotes doubled), or without quotes
_CSV_ROW = re.compile(rf"{_CSV_FIELD}(?:,{_CSV_FIELD})*+")
_CSV_END = re.compile(r"\r\n|\n|\r|\Z")
_CSV_FILE = re.compile(rf"(?:{_CSV_FIELD}(?:,{_CSV_FIELD})*+(?:\r\n|\n|\r|\Z))*+")


csv.field_size_limit(2**31 - 1)  # the default, 128 KiB, is less than a long message


JSON_ARRAY_END = re.compile(rb"(?:\}|\[)\s*\]\s*\Z")  # an array of objects (or an empty one) closes


def json_error(data: bytes, err: Exception, path: Path) -> SourceError:
    """A JSON parser's error on a whole file's bytes as one line with the line it is on: bytes
    that are not UTF-8 are said so (orjson and msgspec report them as bad JSON at its start), and
    so are nesting too deep and a file that ends inside its JSON."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as bad:
        return SourceError(NOT_UTF8, file=str(path), where=data.count(b"\n", 0, bad.start) + 1)
    if "depth limit" in str(err) or "recursion" in str(err):  # orjson stops at 1,024 levels
        return SourceError("nested too deeply to read (over 1,024 levels)", file=str(path))
    pos = getattr(err, "pos", None)
    if pos is None and (m := re.search(r"\(byte (\d+)\)", str(err))):  # msgspec's way of saying where
        pos = int(m[1])
    message = f"not valid JSON: {getattr(err, 'msg', None) or err}"
    end = len(data.rstrip())
    if "truncated" in str(err) or "end of data" in str(err) or (pos is not None and pos >= end - 1):  # at the very end
        pos, message = end, "the file ends inside its JSON (truncated?)"
    return SourceError(message, file=str(path), where=data.count(b"\n", 0, pos) + 1 if pos is not None else None)


_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*+"|[\[\]{}]')  # a string (skipped whole) or a bracket
MAX_DEPTH = 512  # deeper than any chat export nests; ijson's memory grows with the square of the depth


def first_json_item(data: bytes) -> tuple[int, int] | None:
    """Where the first item of the JSON array ``data`` starts and ends (its bracketed value),
    found by a scan that skips strings; None when it does not end in ``data``, or nests deeper
    than ``MAX_DEPTH``. Cheap next to a parser, and safe on any input."""
    depth, start = 0, None
    for m in _JSON_TOKEN.finditer(data):
        c = data[m.start()]
        if c == 0x22:  # a string
            continue
        if c in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_DEPTH:
                return None
            if depth == 2 and start is None:
                start = m.start()
        else:
            depth -= 1
            if depth == 1 and start is not None:
                return start, m.end()
            if depth <= 0:
                return None
    return None


_ARRAY_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*+"|[\[\]{},]')  # a string (skipped whole), a bracket or a comma
_SPACE = re.compile(rb"\s*")


class ItemLines:
    """The line on which each item of a JSON array held in memory starts: ``lines(i)``. Found
    by a scan that skips strings and goes on from the item asked before (a reader asks in order,
    for the bad records it shows), so it costs nothing until a record is bad."""

    def __init__(self, data: bytes):
        self.data = data
        self.tokens = _ARRAY_TOKEN.finditer(data)
        self.depth, self.item, self.start = 0, -1, 0  # the last item found, and where it starts
        self.line, self.at = 1, 0  # the line of ``at``

    def __call__(self, i: int) -> int | None:
        while self.item < i:
            m = next(self.tokens, None)
            if m is None:
                return None
            c = self.data[m.start()]
            if c in b"[{":
                self.depth += 1
                if self.depth == 1:
                    self.item, self.start = 0, m.end()
            elif c in b"]}":
                self.depth -= 1
            elif c == 0x2C and self.depth == 1:  # a comma between items
                self.item, self.start = self.item + 1, m.end()
        if self.item != i:
            return None
        pos = _SPACE.match(self.data, self.start).end()  # type: ignore[union-attr]
        self.line += self.data.count(b"\n", self.at, pos)
        self.at = pos
        return self.line


_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')  # deleted before the depth is counted
_STRING_LEFT = re.compile(rb'"[^"]*"')


def json_too_deep(f: Any, limit: int = MAX_DEPTH, block_size: int = 1 << 24) -> bool:
    """Whether a JSON file nests deeper than ``limit`` (strings skipped), read in blocks.

    Each block is boiled down by C-speed bytes operations: escaped backslashes and quotes are
    removed (left to right, as JSON pairs them), then every byte but ``"[]{}``, then adjacent
    quote pairs (an empty string, or the gap between two strings: either way nothing is lost).
    What quotes are left surround strings that hold brackets, removed by one regex; the depth is
    the running sum of the brackets that remain (numpy). About 150 MB/s on a DCE export, where a
    token-by-token scan in Python ran at 28 MB/s."""
    import numpy as np  # loaded here, not with every command

    steps = np.full(256, -1, dtype=np.int8)  # once the strings are gone only brackets are left: [ { open, ] } close
    steps[[0x5B, 0x7B]] = 1
    depth, in_string, carry = 0, False, b""
    for block in iter(lambda: f.read(block_size), b""):
        data = carry + block
        # an odd run of backslashes at the end escapes the next block's first byte: its last one waits
        keep = len(data) - (len(data) - len(data.rstrip(b"\\"))) % 2
        data, carry = data[:keep], data[keep:]
        left = data.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE).replace(b'""', b"")
        if in_string:  # a string goes on from the block before
            left = b'"' + left
        in_string = left.count(b'"') % 2 == 1
        if in_string:  # and on into the next block
            left = left[: left.rindex(b'"')]
        left = _STRING_LEFT.sub(b"", left)
        if left:
            running = np.cumsum(steps[np.frombuffer(left, dtype=np.uint8)], dtype=np.int64) + depth
            if running.max() > limit:
                return True
            depth = int(running[-1])
    return False


def check_json_end(path: Path, end: re.Pattern[bytes] | bytes,
                   message: str = "the file ends inside its JSON (truncated?)") -> None:  # fmt: skip
    """A JSON file read as a stream must end as its layout does (``end``: a pattern, or the last
    byte): one cut short (a download that stopped) is an error before anything of it is read, so
    nothing of it is written. A cut that happens to fall where the end would look the same is
    still found when the reading gets there."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 4096))
        tail = f.read().rstrip()
    if not (end.search(tail) if isinstance(end, re.Pattern) else tail.endswith(end)):
        with open(path, "rb") as f:  # the last line, for the message: only on this error
            lines = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 24), b""))
        raise SourceError(message, file=str(path), where=lines + (0 if tail.endswith(b"\n") else 1))


_NOT_REGULAR = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"))  # fmt: skip


def check_regular(path: Path) -> None:
    """Refuse what is neither a file nor a folder (a FIFO, a socket, a device), before anything
    opens it: reading a FIFO waits for a writer that may never come, and a device never ends."""
    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise SourceError(err.strerror or str(err), file=str(path)) from None
    for test, what in _NOT_REGULAR:
        if test(mode):
            raise SourceError(f"{what}, not a file: chatloom imports files and folders", file=str(path))


def read_head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(HEAD_BYTES)
    except OSError as err:
        raise SourceError(err.strerror or str(err), file=str(path)) from None


def read_text(path: Path) -> tuple[str, int]:
    """A whole text file as str (a UTF-8 BOM dropped) and its size in bytes; one clear error,
    with the line, when it is not UTF-8 text."""
    raw = path.read_bytes()
    check_text(path, raw[:4096])
    try:
        return raw.decode("utf-8-sig"), len(raw)
    except UnicodeDecodeError as err:
        raise SourceError("not UTF-8 text", file=str(path), where=raw.count(b"\n", 0, err.start) + 1) from None


def check_text(path: Path, head: bytes) -> None:
    """Fail clearly on files that are not UTF-8 text (binary, or UTF-16 with a BOM)."""
    if not head.strip():
        raise SourceError("the file is empty", file=str(path))
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SourceError("the file is UTF-16; import it with 'chatloom import', which converts it, or convert it to UTF-8", file=str(path))
    if b"\x00" in head:
        odd, even = head[1::2].count(0), head[0::2].count(0)
        if max(odd, even) > len(head) // 4 and min(odd, even) == 0:  # every other byte 0: UTF-16 text
            order = "LE" if odd else "BE"
            raise SourceError(f"this looks like UTF-16 text without a byte order mark; convert it: iconv -f UTF-16{order} -t UTF-8", file=str(path))
        raise SourceError("this is a binary file, not a text export", file=str(path))
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 3:  # not just a character cut at the end of the head
            raise SourceError(
                NOT_UTF8,
                file=str(path), where=head.count(b"\n", 0, err.start) + 1,
            ) from None  # fmt: skip
