"""tiktoken as the encoder of a Hugging Face byte-level BPE folder (GPT-2's kind: SmolLM2, GPT-2,
StarCoder, …), where it gives the same ids as ``tokenizers``, at 2–3× its speed a core.

The two libraries run BPE differently. ``tokenizers`` merges, at each step, the adjacent pair
that comes first in ``merges``. tiktoken merges the adjacent pair whose concatenation has the
lowest rank (here: its id). They agree when the vocabulary is what BPE training makes, which
``byte_level_bpe`` checks on the folder's own files before it offers an encoding:

- every token longer than one symbol is made by exactly one merge, and ids grow in merge order
  (so a token's rank is its merge's place); and BPE makes each token of its own bytes (so
  wherever two neighbours make a token, that token's own merge does: a token appended with a
  merge at the end of the list may not be, and tiktoken would make it where ``tokenizers`` does
  not);
- no normalizer; the pre-tokenizer is ``ByteLevel`` with GPT-2's pattern and no prefix space;
  no dropout, no subword prefix or word suffix, no byte fallback, no truncation or padding;
- every added token is special: chatloom encodes those as text (``encode_special_tokens``), as
  tiktoken's ``encode_ordinary`` does; a folder with added tokens that are not special (Qwen's
  ``<tool_call>``, matched whole inside the text) stays on ``tokenizers``, as does one where a
  merge makes an added token.

Some vocabularies lack a few byte symbols (SmolLM2 lacks 21, control bytes and bytes UTF-8 never
uses); ``tokenizers`` drops such a byte. Each gets a rank past the vocabulary here, so that a
text that needs one is seen (an id at or past ``missing_from``) and encoded by ``tokenizers``.

``tests/tokens/test_bytebpe.py`` holds both to the same ids on chitchat, other projects'
exports in several languages and scripts, and generated text (whitespace runs, digits,
contractions, emoji sequences, combining marks, control characters).
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any, NamedTuple

import orjson

#: GPT-2's pre-tokenization, what ``ByteLevel(use_regex=True)`` splits with (tiktoken's r50k_base)
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@functools.cache
def _byte_symbols() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable symbol that stands for each byte → the byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out = {chr(b): b for b in printable}
    for b in range(256):  # the others, in order, from U+0100 on
        if chr(b) not in out:
            out[chr(256 + len(out) - len(printable))] = b
    return out


class ByteLevelBPE:
    """A tiktoken ``Encoding`` that gives a folder's ids; ids at or past ``missing_from`` stand for
    bytes the vocabulary lacks (the text is then the folder's own tokenizer's to encode)."""

    def __init__(self, encoding: Any, missing_from: int):
        self.encoding = encoding
        self.missing_from = missing_from
        self.core = encoding._core_bpe


#: what a folder's own tokenizer says of itself that chatloom reads: enough to encode it with
#: tiktoken without loading ``tokenizers`` (0.2 s of SmolLM2's), once a verdict is known
class Folder(NamedTuple):
    vocab_size: int  # with the added tokens
    special_tokens: dict[str, int]  # the added tokens marked special
    added_tokens: tuple[str, ...]  # the others


Verdict = tuple[dict[bytes, int], int] | None  # (ranks, missing_from), or None where tiktoken cannot stand in

#: verdicts and folders by the digest of a tokenizer's JSON. A process that checked a folder hands
#: them to its workers (``adopt``), which then build the encoding without checking it again (0.35 s
#: of SmolLM2's each).
_verdicts: dict[str, tuple[Verdict, Folder | None]] = {}


def verdicts() -> dict[str, tuple[Verdict, Folder | None]]:
    return dict(_verdicts)


def adopt(known: dict[str, tuple[Verdict, Folder | None]]) -> None:
    _verdicts.update(known)


#: the version of the verdicts stored on disk, which are keyed by it (bump it when the checks or
#: what is stored change, so that nothing of older ones is read back)
VERDICT_VERSION = 2


def known(key: str) -> tuple[Verdict, Folder | None] | None:
    """The verdict on a tokenizer file (``key``: the sha256 of its bytes) and what it says of
    itself, where this process or chatloom's cache holds them; else None. ``tokenizers`` is not
    loaded for this (only its version is read: the key of what is stored)."""
    if key not in _verdicts:
        found = _read(key)
        if found is None:
            return None
        _verdicts[key] = found
    return _verdicts[key]


def judge(key: str, tokenizer: Any, folder: Folder | None = None) -> tuple[Verdict, Folder | None]:
    """The verdict on ``tokenizer`` (a ``tokenizers.Tokenizer``; ``key`` names it: the sha256 of
    its file, or of its JSON) as ``known`` finds it; else checked, and stored with ``folder``."""
    found = known(key)
    if found is None or (found[1] is None and folder is not None):
        found = _verdicts[key] = (found[0] if found is not None else _checked(orjson.loads(tokenizer.to_str()), tokenizer), folder)
        _write(key, found)
    return found


def encoding(verdict: Verdict) -> ByteLevelBPE | None:
    if verdict is None:
        return None
    import tiktoken

    ranks, missing_from = verdict
    encoding = tiktoken.Encoding(name="hf-byte-level-bpe", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={})
    return ByteLevelBPE(encoding, missing_from)


def byte_level_bpe(tokenizer: Any) -> ByteLevelBPE | None:
    """The tiktoken encoding of ``tokenizer`` (a ``tokenizers.Tokenizer``) when it is a byte-level
    BPE that tiktoken reproduces id for id (see the module's docstring); else None."""
    return encoding(judge(hashlib.sha256(tokenizer.to_str().encode()).hexdigest(), tokenizer)[0])


def _name(key: str) -> str:
    import tokenizers

    # (the checks run tokenizers' own model, and the folder's facts are what it reads)
    return f"hf-{key}.tokenizers-{tokenizers.__version__}.v{VERDICT_VERSION}.verdict"


def _read(key: str) -> tuple[Verdict, Folder | None] | None:
    """What chatloom's cache holds on a tokenizer (checking SmolLM2's folder takes 0.25 s, reading
    the verdict back 0.01 s); None where it holds nothing of the expected types."""
    from ..fileio import read_cached

    found = read_cached("tiktoken", _name(key))
    if not (isinstance(found, tuple) and len(found) == 2):
        return None
    verdict, folder = found
    good_verdict = verdict is None or (
        isinstance(verdict, tuple) and len(verdict) == 2 and isinstance(verdict[0], dict) and type(verdict[1]) is int
        and all(type(k) is bytes and type(v) is int for k, v in verdict[0].items()))  # fmt: skip
    good_folder = folder is None or (
        isinstance(folder, tuple) and len(folder) == 3 and type(folder[0]) is int and isinstance(folder[1], dict)
        and all(type(k) is str and type(v) is int for k, v in folder[1].items())
        and isinstance(folder[2], tuple) and all(type(t) is str for t in folder[2]))  # fmt: skip
    if not (good_verdict and good_folder):
        return None
    return verdict, (Folder(*folder) if folder is not None else None)


def _write(key: str, found: tuple[Verdict, Folder | None]) -> None:
    from ..fileio import write_cached

    verdict, folder = found
    write_cached("tiktoken", _name(key), (verdict, tuple(folder) if folder is not None else None))  # (or checked again next time)


def _checked(spec: dict[str, Any], tokenizer: Any) -> tuple[dict[bytes, int], int] | None:
    """The folder's ranks for tiktoken (with a rank past the vocabulary for each byte it lacks)
    and where those start, when the checks hold; else None."""
    model = spec.get("model") or {}
    if (model.get("type") != "BPE" or model.get("dropout") is not None or model.get("continuing_subword_prefix") not in (None, "")
            or model.get("end_of_word_suffix") not in (None, "") or model.get("byte_fallback")
            or spec.get("normalizer") is not None or spec.get("truncation") is not None or spec.get("padding") is not None):  # fmt: skip
        return None
    pre = spec.get("pre_tokenizer") or {}
    if not (pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space", False)):
        return None
    added = spec.get("added_tokens") or []
    if any(not a.get("special") for a in added):
        return None
    added_ids = {a["id"] for a in added}
    symbols = _byte_symbols()
    vocab: dict[str, int] = model.get("vocab") or {}
    try:
        ranks = {bytes(symbols[ch] for ch in token): i for token, i in vocab.items() if i not in added_ids}
    except KeyError:  # a symbol outside the byte-level alphabet: not a byte-level vocabulary
        return None
    if len(ranks) != sum(1 for i in vocab.values() if i not in added_ids):
        return None
    last = -1
    for merge in model.get("merges") or []:  # ids grow in merge order (so no two merges make one token)
        first, second = merge.split(" ", 1) if isinstance(merge, str) else merge
        rank = vocab.get(first + second)
        if first not in vocab or second not in vocab or rank is None or rank <= last or rank in added_ids:
            return None
        last = rank
    # each token is what BPE makes of its own bytes (so a merge makes it): otherwise tiktoken,
    # which merges any two neighbours that make a token (and looks a whole piece up first), would
    # make it where tokenizers does not (a token added with a merge at the end of the list can be
    # one; 0.1 s)
    tokenize = tokenizer.model.tokenize
    if any(len(token) > 1 and [t.id for t in tokenize(token)] != [i] for token, i in vocab.items() if i not in added_ids):
        return None
    missing_from = max([*vocab.values(), *added_ids], default=-1) + 1
    next_rank = missing_from
    for b in range(256):
        if bytes([b]) not in ranks:
            ranks[bytes([b])] = next_rank
            next_rank += 1
    return ranks, missing_from
