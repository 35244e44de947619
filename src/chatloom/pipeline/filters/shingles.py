"""Shingles for MinHash: texts normalized as datatrove normalizes them, cut into words and hashed
into ``ngram``-word shingles, all with numpy (the engine that uses them is ``minhash.py``).

    sh = shingle_batch(texts, ngram=5)  # sh.hashes (uint64), sh.text (which text each is from), sh.digests

1. **Normalize** each text as datatrove's default ``simplify_text`` does: lowercase, every number
   to ``0``, punctuation to spaces, diacritics removed (NFD, then the combining marks dropped);
   words are what whitespace separates. (ASCII text takes a faster road to the same words: its
   numbers are found on bytes.)
2. **Hash words, then shingles, with numpy; nothing in Python runs per word.** A batch of texts
   becomes one UTF-8 byte array; a word's 64-bit hash is the polynomial of its bytes in a fixed
   odd base mod 2**64 (one ``np.add.reduceat``), mixed with its length by splitmix64's finalizer.
   A shingle is ``ngram`` consecutive words of one text, hashed from its words' hashes; a text of
   fewer words than ``ngram`` has one shingle, all of it. The hashes are stable: the same on every
   machine and in every run (never Python's salted ``hash()``).
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

__all__ = ["U64", "Shingles", "constants", "mix64", "normalize", "shingle_batch"]

U64 = np.uint64

# datatrove's ``PUNCTUATION`` (datatrove/utils/text.py): these become spaces, like every control
# character and every character ``str.isspace`` accepts. NUL separates texts inside a batch.
_PUNCTUATION = (
    "!/—”:％１〈&(、━\\【#%「」，】；+^]~“《„';’{|∶´[=-`*．（–？！：$～«〉,><》)?）。…@_.\"}►»"
    + "".join(map(chr, (x for a, b in ((0, 9), (11, 13), (13, 32), (127, 160)) for x in range(a, b))))
)
_WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
_TO_SPACE = {ord(c): " " for c in _PUNCTUATION + _WHITESPACE}
# for ASCII text, numbers are found later, on bytes: "." and "," stay until then
_ASCII_TO_SPACE = {k: v for k, v in _TO_SPACE.items() if k < 128 and chr(k) not in ".,"}
# a number, with at most one decimal separator: datatrove's NUMBERS_PATTERN (``\d`` is Unicode Nd)
_NUMBER = re.compile(r"\d+(?:[.,،٫⎖⎗⎘]\d+)?")


@cache
def _combining_marks() -> re.Pattern[str]:
    """Every character of category Mn (built once, on the first text that is not ASCII)."""
    marks = [cp for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)) == "Mn"]
    ranges, start = [], marks[0]
    for prev, cp in zip(marks, marks[1:] + [-1]):
        if cp != prev + 1:
            ranges.append(re.escape(chr(start)) + ("" if prev == start else "-" + re.escape(chr(prev))))
            start = cp
    return re.compile("[" + "".join(ranges) + "]+")


def _simplify(text: str) -> str:
    """datatrove's ``simplify_text``, in its order (lowercase, numbers, punctuation, diacritics),
    with words separated by runs of spaces: no other whitespace, no NUL."""
    text = _NUMBER.sub("0", text.lower()).translate(_TO_SPACE)
    if not text.isascii():
        text = _combining_marks().sub("", unicodedata.normalize("NFD", text))
    return text


def normalize(text: str) -> str:
    """The text as shingled: lowercase, numbers as ``0``, no punctuation, no diacritics, single
    spaces. The same words as datatrove's ``simplify_text`` split on whitespace."""
    return " ".join(_simplify(text).split())


