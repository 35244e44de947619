"""Benchmark: near-duplicate dedup of >= 100,000 chitchat conversations with planted duplicates:
chatloom's MinHash + LSH (``chatloom.pipeline.filters.minhash.near_duplicates``, the engine of the build's
``near_dedup`` step) against datatrove's MinHash dedup (PyPI ``datatrove``), in the same run, on the
same texts, with the same word 5-grams, the same normalization and 2 worker processes each.

The texts (seeded, so every run builds the same ones):

- the chitchat conversations with at least two messages (4,018; a conversation's text is its
  messages joined by newlines). The 3,150 single-message ones are left out: 493 of them are the
  same "hello", a job for the exact dedup step, and most are shorter than a 5-gram, which
  datatrove does not shingle at all;
- "remixes" up to 70% of ``--n``: conversations of chitchat messages drawn at random, as many as
  a real conversation has, so that most texts are unrelated, as in a real dataset;
- 30% planted copies of random texts from the two groups above, with random word edits (70%
  replaced by a word drawn from the corpus, 15% deleted, 15% inserted) sized for a Jaccard
  similarity of 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9 or 0.95 on the 5-gram sets, or exact copies;

then shuffled. Ground truth: every pair whose true Jaccard similarity is at least 0.8, planted or
natural, found exhaustively (a prefix-filtered all-pairs join on the exact shingle sets, computed
here independently of chatloom's hashing: words to ids by a dict, 5-grams of ids). A tool's
duplicates are judged as clusters: recall is the share of ground-truth pairs it puts in one
cluster; precision is the share of its removals (a removed text, paired with the text its
cluster keeps) whose true similarity is at least 0.8.

Both tools run end to end, JSONL in (the texts split into 2 files) to JSONL out (the texts kept):

- chatloom: read, ``near_duplicates(texts, threshold=0.8, ngram=5, permutations=128, workers=2)``,
  write;
- datatrove: its four stages (MinhashDedupSignature → MinhashDedupBuckets → MinhashDedupCluster →
  MinhashDedupFilter + JsonlWriter) with ``LocalPipelineExecutor``, 2 tasks and 2 workers (the
  buckets stage: one task per bucket, 2 at a time), its default MinhashConfig (5-grams, 14 buckets
  × 8 hashes: the S-curve it documents for this use, 0.92 inclusion at 0.8) and, for the words, a
  whitespace tokenizer (datatrove's English default needs spaCy; on its simplified text, which has
  no punctuation left, splitting on whitespace gives the same words as chatloom's). datatrove
  0.10.1 hands ``str`` to xxhash, which xxhash 4 refuses, so its hash function is given the same
  xxh64 of the UTF-8 bytes, encoded first.

Each run is timed in a fresh child process (run_step); memory is the peak of the proportional set
size (PSS) summed over the step's process tree, sampled every 0.1 s.

Last, the whole demo recipe (examples/demo.yaml, over the 7,168 chitchat chats imported into a
fresh dataset) is built with ``--workers 1`` and ``--workers 2``, timed end to end; the outputs
must be byte-identical, and the speed-up is printed.

    .venv/bin/pip install -r bench/requirements.txt   # datatrove (``make bench`` does it)
    .venv/bin/python bench/dedup.py                   # 100,000 conversations
    .venv/bin/python bench/dedup.py --n 20000         # a quick run
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import numpy as np  # noqa: E402
from common import run_step, step_main  # noqa: E402

OUT = HERE / "out"
NGRAM, THRESHOLD, PERMUTATIONS, WORKERS, PARTS = 5, 0.8, 128, 2, 2
LEVELS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
BANDS = ((0.8, 0.85), (0.85, 0.9), (0.9, 0.95), (0.95, 1.0), (1.0, 1.01))


# -- the texts ---------------------------------------------------------------------------------------


def build_corpus(n: int, seed: int = 0) -> tuple[list[str], list[tuple[int, int, float]]]:
    """``n`` texts (see the module's docstring) and the planted copies as (copy, source, level)."""
    from chatloom.sources import Reader, get_source

    source = get_source("chitchat")
    file = source.resolve("package")[0]
    convs = [c for c in source.read(file, Reader(str(file))) if len(c.messages) >= 2]
    originals = ["\n".join(m.content for m in c.messages) for c in convs]
    messages = [m.content for c in convs for m in c.messages]
    lengths = [len(c.messages) for c in convs]
    vocabulary = [tok for m in messages for tok in m.split()]
    rng = random.Random(seed)
    n_planted = n * 3 // 10
    n_base = n - n_planted
    texts = originals[:n_base]
    while len(texts) < n_base:
        texts.append("\n".join(rng.choice(messages) for _ in range(rng.choice(lengths))))
    planted = []
    for _ in range(n_planted):
        src, level = rng.randrange(n_base), rng.choice(LEVELS)
        planted.append((len(texts), src, level))
        texts.append(plant(texts[src], level, rng, vocabulary))
    order = list(range(n))
    rng.shuffle(order)  # position -> text; copies may come before their source
    where = {old: new for new, old in enumerate(order)}
    return [texts[i] for i in order], [(where[c], where[s], lvl) for c, s, lvl in planted]


def plant(text: str, level: float, rng: random.Random, vocabulary: list[str]) -> str:
    """A copy of ``text`` with random word edits, about enough for a Jaccard similarity of
    ``level`` on the 5-gram sets (each edit far from the others changes ``NGRAM`` shingles)."""
    if level >= 1:
        return text
    from chatloom.pipeline.filters.minhash import normalize

    parts = re.split(r"(\s+)", text)  # words at even positions, the whitespace between at odd
    shingles = max(len(normalize(text).split()) - NGRAM + 1, 1)
    changed = shingles * (1 - level) / (1 + level)  # (S - d) / (S + d) = level
    words = [i for i in range(0, len(parts), 2) if parts[i]]
    for _ in range(max(1, round(changed / NGRAM))):
        i, op = rng.choice(words), rng.random()
        if op < 0.7:
            parts[i] = rng.choice(vocabulary)
        elif op < 0.85:
            parts[i] = ""
        else:
            parts[i] = f"{parts[i]} {rng.choice(vocabulary)}"
    return "".join(parts)


def write_parts(texts: list[str], folder: Path) -> None:
    import orjson

    folder.mkdir(parents=True)
    size = math.ceil(len(texts) / PARTS)
    for p in range(PARTS):
        with open(folder / f"part_{p:05d}.jsonl", "wb") as f:
            for i in range(p * size, min((p + 1) * size, len(texts))):
                f.write(orjson.dumps({"id": str(i), "text": texts[i]}) + b"\n")


def read_parts(folder: Path) -> list[str]:
    import orjson

    texts = []
    for path in sorted(folder.glob("part_*.jsonl")):
        with open(path, "rb") as f:
            texts.extend(orjson.loads(line)["text"] for line in f)
    return texts


# -- ground truth: exact shingle sets, and an exhaustive join ------------------------------------


def _mix64(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    for shift, mult in ((33, 0xFF51AFD7ED558CCD), (33, 0xC4CEB9FE1A85EC53)):  # murmur3's fmix64
        x ^= x >> np.uint64(shift)
        x *= np.uint64(mult)
    return x ^ (x >> np.uint64(33))


def shingle_sets(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each text's distinct 5-gram ids (sorted, 44 bits), as CSR: ``values[offsets[i]:offsets[i+1]]``.
    Words are the ones datatrove's simplify_text leaves (chatloom's ``normalize``, checked against it
    on a sample), numbered exactly by a dict; a 5-gram id is a hash of its 5 word numbers; a text of
    fewer than 5 words has one shingle, all its words."""
    from chatloom.pipeline.filters.minhash import normalize

    vocab: dict[str, int] = {}
    ids: list[int] = []
    counts = np.zeros(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        words = normalize(text).split()
        counts[i] = len(words)
        ids.extend([vocab.setdefault(w, len(vocab)) for w in words])
    word = np.asarray(ids, dtype=np.uint64) + np.uint64(1)
    ends = np.cumsum(counts)
    starts = ends - counts
    weights = _mix64(np.arange(1, NGRAM + 1, dtype=np.uint64)) | np.uint64(1)
    full = max(len(word) - NGRAM + 1, 0)
    g = np.zeros(full, dtype=np.uint64)
    for j in range(NGRAM):
        g += word[j : j + full] * weights[j]
    window_text = np.repeat(np.arange(len(texts)), counts)[:full]
    ok = np.arange(full) + NGRAM <= ends[window_text]
    values, owner = g[ok], window_text[ok]
    short = np.flatnonzero((counts > 0) & (counts < NGRAM))
    if len(short):
        gs = np.full(len(short), np.uint64(0xABCDEF))
        for j in range(NGRAM - 1):
            take = j < counts[short]
            gs[take] += word[starts[short][take] + j] * weights[j]
        gs += counts[short].astype(np.uint64)
        values, owner = np.concatenate([values, gs]), np.concatenate([owner, short])
    key = (owner.astype(np.uint64) << np.uint64(44)) | (_mix64(values) >> np.uint64(20))
    key = np.sort(key)
    key = key[np.r_[True, key[1:] != key[:-1]]]
    owner = (key >> np.uint64(44)).astype(np.int64)
    offsets = np.searchsorted(owner, np.arange(len(texts) + 1))
    return offsets, key & np.uint64((1 << 44) - 1)


def pair_jaccard(offsets: np.ndarray, values: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    out = np.zeros(len(pairs))
    for k, (i, j) in enumerate(pairs):
        a, b = values[offsets[i] : offsets[i + 1]], values[offsets[j] : offsets[j + 1]]
        if len(a) and len(b):
            inter = np.intersect1d(a, b, assume_unique=True).size
            out[k] = inter / (len(a) + len(b) - inter)
    return out


def similar_pairs(offsets: np.ndarray, values: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``i < j`` with Jaccard >= threshold, and its Jaccard: a prefix-filtered join
    (two sets that similar share a token among the first ``|S| - ceil(threshold |S|) + 1`` of each,
    in one global order; rarest first keeps the candidates few), then exact verification."""
    n = len(offsets) - 1
    sizes = np.diff(offsets)
    owner = np.repeat(np.arange(n), sizes)
    # each token's document frequency (np.unique by hand: numpy 2.3+'s hashes, far slower)
    order = np.argsort(values)
    v = values[order]
    new = np.r_[True, v[1:] != v[:-1]]
    token = np.empty(len(v), dtype=np.int64)
    token[order] = np.cumsum(new) - 1
    distinct = v[new]
    df = np.diff(np.r_[np.flatnonzero(new), len(v)])
    rank = np.empty(len(distinct), dtype=np.int64)
    rank[np.lexsort((distinct, df))] = np.arange(len(distinct))
    key = np.sort((owner << 40) | rank[token])
    owner, r = key >> 40, key & ((1 << 40) - 1)
    prefix = sizes - np.ceil(threshold * sizes - 1e-9).astype(np.int64) + 1
    keep = np.arange(len(key)) - offsets[owner] < prefix[owner]
    pr, pt = r[keep], owner[keep]
    order = np.lexsort((pt, pr))
    pr, pt = pr[order], pt[order]
    start = np.flatnonzero(np.r_[True, pr[1:] != pr[:-1]])
    end = np.r_[start[1:], len(pr)]
    group_end = np.repeat(end, end - start)
    pos, found, d = np.arange(len(pr)), [], 1
    while len(pos := pos[pos + d < group_end[pos]]):  # every pair in a group: d apart, for each d
        found.append(pt[pos] * n + pt[pos + d])
        d += 1
    code = np.sort(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
    code = code[np.r_[True, code[1:] != code[:-1]]] if len(code) else code
    pairs = np.stack([code // n, code % n], axis=1)
    small, large = np.minimum(sizes[pairs[:, 0]], sizes[pairs[:, 1]]), np.maximum(sizes[pairs[:, 0]], sizes[pairs[:, 1]])
    pairs = pairs[small >= threshold * large - 1e-9]
    jac = pair_jaccard(offsets, values, pairs)
    return pairs[jac >= threshold], jac[jac >= threshold]


# -- memory: PSS of a process tree, sampled -------------------------------------------------------


def tree_pss_mib() -> float:
    """PSS summed over this process and its descendants: pages shared after a fork count once,
    split between the processes that share them (RSS would count them in each)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        pid = frontier.pop()
        children = [c for c, p in parent.items() if p == pid]
        tree.update(children)
        frontier += children
    kib = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                kib += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):
            pass
    return kib / 1024


@contextmanager
def peak_pss(result: dict) -> Iterator[None]:
    """Sets ``result["pss_mib"]`` to the peak of :func:`tree_pss_mib`, sampled every 0.1 s."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            result["pss_mib"] = max(result.get("pss_mib", 0.0), tree_pss_mib())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


# -- the steps, each run in its own process --------------------------------------------------------


def step_chatloom(data: str, out: str) -> dict:
    import orjson

    from chatloom.pipeline.filters.minhash import near_duplicates

    result: dict = {}
    with peak_pss(result):
        t = time.perf_counter()
        texts = read_parts(Path(data))
        keepers = near_duplicates(texts, threshold=THRESHOLD, ngram=NGRAM, permutations=PERMUTATIONS, workers=WORKERS)
        Path(out).mkdir()
        with open(Path(out) / "kept.jsonl", "wb") as f:
            for i in np.flatnonzero(keepers < 0):
                f.write(orjson.dumps({"id": str(i), "text": texts[i]}) + b"\n")
        result["seconds"] = time.perf_counter() - t
    np.save(Path(out) / "keeper.npy", np.where(keepers >= 0, keepers, np.arange(len(keepers))))
    return result | {"kept": int((keepers < 0).sum())}


def _xxh64(text: str) -> int:
    import xxhash

    return xxhash.xxh64_intdigest(text.encode("utf-8"))


def _whitespace_tokenizer():
    from datatrove.utils.word_tokenizers import WordTokenizer

    class Whitespace(WordTokenizer):
        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    return Whitespace()


def step_datatrove(data: str, work: str) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from loguru import logger

    logger.remove()  # its per-document progress would fill the pipe; the logs go to work/logs
    w = Path(work)
    config = MinhashConfig(n_grams=NGRAM)
    result: dict = {}
    with peak_pss(result):
        t = time.perf_counter()
        signature = MinhashDedupSignature(output_folder=str(w / "signatures"), config=config, language=_whitespace_tokenizer())
        signature._hash_func = _xxh64
        stages = [
            LocalPipelineExecutor([JsonlReader(data), signature], tasks=PARTS, workers=WORKERS, logging_dir=str(w / "logs/1")),
            LocalPipelineExecutor(
                [MinhashDedupBuckets(input_folder=str(w / "signatures"), output_folder=str(w / "buckets"), config=config)],
                tasks=config.num_buckets,
                workers=WORKERS,
                logging_dir=str(w / "logs/2"),
            ),
            LocalPipelineExecutor(
                [MinhashDedupCluster(input_folder=str(w / "buckets"), output_folder=str(w / "remove"), config=config, save_cluster_id=True)],
                tasks=1,
                logging_dir=str(w / "logs/3"),
            ),
            LocalPipelineExecutor(
                [JsonlReader(data), MinhashDedupFilter(input_folder=str(w / "remove")), JsonlWriter(str(w / "kept"), compression=None)],
                tasks=PARTS,
                workers=WORKERS,
                logging_dir=str(w / "logs/4"),
            ),
        ]
        for stage in stages:
            stage.run()
        result["seconds"] = time.perf_counter() - t
    # clusters, as global indices: rank r read part r, documents in file order
    sizes = [sum(1 for _ in open(p, "rb")) for p in sorted(Path(data).glob("part_*.jsonl"))]
    base = np.cumsum([0, *sizes])
    n = int(base[-1])
    cluster = np.arange(n) + n  # a text in no cluster is alone in its own
    removed = np.zeros(n, dtype=bool)
    for rank in range(PARTS):
        clusters = w / "remove" / f"{rank:06d}.clusters"
        if clusters.exists():
            doc_cluster = np.frombuffer(clusters.read_bytes(), dtype="<u4").reshape(-1, 2)
            cluster[base[rank] + doc_cluster[:, 0].astype(np.int64)] = doc_cluster[:, 1]
        remove = w / "remove" / f"{rank:06d}.remove"
        if remove.exists():
            removed[base[rank] + np.frombuffer(remove.read_bytes(), dtype="<u4").astype(np.int64)] = True
    kept = sum(sum(1 for _ in open(p, "rb")) for p in (w / "kept").glob("*.jsonl"))
    assert kept == n - removed.sum(), (kept, n, removed.sum())
    # the cluster's kept text stands for the cluster, as chatloom's keeper does
    keeper = {int(c): i for i, c in enumerate(cluster) if not removed[i]}
    np.save(w / "keeper.npy", np.array([keeper[int(c)] for c in cluster]))
    return result | {"kept": kept}


STEPS = {"chatloom": step_chatloom, "datatrove": step_datatrove}


# -- evaluation ------------------------------------------------------------------------------------


def evaluate(keeper: np.ndarray, truth: np.ndarray, truth_j: np.ndarray, offsets: np.ndarray, values: np.ndarray) -> dict:
    """``keeper[i]``: the text kept for text ``i`` (``i`` itself when kept). Recall: the share of
    ground-truth pairs of which at least one text was removed (both left in: a miss), overall and
    by similarity band. Precision: the share of removed texts that are near-duplicates of the
    text kept for them."""
    removed = keeper != np.arange(len(keeper))
    found = removed[truth[:, 0]] | removed[truth[:, 1]]
    reported = np.stack([np.flatnonzero(removed), keeper[removed]], axis=1)
    reported_j = pair_jaccard(offsets, values, reported)
    bands = {f"{lo:.2f}-{min(hi, 1):.2f}": (truth_j >= lo) & (truth_j < hi) for lo, hi in BANDS}
    return {
        "recall": float(found.mean()) if len(found) else 1.0,
        "recall_by_band": {band: float(found[m].mean()) for band, m in bands.items() if m.any()},
        "precision": float((reported_j >= THRESHOLD).mean()) if len(reported) else 1.0,
        "removed": len(reported),
        "false_removals_by_similarity": np.histogram(reported_j[reported_j < THRESHOLD], bins=[0, 0.5, 0.6, 0.7, 0.75, 0.8])[0].tolist(),
    }


def demo_speedup() -> dict:
    """The whole demo recipe (examples/demo.yaml: turns, exact and near dedup, PII, truncation,
    split) on the demo data, with 1 worker and with 2; the outputs must be the same."""
    import subprocess

    chatloom = str(Path(sys.executable).with_name("chatloom"))
    with tempfile.TemporaryDirectory(prefix="chatloom-bench-demo-") as tmp:
        tmp = Path(tmp)
        subprocess.run([chatloom, "import", "-d", str(tmp / "chitchat.db"), "-f", "chitchat", "package"], check=True, capture_output=True)
        recipe = tmp / "demo.yaml"
        recipe.write_text((HERE.parent / "examples" / "demo.yaml").read_text().replace("demo-output/", f"{tmp}/"))
        seconds = {}
        for workers in (1, 2):
            t = time.perf_counter()
            subprocess.run([chatloom, "build", str(recipe), "-o", str(tmp / f"w{workers}"), "--workers", str(workers)], check=True, capture_output=True)
            seconds[workers] = time.perf_counter() - t
        for name in ("data/train.jsonl", "data/val.jsonl", "rejected.jsonl"):
            assert (tmp / "w1" / name).read_bytes() == (tmp / "w2" / name).read_bytes(), f"{name} differs between 1 and 2 workers"
    speedup = seconds[1] / seconds[2]
    print(f"\ndemo recipe (examples/demo.yaml on the 7,168 demo chats): 1 worker {seconds[1]:.1f}s, 2 workers {seconds[2]:.1f}s "
          f"→ speed-up {speedup:.2f}× (same outputs)")
    return {"seconds_1_worker": seconds[1], "seconds_2_workers": seconds[2], "speedup": speedup}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="conversations (default 100,000)")
    ap.add_argument("--seed", type=int, default=0, help="for the texts and the edits planted in them")
    opts = ap.parse_args()
    from importlib.metadata import version

    from datatrove.utils.text import simplify_text

    from chatloom.pipeline.filters.minhash import normalize

    with tempfile.TemporaryDirectory(prefix="chatloom-bench-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        texts, planted = build_corpus(opts.n, opts.seed)
        write_parts(texts, tmp / "data")
        words = sum(len(x.split()) for x in texts)
        print(f"input: {len(texts):,} conversations, {words:,} words, {len(planted):,} planted copies (built in {time.perf_counter() - t:.1f}s)", file=sys.stderr)
        sample = random.Random(opts.seed).sample(texts, min(2000, len(texts)))
        assert all(normalize(x).split() == simplify_text(x).split() for x in sample), "normalization differs from datatrove's"

        t = time.perf_counter()
        offsets, values = shingle_sets(texts)
        truth, truth_j = similar_pairs(offsets, values, THRESHOLD)
        print(f"ground truth: {len(truth):,} pairs with Jaccard >= {THRESHOLD} ({time.perf_counter() - t:.1f}s)", file=sys.stderr)

        ours = run_step(__file__, "chatloom", str(tmp / "data"), str(tmp / "chatloom"))
        theirs = run_step(__file__, "datatrove", str(tmp / "data"), str(tmp / "datatrove"))
        ours.update(evaluate(np.load(tmp / "chatloom" / "keeper.npy"), truth, truth_j, offsets, values))
        theirs.update(evaluate(np.load(tmp / "datatrove" / "keeper.npy"), truth, truth_j, offsets, values))

    planted_j = pair_jaccard(offsets, values, np.array([(c, s) for c, s, _ in planted]).reshape(-1, 2))
    print(f"\nplanted copies by true Jaccard: {np.histogram(planted_j, bins=[0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1, 1.01])[0].tolist()}")
    print("  (bins 0-0.5-0.6-0.7-0.75-0.8-0.85-0.9-0.95-1-exact)")
    rows = [("chatloom (numpy MinHash, exact check)", ours), (f"datatrove {version('datatrove')} (14 × 8 hashes)", theirs)]
    print(f"\n{'tool':<40}{'seconds':>9}{'recall@J≥0.8':>14}{'precision':>11}{'removed':>9}{'peak PSS':>11}")
    for name, r in rows:
        print(f"{name:<40}{r['seconds']:>9.2f}{r['recall']:>14.4f}{r['precision']:>11.4f}{r['removed']:>9,}{r['pss_mib']:>8.0f} MiB")
    print("\nrecall by true Jaccard:")
    for name, r in rows:
        print(f"  {name:<40}" + "  ".join(f"{band}: {v:.4f}" for band, v in r["recall_by_band"].items()))
    print("removals of a text below 0.8 similarity, by similarity (0-0.5-0.6-0.7-0.75-0.8):")
    for name, r in rows:
        print(f"  {name:<40}{r['false_removals_by_similarity']}")
    speed = theirs["seconds"] / ours["seconds"]
    print(f"\nchatloom is {speed:.1f}× faster than datatrove (target ≥ 3×)")
    demo = demo_speedup()
    result = {
        "benchmark": "dedup",
        "conversations": len(texts),
        "words": words,
        "planted": len(planted),
        "ground_truth_pairs": len(truth),
        "chatloom": ours,
        "datatrove": theirs,
        "demo": demo,
        "summary": [
            {"measure": "speed vs datatrove MinHash dedup (×)", "ratio": speed, "target": 3.0},
            {"measure": "recall at Jaccard ≥ 0.8", "ratio": ours["recall"], "target": 0.95},
            {"measure": "precision", "ratio": ours["precision"], "target": 0.98},
            {"measure": "demo recipe, 2 workers vs 1 (speed-up)", "ratio": demo["speedup"], "target": 1.0},
        ],
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "dedup.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--step"]:  # a measured step, in the child process run_step starts
        step_main(STEPS, sys.argv[2], sys.argv[3:])
    else:
        main()
