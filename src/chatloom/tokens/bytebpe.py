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
import marshal
from typing import Any

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


#: verdicts by the digest of a tokenizer's JSON: (ranks, missing_from), or None where tiktoken
#: cannot stand in. A process that checked a folder hands them to its workers (``adopt``), which
#: then build the encoding without checking it again (0.35 s of SmolLM2's each).
_verdicts: dict[str, tuple[dict[bytes, int], int] | None] = {}


def verdicts() -> dict[str, tuple[dict[bytes, int], int] | None]:
    return dict(_verdicts)


def adopt(known: dict[str, tuple[dict[bytes, int], int] | None]) -> None:
    _verdicts.update(known)


#: the version of ``_checked``'s verdicts: the verdicts stored on disk are keyed by it (bump it
#: when the checks change, so that no verdict of older checks is read back)
VERDICT_VERSION = 1


def byte_level_bpe(tokenizer: Any) -> ByteLevelBPE | None:
    """The tiktoken encoding of ``tokenizer`` (a ``tokenizers.Tokenizer``) when it is a byte-level
    BPE that tiktoken reproduces id for id (see the module's docstring); else None."""
    text = tokenizer.to_str()
    key = hashlib.sha256(text.encode()).hexdigest()
    if key not in _verdicts:
        _verdicts[key] = _stored(key, lambda: _checked(orjson.loads(text), tokenizer))
    found = _verdicts[key]
    if found is None:
        return None
    import tiktoken

    ranks, missing_from = found
    encoding = tiktoken.Encoding(name="hf-byte-level-bpe", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={})
    return ByteLevelBPE(encoding, missing_from)


def _stored(key: str, check: Any) -> tuple[dict[bytes, int], int] | None:
    """The verdict on a tokenizer (``key``: the digest of its JSON) as chatloom's cache holds it
    (checking SmolLM2's folder takes 0.25 s, reading the verdict back 0.01 s); else ``check()``'s,
    then stored. The file is the verdict's digest and the verdict; one that does not read back
    whole is checked again, and a cache that cannot be read or written is done without."""
    import tokenizers

    from ..fileio import atomic_write, cache_dir

    name = f"hf-{key}.tokenizers-{tokenizers.__version__}.v{VERDICT_VERSION}.verdict"  # (the checks run tokenizers' own model)
    try:
        path = cache_dir("tiktoken") / name
        data = path.read_bytes()
        if hashlib.sha256(data[32:]).digest() != data[:32]:
            raise ValueError("cut short or changed")
        found = marshal.loads(data[32:])
        if found is None or (isinstance(found, tuple) and len(found) == 2 and isinstance(found[0], dict) and isinstance(found[1], int)
                             and all(type(k) is bytes and type(v) is int for k, v in found[0].items())):  # fmt: skip
            return found  # type: ignore[no-any-return]
    except (OSError, EOFError, ValueError, TypeError):
        pass
    found = check()
    try:
        payload = marshal.dumps(found)
        with atomic_write(cache_dir("tiktoken") / name) as f:
            f.write(hashlib.sha256(payload).digest() + payload)
    except OSError:  # a cache that cannot be written: checked again next time
        pass
    return found  # type: ignore[no-any-return]


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
