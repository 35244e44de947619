"""Near-duplicate detection (chatloom.pipeline.filters.minhash): planted near-duplicates are found, unrelated
texts are not merged, exact duplicates, keepers, determinism, short and empty texts."""

from __future__ import annotations

import random

import numpy as np
import pytest

from chatloom.pipeline.filters.minhash import EMPTY, MinHashDedup, lsh_params, near_duplicates, normalize

DEDUP = MinHashDedup()


@pytest.fixture(scope="module")
def chitchat() -> list[str]:
    """Real conversations (chitchat, two messages or more), as text, no two alike once normalized."""
    from chatloom.sources import Reader, get_source

    source = get_source("chitchat")
    file = source.resolve("package")[0]
    seen, texts = set(), []
    for conv in source.read(file, Reader(str(file))):
        text = "\n".join(m.content for m in conv.messages)
        key = normalize(text)
        if len(conv.messages) >= 2 and key not in seen:
            seen.add(key)
            texts.append(text)
    return texts


def jaccard(a: str, b: str) -> float:
    sa, sb = DEDUP.shingles(a), DEDUP.shingles(b)
    inter = np.intersect1d(sa, sb).size
    return inter / (len(sa) + len(sb) - inter)


def edit(text: str, edits: int, rng: random.Random) -> str:
    """``text`` with ``edits`` of its words replaced by words found nowhere else."""
    words = text.split()
    for k, i in enumerate(rng.sample(range(len(words)), min(edits, len(words)))):
        words[i] = f"zq{rng.randrange(10**9)}x{k}"
    return " ".join(words)


def test_bands_and_rows_find_a_pair_at_the_threshold() -> None:
    assert lsh_params(0.8, 128) == (21, 6) == (DEDUP.bands, DEDUP.rows)
    for threshold, k in [(0.5, 64), (0.8, 128), (0.9, 256), (0.95, 128)]:
        bands, rows = lsh_params(threshold, k)
        assert bands * rows <= k
        assert 1 - (1 - threshold**rows) ** bands >= 0.995
        # one more row per band would miss it more often
        more = rows + 1
        assert 1 - (1 - threshold**more) ** (k // more) < 0.995
    assert (MinHashDedup(bands=16).bands, MinHashDedup(bands=16).rows) == (16, 8)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello, World!  It's 3.14 o'clock", "hello world it s 0 o clock"),
        ("1,000,000 and 1,2,3 and 1..2 and v2.0.1 and 7.", "0 0 and 0 0 and 0 0 and v0 0 and 0"),
        ("Café naïve Ünïcödé — “quoted” ½", "cafe naive unicode quoted ½"),
        ("x\u00a0y\u3000z\tw\x00v\r\nu", "x y z w v u"),
        ("١٢٣ and ３.５ and 4٫5", "0 and 0 and 0"),
        ("", ""),
        ("?!...", ""),
    ],
)
def test_normalize_is_datatrove_simplify_text(text: str, expected: str) -> None:
    assert normalize(text) == expected
    # the fast path (ASCII text, numbers found on bytes) shingles what the reference path does
    assert np.array_equal(DEDUP.shingles(text), DEDUP.shingles(expected))


def test_normalize_equals_datatrove_on_real_text(chitchat: list[str]) -> None:
    text = pytest.importorskip("datatrove.utils.text")
    for t in chitchat[:300] + ["Ünïcödé 1,2.3 x٫5 ＡＢＣ naïve — ok"]:
        assert normalize(t).split() == text.simplify_text(t).split(), t


