"""Near-duplicate detection: MinHash signatures and LSH banding, vectorized with numpy.

    from chatloom.pipeline.minhash import MinHashDedup, near_duplicates

    keepers = near_duplicates(texts, threshold=0.8, ngram=5)  # keepers[i]: the kept text i repeats, or -1

    dedup = MinHashDedup(threshold=0.8, ngram=5, permutations=128, seed=0)
    sigs = np.concatenate([dedup.signatures(shard) for shard in shards])  # across shards, in order
    keepers = dedup.duplicates(sigs, texts=all_texts)  # with the texts: candidates checked exactly

How it works, and why it is fast without a compiled extension:

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
3. **One permutation, ``permutations`` bins** (Li, Owen & Zhang, 2012): each shingle hash is mixed
   with the seed once; its high half picks one of ``permutations`` bins, its low 32 bits are its
   value, and a text's signature is the least value in each bin. An empty bin takes the value of
   the first non-empty bin in a probe order fixed by the seed ("optimal densification",
   Shrivastava, 2017). Two texts then agree in a bin with probability equal to their Jaccard
   similarity, as with ``permutations`` independent permutations, for one hash per shingle
   instead of ``permutations``.
4. **LSH banding**: the signature is cut into ``bands`` bands of ``rows`` values; texts that agree
   on a whole band are candidates. :func:`lsh_params` takes the most rows per band for which a
   pair at exactly ``threshold`` still becomes a candidate with probability ≥ 0.995, so the
   S-curve's midpoint ``(1/bands)**(1/rows)`` sits below ``threshold`` (21 × 6: 0.60, for 0.8 and
   128): the curve gathers candidates, the verification decides.
5. **Verification**: a pair is a near-duplicate when its Jaccard similarity is at least
   ``threshold``: with the texts, the exact Jaccard of the two shingle sets (recomputed for the
   candidates whose estimate is within 5 standard errors of the threshold, in batches), without
   them the fraction of equal signature values. Texts with the same shingles (one 64-bit digest)
   are one text for the banding.
6. **Keepers**: texts are taken in order; a text that near-duplicates an earlier kept text is
   dropped, and names the lowest such. Everything dropped has its near-duplicate in what is kept,
   and a chain (a ~ b ~ c, but a and c apart) keeps its far end; ``transitive=True`` drops whole
   connected clusters but their first, as datatrove does. Either way the result depends on the
   input order only, never on batch sizes, shards or workers.

A text with no words after normalization (empty, or only punctuation) has no shingles: it is
nobody's duplicate and nothing duplicates it.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import TypeVar

import numpy as np

__all__ = ["EMPTY", "MinHashDedup", "lsh_params", "near_duplicates", "normalize", "signature_dtype"]
T, R = TypeVar("T"), TypeVar("R")

EMPTY = np.uint32(0xFFFFFFFF)  # the value of a bin no shingle fell into
_U64 = np.uint64
_MASK32 = _U64(0xFFFFFFFF)

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


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, in place: a bijection of uint64 with good avalanche."""
    x ^= x >> _U64(30)
    x *= _U64(0xBF58476D1CE4E5B9)
    x ^= x >> _U64(27)
    x *= _U64(0x94D049BB133111EB)
    x ^= x >> _U64(31)
    return x


def _constants(key: int, n: int) -> np.ndarray:
    """``n`` pseudo-random odd uint64 constants for ``key``: the same everywhere, for any ``n``."""
    x = np.arange(n, dtype=_U64) * _U64(0x9E3779B97F4A7C15) + _U64(key & 0xFFFFFFFFFFFFFFFF)
    return _mix(x) | _U64(1)


_BASE = 0x9FB21C651E98DF25  # the word hash's polynomial base (odd, so invertible mod 2**64)
_PERIOD = 1 << 16  # byte positions are taken modulo this; a word across a multiple is redone


def _power_table(base: int) -> np.ndarray:
    table = np.full(_PERIOD, base, dtype=_U64)
    table[0] = 1
    return np.multiply.accumulate(table)


_UP, _DOWN = _power_table(_BASE), _power_table(pow(_BASE, -1, 1 << 64))  # BASE**i, BASE**-i


