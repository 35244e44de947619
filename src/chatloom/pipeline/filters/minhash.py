"""Near-duplicate detection: MinHash signatures and LSH banding, vectorized with numpy.

    from chatloom.pipeline.filters.minhash import MinHashDedup, near_duplicates

    keepers = near_duplicates(texts, threshold=0.8, ngram=5)  # keepers[i]: the kept text i repeats, or -1

    dedup = MinHashDedup(threshold=0.8, ngram=5, permutations=128, seed=0)
    sigs = np.concatenate([dedup.signatures(shard) for shard in shards])  # across shards, in order
    keepers = dedup.duplicates(sigs, texts=all_texts)  # with the texts: candidates checked exactly

How it works, and why it is fast without a compiled extension:

1. **Shingles** (``shingles.py``): each text is normalized as datatrove's ``simplify_text`` does,
   cut into words and ``ngram``-word shingles, and each shingle hashed to a stable 64-bit value,
   with numpy: nothing in Python runs per word.
2. **One permutation, ``permutations`` bins** (Li, Owen & Zhang, 2012): each shingle hash is mixed
   with the seed once; its high half picks one of ``permutations`` bins, its low 32 bits are its
   value, and a text's signature is the least value in each bin. An empty bin takes the value of
   the first non-empty bin in a probe order fixed by the seed ("optimal densification",
   Shrivastava, 2017). Two texts then agree in a bin with probability equal to their Jaccard
   similarity, as with ``permutations`` independent permutations, for one hash per shingle
   instead of ``permutations``.
3. **LSH banding**: the signature is cut into ``bands`` bands of ``rows`` values; texts that agree
   on a whole band are candidates. :func:`lsh_params` takes the most rows per band for which a
   pair at exactly ``threshold`` still becomes a candidate with probability ≥ 0.995, so the
   S-curve's midpoint ``(1/bands)**(1/rows)`` sits below ``threshold`` (21 × 6: 0.60, for 0.8 and
   128): the curve gathers candidates, the verification decides.
4. **Verification**: a pair is a near-duplicate when its Jaccard similarity is at least
   ``threshold``: with the texts, the exact Jaccard of the two shingle sets (recomputed for the
   candidates whose estimate is within 5 standard errors of the threshold, in batches), without
   them the fraction of equal signature values. Texts with the same shingles (one 64-bit digest)
   are one text for the banding.
5. **Keepers**: texts are taken in order; a text that near-duplicates an earlier kept text is
   dropped, and names the lowest such. Everything dropped has its near-duplicate in what is kept,
   and a chain (a ~ b ~ c, but a and c apart) keeps its far end; ``transitive=True`` drops whole
   connected clusters but their first, as datatrove does. Either way the result depends on the
   input order only, never on batch sizes, shards or workers.

A text with no words after normalization (empty, or only punctuation) has no shingles: it is
nobody's duplicate and nothing duplicates it.

This file is the engine (signatures, banding, verification, keepers); the shingling
it hashes is ``shingles.py``; the recipe's step that calls it is ``NearDedup`` in ``dedup.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ...parallel import ordered_map, process_pool
from .shingles import U64, Shingles, constants, mix64, normalize, shingle_batch

__all__ = ["EMPTY", "MinHashDedup", "lsh_params", "near_duplicates", "normalize", "signature_dtype"]

EMPTY = np.uint32(0xFFFFFFFF)  # the value of a bin no shingle fell into
_MASK32 = U64(0xFFFFFFFF)


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
        keys = constants(self.seed * 0x100000001B3 + 0x5EED_0003, k * k).reshape(k, k)
        probes = np.argsort(keys, axis=1, kind="stable").astype(np.int16)
        ranks = np.empty_like(probes)
        np.put_along_axis(ranks, probes.astype(np.int64), np.arange(k, dtype=np.int16)[None, :], axis=1)
        object.__setattr__(self, "_probes", probes)
        object.__setattr__(self, "_ranks", ranks)

    @property
    def _seed_key(self) -> np.uint64:
        return constants(self.seed * 0x100000001B3 + 0x5EED_0004, 1)[0]

    # -- signatures ------------------------------------------------------------------------------

    def shingles(self, text: str) -> np.ndarray:
        """The sorted distinct shingle hashes (uint64) of one text."""
        return _distinct(shingle_batch([text], self.ngram).hashes)

    def _signature_batch(self, texts: Sequence[str]) -> np.ndarray:
        k = self.permutations
        sh = shingle_batch(texts, self.ngram)
        out = np.zeros(sh.count, dtype=signature_dtype(k))
        out["digest"] = sh.digests
        h = mix64(sh.hashes ^ self._seed_key)
        bins = ((h >> U64(32)) * U64(k)) >> U64(32)  # the high half picks the bin
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
        with process_pool(workers) as pool:
            parts = list(ordered_map(self._signature_batch, self._batches(texts), pool))
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
        weights = constants(0x5EED_0005, self.rows)
        for band in range(self.bands):
            cols = mh[:, band * self.rows : (band + 1) * self.rows].astype(U64)
            key = mix64((cols * weights).sum(axis=1, dtype=U64))
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
        with process_pool(workers if len(chunks) > 1 else 1) as pool:
            for (rows, _, _), result in zip(chunks, ordered_map(_chunk_jaccard, jobs, pool)):
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
    out["digest"] = np.where((signatures != EMPTY).any(axis=1), np.arange(1, len(signatures) + 1, dtype=U64), 0)
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


def _text_sets(sh: Shingles) -> list[np.ndarray]:
    """Each text's sorted distinct shingle hashes, cut to their top ``64 - log2(texts)`` bits: one
    sort of one key, the text's number above the hash (a batch of a few hundred texts keeps 55
    bits, and two shingles of a pair then collide about once in 10**10 pairs)."""
    shift = np.uint64(64 - max(1, int(sh.count - 1).bit_length()))
    key = _distinct((sh.text.astype(U64) << shift) | (sh.hashes >> (np.uint64(64) - shift)))
    bounds = np.searchsorted(key >> shift, np.arange(sh.count + 1, dtype=U64))
    key &= (U64(1) << shift) - U64(1)
    return [key[bounds[i] : bounds[i + 1]] for i in range(sh.count)]


def _chunk_jaccard(job: tuple[list[str], np.ndarray, int]) -> np.ndarray:
    texts, pairs, ngram = job
    sets = _text_sets(shingle_batch(texts, ngram))
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