def test_planted_near_duplicates_are_found(chitchat: list[str]) -> None:
    rng = random.Random(0)
    originals = [t for t in chitchat if len(t.split()) >= 100][:150]
    copies, similarity = [], []
    for t in originals:
        # an edit far from the others changes 5 shingles of about len(words): aim for 0.8 to 0.97
        copy = edit(t, rng.randint(1, max(1, len(t.split()) // 50)), rng)
        copies.append(copy)
        similarity.append(jaccard(t, copy))
    similarity = np.array(similarity)
    assert (similarity >= 0.85).sum() >= 100, "the planted copies should be mostly above 0.85"
    texts = originals + copies
    n = len(originals)
    keepers = near_duplicates(texts)
    planted = np.arange(n) + n
    near = similarity >= 0.8
    assert np.array_equal(keepers[planted[near]], np.arange(n)[near])  # every one found, kept for its source
    assert (keepers[planted[~near]] == -1).all()  # the exact check leaves the others
    assert (keepers[:n] == -1).all()
    # without the texts (the signatures' estimate only) the clear ones are found all the same
    estimate = DEDUP.duplicates(DEDUP.signatures(texts))
    clear = similarity >= 0.9
    assert np.array_equal(estimate[planted[clear]], np.arange(n)[clear])


def test_estimate_tracks_the_true_similarity(chitchat: list[str]) -> None:
    rng = random.Random(1)
    pairs, truth = [], []
    texts = []
    for t in chitchat[:2000]:
        if len(t.split()) >= 150 and len(pairs) < 100:
            copy = edit(t, rng.randint(1, len(t.split()) // 8), rng)
            pairs.append([len(texts), len(texts) + 1])
            texts += [t, copy]
            truth.append(jaccard(t, copy))
    est = DEDUP.similarity(DEDUP.signatures(texts), np.array(pairs))
    error = np.abs(est - np.array(truth))
    assert error.max() < 0.15 and error.mean() < 0.04


def test_unrelated_texts_are_not_merged(chitchat: list[str]) -> None:
    texts = [t for t in chitchat if len(t.split()) >= 20][:1500]
    for keepers in (near_duplicates(texts), DEDUP.duplicates(DEDUP.signatures(texts))):
        for i in np.flatnonzero(keepers >= 0):
            # whatever is dropped is a real near-duplicate (chitchat has some) of what is kept
            assert keepers[keepers[i]] == -1
            assert jaccard(texts[i], texts[keepers[i]]) >= 0.6
    exact = near_duplicates(texts)
    assert all(jaccard(texts[i], texts[exact[i]]) >= 0.8 for i in np.flatnonzero(exact >= 0))


def test_exact_duplicates_whatever_the_case_and_punctuation() -> None:
    texts = [
        "Hello there, how are you doing today?",
        "hello there how are you doing today",
        "something else entirely, said differently here",
        "HELLO THERE!!! How are... you doing today",
        "hello there how are you doing today",
    ]
    assert near_duplicates(texts).tolist() == [-1, 0, -1, 0, 0]
    assert DEDUP.duplicates(DEDUP.signatures(texts)).tolist() == [-1, 0, -1, 0, 0]


def test_a_dropped_text_names_the_lowest_kept_index(chitchat: list[str]) -> None:
    rng = random.Random(2)
    a = next(t for t in chitchat if len(t.split()) >= 200)
    b, c = edit(a, 2, rng), edit(a, 3, rng)
    other = next(t for t in chitchat if len(t.split()) >= 200 and t != a)
    assert min(jaccard(a, b), jaccard(a, c), jaccard(b, c)) >= 0.8
    assert near_duplicates([b, other, a, c]).tolist() == [-1, -1, 0, 0]
    assert near_duplicates([other, c, b, a]).tolist() == [-1, -1, 1, 1]


def test_a_chain_keeps_its_far_end_unless_transitive(chitchat: list[str]) -> None:
    words = next(t for t in chitchat if len(t.split()) >= 120).split()[:120]
    a = " ".join(words)
    b = words[:10] + [f"zz{i}" for i in range(4)] + words[14:]  # 4 words replaced: 8 of 116 shingles
    c = b[:100] + [f"yy{i}" for i in range(4)] + b[104:]  # 4 more, far from the first
    b, c = " ".join(b), " ".join(c)
    assert jaccard(a, b) >= 0.8 and jaccard(b, c) >= 0.8 and jaccard(a, c) < 0.8
    assert near_duplicates([a, b, c]).tolist() == [-1, 0, -1]  # c duplicates nothing kept
    assert near_duplicates([a, b, c], transitive=True).tolist() == [-1, 0, 0]  # one cluster


def test_same_result_whatever_the_batches_workers_and_shards(chitchat: list[str]) -> None:
    rng = random.Random(3)
    texts = chitchat[:300] + [edit(t, 1, rng) for t in chitchat[:100]] + ["", "hi", "Hi!"]
    whole = DEDUP.signatures(texts)
    assert np.array_equal(MinHashDedup(batch_chars=1).signatures(texts), whole)
    assert np.array_equal(MinHashDedup(batch_chars=5000).signatures(texts), whole)
    assert np.array_equal(DEDUP.signatures(texts, workers=2), whole)
    shards = np.concatenate([DEDUP.signatures(texts[:123]), DEDUP.signatures(texts[123:])])
    assert np.array_equal(shards, whole)
    keepers = DEDUP.duplicates(whole, texts=texts)
    assert np.array_equal(near_duplicates(texts, workers=2), keepers)
    near = [i for i in range(100) if jaccard(texts[i], texts[300 + i]) >= 0.8]
    assert len(near) >= 50 and (keepers[300 + np.array(near)] >= 0).all()
    # the seed chooses the hash functions: other values, the same texts found
    other = MinHashDedup(seed=7)
    assert not np.array_equal(other.signatures(texts)["minhash"], whole["minhash"])
    assert np.array_equal(other.signatures(texts)["digest"], whole["digest"])
    assert np.array_equal(other.duplicates(other.signatures(texts), texts=texts), keepers)


def test_texts_shorter_than_a_shingle_are_one_shingle() -> None:
    assert len(DEDUP.shingles("a b c")) == 1
    assert len(DEDUP.shingles("a b c d e f")) == 2
    texts = ["hi there", "Hi, there!", "hi where", "ok", "ok ok", "OK."]
    assert near_duplicates(texts).tolist() == [-1, 0, -1, -1, -1, 3]
    assert near_duplicates(["one two three four five six seven"] * 2, ngram=10).tolist() == [-1, 0]


def test_empty_texts_are_nobodys_duplicate() -> None:
    texts = ["", "", "!!!", "   \n ", "hello there friend", "", "hello there friend"]
    sigs = DEDUP.signatures(texts)
    assert (sigs["minhash"][[0, 1, 2, 3, 5]] == EMPTY).all()
    assert (sigs["digest"][[0, 1, 2, 3, 5]] == 0).all()
    assert near_duplicates(texts).tolist() == [-1, -1, -1, -1, -1, -1, 4]
    assert near_duplicates([]).tolist() == []
    assert DEDUP.signatures([]).shape == (0,)


def test_bare_signature_arrays_are_accepted() -> None:
    texts = ["the quick brown fox jumps over the lazy dog", "The quick brown fox jumps over the lazy dog!", ""]
    bare = DEDUP.signatures(texts)["minhash"]
    assert DEDUP.duplicates(bare).tolist() == [-1, 0, -1]
    with pytest.raises(ValueError, match=r"signatures must be \[n, 128\]"):
        DEDUP.duplicates(bare[:, :64])


def test_words_longer_than_the_hash_period_and_odd_characters() -> None:
    long = "word " + "a" * 70_000 + " tail end of it here"
    for pad in (0, 65_530, 131_070):  # the long word across 65,536-byte boundaries of a batch
        sigs = DEDUP.signatures(["x" * pad, long])
        assert np.array_equal(sigs[1], DEDUP.signatures([long])[0])
    weird = ["\ud800 lone surrogate here and there", "emoji 🙂🙂 text 🙂 with more words", "\x00\x01 nul and controls ok fine"]
    assert near_duplicates(weird + weird).tolist() == [-1, -1, -1, 0, 1, 2]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"threshold": 0}, "threshold must be in"),
        ({"ngram": 0}, "ngram must be at least 1"),
        ({"permutations": 1}, "permutations must be between"),
        ({"bands": 20, "rows": 8}, "must be at most permutations"),
    ],
)
def test_bad_parameters_say_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MinHashDedup(**kwargs)