def _word_polynomials(b: np.ndarray, in_word: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """For each word ``b[s:e]``: the sum of ``b[k] * BASE**(k - s)`` mod 2**64."""
    pad = -len(b) % _PERIOD
    terms = (np.concatenate([np.where(in_word, b, np.uint8(0)), np.zeros(pad, np.uint8)]).reshape(-1, _PERIOD) * _UP).ravel()
    poly = np.add.reduceat(terms, starts) if len(starts) else np.zeros(0, dtype=_U64)
    poly *= _DOWN[starts & (_PERIOD - 1)]
    for w in np.flatnonzero((starts >> 16) != ((ends - 1) >> 16)):  # across a multiple of _PERIOD
        s, e, total = int(starts[w]), int(ends[w]), 0
        for off in range(s, e, _PERIOD):
            seg = b[off : min(off + _PERIOD, e)].astype(_U64)
            total += int((seg * _UP[: len(seg)]).sum(dtype=_U64)) * pow(_BASE, off - s, 1 << 64)
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
class _Shingles:
    """The shingles of a batch of texts: hashes in text order, and each one's text (0-based)."""

    hashes: np.ndarray  # uint64
    text: np.ndarray  # int64
    digests: np.ndarray  # uint64, one per text: the normalized words' digest (0: no words)
    count: int  # texts in the batch


def _shingle_batch(texts: Sequence[str], ngram: int) -> _Shingles:
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
    words = _mix(_word_polynomials(b, in_word, starts, ends) + (ends - starts).astype(_U64))
    del in_word, edges

    word_text = np.repeat(np.arange(n), counts)
    ends_t = np.cumsum(counts)
    first_t = ends_t - counts
    # shingle i: words i .. i+ngram-1 of one text, each word weighted by its slot
    slots = _constants(0x5EED_0002, ngram)
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
        gs = np.zeros(len(short), dtype=_U64)
        for j in range(ngram - 1):
            gs += np.where(j < counts[short], words[np.minimum(first_t[short] + j, len(words) - 1)] * slots[j], _U64(0))
        hashes, shingle_text = np.concatenate([hashes, gs]), np.concatenate([shingle_text, short])
    hashes = _mix(hashes + _U64(ngram))
    # the digest of a text's shingles (as a multiset): equal digests, equal shingle sets
    digests = np.zeros(n, dtype=_U64)
    if len(hashes):
        order = np.argsort(shingle_text, kind="stable") if len(short) else slice(None)
        t = shingle_text[order]
        firsts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
        sums = np.add.reduceat(hashes[order], firsts)
        digests[t[firsts]] = _mix(sums + np.bincount(t, minlength=n)[t[firsts]].astype(_U64)) | _U64(1)
    return _Shingles(hashes=hashes, text=shingle_text, digests=digests, count=n)


def signature_dtype(permutations: int) -> np.dtype:
    """A signature row: ``minhash`` (``permutations`` uint32 bin minima) and ``digest`` (uint64,
    the normalized words' digest; 0 for a text with no words)."""
    return np.dtype([("minhash", np.uint32, (permutations,)), ("digest", np.uint64)])


def lsh_params(threshold: float, permutations: int, recall: float = 0.995) -> tuple[int, int]:
    """``(bands, rows)`` with ``bands * rows <= permutations``: the most rows per band (fewest
    candidates to verify) for which a pair of Jaccard similarity ``threshold`` shares at least one
    band with probability ``1 - (1 - threshold**rows)**bands >= recall``."""
    best = (permutations, 1)
    for rows in range(1, permutations + 1):
        bands = permutations // rows
        if 1 - (1 - threshold**rows) ** bands >= recall:
            best = (bands, rows)
    return best


# -- the engine --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MinHashDedup:
    """MinHash + LSH near-duplicate detection over texts (see the module's docstring).

    :param threshold: Jaccard similarity of the shingle sets at or above which two texts are
        near-duplicates (0.8, as is usual for training data)
    :param ngram: words per shingle (5, datatrove's default)
    :param permutations: signature length: bins of the one-permutation MinHash (128; the standard
        error of a similarity estimate is about ``sqrt(J * (1 - J) / permutations)``)
    :param seed: chooses the hash functions; the same seed gives the same signatures
    :param bands: LSH bands (default: from :func:`lsh_params`)
    :param rows: signature values per band (default: from :func:`lsh_params`)
    :param batch_chars: characters of text hashed at once (memory stays flat beyond it)
    :param transitive: drop whole clusters of near-duplicates (connected components, chains
        included, as datatrove does) but their lowest index; by default a text is dropped only
        for a kept text it near-duplicates itself
    """

    threshold: float = 0.8
    ngram: int = 5
    permutations: int = 128
    seed: int = 0
    bands: int | None = None
    rows: int | None = None
    batch_chars: int = 1 << 20
    transitive: bool = False
    _probes: np.ndarray = field(init=False, repr=False, compare=False)
    _ranks: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], not {self.threshold}")
        if self.ngram < 1:
            raise ValueError(f"ngram must be at least 1, not {self.ngram}")
        if not 2 <= self.permutations <= 1024:
            raise ValueError(f"permutations must be between 2 and 1024, not {self.permutations}")
        if self.bands is None and self.rows is None:
            bands, rows = lsh_params(self.threshold, self.permutations)
        else:
            bands = self.bands or self.permutations // (self.rows or 1)
            rows = self.rows or self.permutations // bands
        if bands * rows > self.permutations or bands < 1 or rows < 1:
            raise ValueError(f"bands × rows ({bands} × {rows}) must be at most permutations ({self.permutations})")
        object.__setattr__(self, "bands", bands)
        object.__setattr__(self, "rows", rows)
        # each bin's densification probe order: a permutation of the bins, fixed by the seed
        k = self.permutations
        keys = _constants(self.seed * 0x100000001B3 + 0x5EED_0003, k * k).reshape(k, k)
        probes = np.argsort(keys, axis=1, kind="stable").astype(np.int16)
        ranks = np.empty_like(probes)
        np.put_along_axis(ranks, probes.astype(np.int64), np.arange(k, dtype=np.int16)[None, :], axis=1)
        object.__setattr__(self, "_probes", probes)
        object.__setattr__(self, "_ranks", ranks)

    @property
    def _seed_key(self) -> np.uint64:
        return _constants(self.seed * 0x100000001B3 + 0x5EED_0004, 1)[0]

    # -- signatures ------------------------------------------------------------------------------

    def shingles(self, text: str) -> np.ndarray:
        """The sorted distinct shingle hashes (uint64) of one text."""
        return _distinct(_shingle_batch([text], self.ngram).hashes)

    def _signature_batch(self, texts: Sequence[str]) -> np.ndarray:
        k = self.permutations
        sh = _shingle_batch(texts, self.ngram)
        out = np.zeros(sh.count, dtype=signature_dtype(k))
        out["digest"] = sh.digests
        h = _mix(sh.hashes ^ self._seed_key)
        bins = ((h >> _U64(32)) * _U64(k)) >> _U64(32)  # the high half picks the bin
        values = (h & _MASK32).astype(np.uint32)  # the low half is the value
        sig = np.full(sh.count * k, EMPTY, dtype=np.uint32)
        np.minimum.at(sig, sh.text * k + bins.astype(np.int64), values)
        sig = sig.reshape(sh.count, k)
        _densify(sig, self._probes, self._ranks)
        out["minhash"] = sig
        return out

    def _batches(self, texts: Iterable[str]) -> Iterator[list[str]]:
        it = iter(texts)
        while True:
            batch, size = [], 0
            for text in it:
                batch.append(text)
                size += len(text)
                if size >= self.batch_chars:
                    break
            if not batch:
                return
            yield batch

    def signatures(self, texts: Iterable[str], workers: int = 1) -> np.ndarray:
        """One signature row per text, in order: a structured array of :func:`signature_dtype`
        (``sigs["minhash"]`` is ``[n, permutations]`` uint32). Texts are hashed in batches of
        about ``batch_chars`` characters, on ``workers`` processes; the result does not depend
        on either. Signatures of shards concatenate (``np.concatenate``) into one input for
        :meth:`duplicates`."""
        parts = list(_ordered_map(self._signature_batch, self._batches(texts), workers))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=signature_dtype(self.permutations))

    # -- candidates, verification, clusters ----------------------------------------------------------

    def candidates(self, signatures: np.ndarray) -> np.ndarray:
        """Pairs ``[m, 2]`` (``i < j``, sorted) of texts that agree on a whole LSH band, among
        texts with distinct digests (each digest group is represented by its lowest index)."""
        sigs = _as_structured(signatures, self.permutations)
        reps = _representatives(sigs)
        mh = sigs["minhash"][reps]
        n = len(reps)
        if n < 2:
            return np.zeros((0, 2), dtype=np.int64)
        found = []
        weights = _constants(0x5EED_0005, self.rows)
        for band in range(self.bands):
            cols = mh[:, band * self.rows : (band + 1) * self.rows].astype(_U64)
            key = _mix((cols * weights).sum(axis=1, dtype=_U64))
            order = np.argsort(key, kind="stable")
            found.append(_group_pairs(key[order], order))
        pairs = np.concatenate(found)
        if not len(pairs):
            return np.zeros((0, 2), dtype=np.int64)
        code = _distinct(pairs[:, 0] * n + pairs[:, 1])
        return np.stack([reps[code // n], reps[code % n]], axis=1)

    def similarity(self, signatures: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        """Estimated Jaccard similarity of each pair: the fraction of equal signature values."""
        mh = _as_structured(signatures, self.permutations)["minhash"]
        est = np.empty(len(pairs), dtype=np.float64)
        step = max(1, (1 << 24) // self.permutations)
        for s in range(0, len(pairs), step):
            p = pairs[s : s + step]
            est[s : s + step] = np.count_nonzero(mh[p[:, 0]] == mh[p[:, 1]], axis=1) / self.permutations
        return est

    def jaccard(self, texts: Sequence[str], pairs: np.ndarray, workers: int = 1) -> np.ndarray:
        """Exact Jaccard similarity of each pair's shingle sets (the texts hashed again, in
        batches of about ``batch_chars`` characters, on ``workers`` processes)."""
        out = np.zeros(len(pairs), dtype=np.float64)
        order = np.argsort(pairs[:, 0], kind="stable")
        chunks = []  # (rows of pairs, their texts, the pairs as positions in those texts)
        start = 0
        while start < len(order):
            chosen: dict[int, int] = {}
            size, stop = 0, start
            while stop < len(order) and (size < self.batch_chars or stop == start):
                for i in pairs[order[stop]].tolist():
                    if i not in chosen:
                        chosen[i] = len(chosen)
                        size += len(texts[i])
                stop += 1
            rows = order[start:stop]
            local = np.array([[chosen[i], chosen[j]] for i, j in pairs[rows].tolist()], dtype=np.int64)
            chunks.append((rows, [texts[i] for i in chosen], local))
            start = stop
        jobs = ((chunk_texts, local, self.ngram) for _, chunk_texts, local in chunks)
        for (rows, _, _), result in zip(chunks, _ordered_map(_chunk_jaccard, jobs, workers if len(chunks) > 1 else 1)):
            out[rows] = result
        return out

    def duplicates(self, signatures: np.ndarray, texts: Sequence[str] | None = None, workers: int = 1) -> np.ndarray:
        """For each text, the index of the kept text it near-duplicates, or -1 for a text that is
        kept. Texts are taken in order: a text is dropped when it near-duplicates a text kept
        before it (the lowest such index), so what is dropped always has its near-duplicate in
        what is kept; with ``transitive`` whole clusters of near-duplicates (chains included)
        keep their lowest index instead. With ``texts`` (the same texts, in the same order) a
        candidate pair is judged by the exact Jaccard similarity of its shingle sets, without
        them by the signatures' estimate."""
        sigs = _as_structured(signatures, self.permutations)
        n = len(sigs)
        pairs = self.candidates(sigs)
        if len(pairs):
            est = self.similarity(sigs, pairs)
            if texts is None:
                pairs = pairs[est >= self.threshold]
            else:
                # only a pair whose estimate could plausibly hide a similarity at the threshold is
                # checked exactly: 5 standard errors, counted over the distinct values the
                # signatures hold (a text of few shingles has few, however long its signature)
                rows = _distinct(pairs.ravel())
                inverse = np.searchsorted(rows, pairs)
                ranked = np.sort(sigs["minhash"][rows], axis=1)
                distinct = 1 + np.count_nonzero(ranked[:, 1:] != ranked[:, :-1], axis=1)
                samples = np.minimum(distinct[inverse[:, 0]], distinct[inverse[:, 1]])
                t = self.threshold
                margin = 5 * np.sqrt(t * (1 - t) / samples) + 2 / self.permutations
                pairs = pairs[est >= t - margin]
                pairs = pairs[self.jaccard(texts, pairs, workers=workers) >= t]
        # texts with identical shingles (one digest) follow the group's first, which stood for
        # them in the pairs
        rep = _digest_groups(sigs["digest"])
        if self.transitive:
            root = _components(n, np.concatenate([np.stack([rep, np.arange(n)], axis=1), pairs]))
            return np.where(root == np.arange(n), -1, root)
        keeper = _keep_first(n, pairs)
        return np.where(rep == np.arange(n), keeper, np.where(keeper[rep] >= 0, keeper[rep], rep))


def near_duplicates(
    texts: Sequence[str],
    *,
    threshold: float = 0.8,
    ngram: int = 5,
    permutations: int = 128,
    seed: int = 0,
    workers: int = 1,
    transitive: bool = False,
) -> np.ndarray:
    """``keepers[i]``: the index of the kept text that text ``i`` near-duplicates (the lowest, and
    always lower than ``i``), or -1 where text ``i`` is kept; candidates are checked by their
    exact Jaccard similarity. See :class:`MinHashDedup` for the parameters."""
    dedup = MinHashDedup(threshold=threshold, ngram=ngram, permutations=permutations, seed=seed, transitive=transitive)
    return dedup.duplicates(dedup.signatures(texts, workers=workers), texts=texts, workers=workers)


# -- helpers -----------------------------------------------------------------------------------------


def _as_structured(signatures: np.ndarray, permutations: int) -> np.ndarray:
    """Accept the structured rows of :meth:`MinHashDedup.signatures` or a bare ``[n, k]`` array."""
    if signatures.dtype.names:
        if signatures["minhash"].shape[1:] != (permutations,):
            raise ValueError(f"signatures have {signatures['minhash'].shape[1:]} values, expected {permutations}")
        return signatures
    if signatures.ndim != 2 or signatures.shape[1] != permutations:
        raise ValueError(f"signatures must be [n, {permutations}], not {list(signatures.shape)}")
    out = np.zeros(len(signatures), dtype=signature_dtype(permutations))
    out["minhash"] = signatures
    # no digests: a row with any value is "some text"; equal rows are no evidence of equal texts
    out["digest"] = np.where((signatures != EMPTY).any(axis=1), np.arange(1, len(signatures) + 1, dtype=_U64), 0)
    return out


def _densify(sig: np.ndarray, probes: np.ndarray, ranks: np.ndarray, few: int = 16) -> None:
    """Fill each empty bin, in place, with the value of the first non-empty bin in its probe
    order (``probes[j]``; ``ranks[j, s]`` is where bin ``s`` comes in it). A text with no
    shingle keeps its empty bins."""
    k = sig.shape[1]
    filled = sig != EMPTY
    m = filled.sum(axis=1)
    # few filled bins: for every bin, the filled one of lowest rank in its probe order
    texts = np.flatnonzero((m > 0) & (m <= few) & (m < k))
    for c in range(0, len(texts), 2048):
        t = texts[c : c + 2048]
        nonempty = np.argsort(~filled[t], axis=1, kind="stable")[:, :few]  # filled bins first
        r = np.where(np.arange(few) < m[t][:, None], ranks[:, nonempty], k)  # [k, len(t), few]
        src = np.take_along_axis(nonempty, r.argmin(axis=2).T, axis=1)
        sig[t] = np.where(filled[t], sig[t], np.take_along_axis(sig[t], src, axis=1))
    # many filled bins: walk each empty bin's probe order (about k / m steps)
    rows, cols = np.nonzero(~filled & ((m > few) & (m < k))[:, None])
    for step in range(k):
        if not len(rows):
            break
        src = probes[cols, step]
        ok = filled[rows, src]
        sig[rows[ok], cols[ok]] = sig[rows[ok], src[ok]]
        rows, cols = rows[~ok], cols[~ok]


def _ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` processes, in order, with at most two jobs per worker
    in flight (an iterable is read as the work goes, not all at once)."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ProcessPoolExecutor(workers) as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _distinct(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values (``np.unique`` by sorting: numpy 2.3+ hashes instead, many times
    slower on 64-bit keys)."""
    x = np.sort(x)
    return x[np.r_[True, x[1:] != x[:-1]]] if len(x) else x


def _representatives(sigs: np.ndarray) -> np.ndarray:
    """Indices of the texts that have words, one per digest (the lowest index), ascending."""
    digest = sigs["digest"]
    has_words = np.flatnonzero(digest != 0)
    order = np.argsort(digest[has_words], kind="stable")
    d = digest[has_words][order]
    return np.sort(has_words[order[np.r_[True, d[1:] != d[:-1]][: len(d)]]])


def _digest_groups(digest: np.ndarray) -> np.ndarray:
    """Each text's representative: the lowest index with its digest (itself when it has no words)."""
    rep = np.arange(len(digest))
    idx = np.flatnonzero(digest != 0)
    order = idx[np.argsort(digest[idx], kind="stable")]
    d = digest[order]
    group_start = np.maximum.accumulate(np.where(np.r_[True, d[1:] != d[:-1]], np.arange(len(d)), 0))
    rep[order] = order[group_start]
    return rep


def _keep_first(n: int, pairs: np.ndarray) -> np.ndarray:
    """In index order, a text with a pair to a kept text of lower index is dropped for the lowest."""
    keeper = [-1] * n
    order = np.lexsort((pairs[:, 0], pairs[:, 1]))  # by the later text, then the earlier
    for i, j in pairs[order].tolist():
        if keeper[j] < 0 and keeper[i] < 0:
            keeper[j] = i
    return np.array(keeper, dtype=np.int64)


def _group_pairs(sorted_keys: np.ndarray, order: np.ndarray, cap: int = 32) -> np.ndarray:
    """Pairs of positions (as ``order`` values, smaller first) in runs of equal ``sorted_keys``:
    every pair in a run of up to ``cap``; in a longer run, each one with its ``cap - 1`` next."""
    if len(sorted_keys) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    new = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
    run_id = np.cumsum(new) - 1
    run_start = np.flatnonzero(new)
    run_end = np.r_[run_start[1:], len(sorted_keys)]
    end = run_end[run_id]
    longest = int((run_end - run_start).max())
    out = []
    pos = np.flatnonzero(end - np.arange(len(sorted_keys)) > 1)  # members with someone after them
    for d in range(1, min(longest, cap)):
        pos = pos[pos + d < end[pos]]
        if not len(pos):
            break
        a, b = order[pos], order[pos + d]
        out.append(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)


def _text_sets(sh: _Shingles) -> list[np.ndarray]:
    """Each text's sorted distinct shingle hashes, cut to their top ``64 - log2(texts)`` bits: one
    sort of one key, the text's number above the hash (a batch of a few hundred texts keeps 55
    bits, and two shingles of a pair then collide about once in 10**10 pairs)."""
    shift = np.uint64(64 - max(1, int(sh.count - 1).bit_length()))
    key = _distinct((sh.text.astype(_U64) << shift) | (sh.hashes >> (np.uint64(64) - shift)))
    bounds = np.searchsorted(key >> shift, np.arange(sh.count + 1, dtype=_U64))
    key &= (_U64(1) << shift) - _U64(1)
    return [key[bounds[i] : bounds[i + 1]] for i in range(sh.count)]


def _chunk_jaccard(job: tuple[list[str], np.ndarray, int]) -> np.ndarray:
    texts, pairs, ngram = job
    sets = _text_sets(_shingle_batch(texts, ngram))
    out = np.zeros(len(pairs), dtype=np.float64)
    for row, (a, b) in enumerate(pairs.tolist()):
        sa, sb = sets[a], sets[b]
        if len(sa) and len(sb):
            inter = np.intersect1d(sa, sb, assume_unique=True).size
            out[row] = inter / (len(sa) + len(sb) - inter)
    return out


def _components(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected components of ``n`` nodes; each node's root is the lowest index in its component."""
    parent = np.arange(n, dtype=np.int64)
    if not len(edges):
        return parent
    a, b = edges[:, 0].astype(np.int64), edges[:, 1].astype(np.int64)
    while True:
        pa, pb = parent[a], parent[b]
        low = np.minimum(pa, pb)
        np.minimum.at(parent, pa, low)
        np.minimum.at(parent, pb, low)
        while True:  # pointer jumping: every node straight to its root
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up
        if np.array_equal(parent[a], parent[b]):
            return parent