# -- hashing, all of it vectorized ------------------------------------------------------------------


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, in place: a bijection of uint64 with good avalanche."""
    x ^= x >> U64(30)
    x *= U64(0xBF58476D1CE4E5B9)
    x ^= x >> U64(27)
    x *= U64(0x94D049BB133111EB)
    x ^= x >> U64(31)
    return x


def constants(key: int, n: int) -> np.ndarray:
    """``n`` pseudo-random odd uint64 constants for ``key``: the same everywhere, for any ``n``."""
    x = np.arange(n, dtype=U64) * U64(0x9E3779B97F4A7C15) + U64(key & 0xFFFFFFFFFFFFFFFF)
    return mix64(x) | U64(1)


_BASE = 0x9FB21C651E98DF25  # the word hash's polynomial base (odd, so invertible mod 2**64)
_PERIOD = 1 << 16  # byte positions are taken modulo this; a word across a multiple is redone


def _power_table(base: int) -> np.ndarray:
    table = np.full(_PERIOD, base, dtype=U64)
    table[0] = 1
    return np.multiply.accumulate(table)


_UP, _DOWN = _power_table(_BASE), _power_table(pow(_BASE, -1, 1 << 64))  # BASE**i, BASE**-i


def _word_polynomials(b: np.ndarray, in_word: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """For each word ``b[s:e]``: the sum of ``b[k] * BASE**(k - s)`` mod 2**64."""
    pad = -len(b) % _PERIOD
    terms = (np.concatenate([np.where(in_word, b, np.uint8(0)), np.zeros(pad, np.uint8)]).reshape(-1, _PERIOD) * _UP).ravel()
    poly = np.add.reduceat(terms, starts) if len(starts) else np.zeros(0, dtype=U64)
    poly *= _DOWN[starts & (_PERIOD - 1)]
    for w in np.flatnonzero((starts >> 16) != ((ends - 1) >> 16)):  # across a multiple of _PERIOD
        s, e, total = int(starts[w]), int(ends[w]), 0
        for off in range(s, e, _PERIOD):
            seg = b[off : min(off + _PERIOD, e)].astype(U64)
            total += int((seg * _UP[: len(seg)]).sum(dtype=U64)) * pow(_BASE, off - s, 1 << 64)
        poly[w] = total & 0xFFFFFFFFFFFFFFFF
    return poly


def _collapse_numbers(b: np.ndarray, ascii_bytes: np.ndarray | None) -> np.ndarray:
    """datatrove's number rule on ASCII bytes (``_NUMBER.sub("0", ...)``, scanning left to right):
    a run of digits, with one "." or "," and a second run if one follows, becomes one "0"; then
    "." and "," become spaces. ``ascii_bytes`` limits it to the texts not simplified already."""
    digit = (b - np.uint8(48)) < 10
    if ascii_bytes is not None:
        digit &= ascii_bytes
    if digit.any():
        edges = np.diff(digit.view(np.int8), prepend=np.int8(0), append=np.int8(0))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        # run r and run r+1 form one number when exactly one separator lies between them
        linked = (starts[1:] == ends[:-1] + 1) & ((b[ends[:-1]] == 46) | (b[ends[:-1]] == 44))
        after_link = np.r_[False, linked]
        chain_start = np.maximum.accumulate(np.where(after_link, 0, np.arange(len(starts))))
        second = after_link & ((np.arange(len(starts)) - chain_start) % 2 == 1)  # ends a "d.d" number
        b[starts[~second]] = 48
        lo = np.where(second, starts - 1, starts + 1)  # delete [lo, end): the separator too
        lengths = ends - lo
        cut = np.repeat(lo - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        keep = np.ones(len(b), dtype=bool)
        keep[cut] = False
        b = b[keep]
    b[(b == 46) | (b == 44)] = 32
    return b


@dataclass
class Shingles:
    """The shingles of a batch of texts: hashes in text order, and each one's text (0-based)."""

    hashes: np.ndarray  # uint64
    text: np.ndarray  # int64
    digests: np.ndarray  # uint64, one per text: the normalized words' digest (0: no words)
    count: int  # texts in the batch


def shingle_batch(texts: Sequence[str], ngram: int) -> Shingles:
    n = len(texts)
    prepared, slow = [], []
    for i, text in enumerate(texts):
        text = text.lower()
        if text.isascii():
            prepared.append(text.translate(_ASCII_TO_SPACE))
        else:
            prepared.append(_simplify(text))
            slow.append(i)
    raw = "\x00".join(prepared).encode("utf-8", "surrogatepass")
    b = np.frombuffer(raw, dtype=np.uint8).copy()
    ascii_bytes = None
    if slow:  # numbers are done already in these: flag the bytes of the others
        fast = np.ones(n, dtype=bool)
        fast[slow] = False
        sizes = np.fromiter((len(p) + 1 for p in prepared), dtype=np.int64, count=n)
        sizes[slow] = [len(prepared[i].encode("utf-8", "surrogatepass")) + 1 for i in slow]
        ascii_bytes = np.repeat(fast, sizes)[: len(b)]
    b = _collapse_numbers(b, ascii_bytes)

    # words: runs of bytes above " " (what is left is words, spaces and the NUL between texts)
    in_word = b > 32
    edges = np.diff(in_word.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    counts = np.diff(np.searchsorted(starts, np.flatnonzero(b == 0)), prepend=0, append=len(starts))
    # a word's hash: its bytes as a polynomial in BASE, mixed with its length
    words = mix64(_word_polynomials(b, in_word, starts, ends) + (ends - starts).astype(U64))
    del in_word, edges

    word_text = np.repeat(np.arange(n), counts)
    ends_t = np.cumsum(counts)
    first_t = ends_t - counts
    # shingle i: words i .. i+ngram-1 of one text, each word weighted by its slot
    slots = constants(0x5EED_0002, ngram)
    full = max(len(words) - ngram + 1, 0)
    g = words[:full] * slots[0]
    for j in range(1, ngram):
        g += words[j : j + full] * slots[j]
    keep = np.ones(full, dtype=bool)
    for j in range(1, ngram):  # no window starts in a text's last ngram - 1 words
        last = ends_t - j
        keep[last[(last >= first_t) & (last < full)]] = False
    hashes, shingle_text = g[keep], word_text[:full][keep]
    short = np.flatnonzero((counts > 0) & (counts < ngram))
    if len(short):  # a text of fewer than ngram words has one shingle: all of it
        gs = np.zeros(len(short), dtype=U64)
        for j in range(ngram - 1):
            gs += np.where(j < counts[short], words[np.minimum(first_t[short] + j, len(words) - 1)] * slots[j], U64(0))
        hashes, shingle_text = np.concatenate([hashes, gs]), np.concatenate([shingle_text, short])
    hashes = mix64(hashes + U64(ngram))
    # the digest of a text's shingles (as a multiset): equal digests, equal shingle sets
    digests = np.zeros(n, dtype=U64)
    if len(hashes):
        order = np.argsort(shingle_text, kind="stable") if len(short) else slice(None)
        t = shingle_text[order]
        firsts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
        sums = np.add.reduceat(hashes[order], firsts)
        digests[t[firsts]] = mix64(sums + np.bincount(t, minlength=n)[t[firsts]].astype(U64)) | U64(1)
    return Shingles(hashes=hashes, text=shingle_text, digests=digests, count=n)
