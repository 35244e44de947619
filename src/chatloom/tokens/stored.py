"""Layouts kept between runs of ``tokenize``, in chatloom's cache.

A layout (``layout.py``) depends only on the template, the tokenizer and chatloom's own code, and
building a dataset's layouts is a fixed cost of every run (SmolLM2's on chitchat: 255 shapes,
0.3 s in each worker). ``tokenize`` keeps them, by a key that holds everything they depend on:
the text of the modules that make them (a changed line of the layout code is another key), the
versions of jinja2, tiktoken and tokenizers, the template's text and the token strings it is
rendered with, the tokenizer's identity (its name or folder and the digest of its files), its
special and added tokens. Only a *plain* template's layouts are kept: its render of a shape is
the same for any contents, at any time (one that reads the date or draws random numbers is not
plain).

A stored layout holds what encoding needs (its runs, the messages it leaves out, the turns with
no end token, ``plain``), not the renders it was cut from, so a longer shape is never built on it
(``Layout.stored``); a shape not stored is built as before, and stored at the end of the run.

``CHATLOOM_LAYOUT_STORE=off`` neither reads nor writes the store; ``rebuild`` builds every
layout as a first run does, and stores them.

The file is the digest of its content, then the content (``marshal``: tuples, strings and ints
only); one that does not read back whole is as good as none, and a cache that cannot be read or
written is done without. ``tests/tokens/test_stored.py`` holds a run on stored layouts to the same
files as one without.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .frames import Layout, Run
from .joined import Slot

#: the modules whose code makes a layout (their text is part of the key), in the chatloom package
CODE = ("tokens/layout.py", "tokens/frames.py", "tokens/joined.py", "tokens/stored.py", "tokens/tokenizer.py", "tokens/bytebpe.py",
        "tokens/chat_templates/__init__.py", "tokens/chat_templates/syntax.py", "model.py")  # fmt: skip
#: the most shapes one file keeps (SmolLM2's 255 on chitchat are 1.4 MB), and the most files
MOST = 50_000
KEEP = 32

Compact = tuple[tuple[Any, ...], dict[Any, tuple[Any, ...]]]  # (runs, shape → (plain, left_out, missing_end, run indices))


def _code() -> bytes | None:
    package = Path(__file__).parent.parent
    try:
        return hashlib.sha256(b"".join((package / name).read_bytes() for name in CODE)).digest()
    except OSError:  # (not installed as files): nothing is kept
        return None


#: read when this module is imported (``layout.py`` imports it), so that it is the code this
#: process runs, not what may be on disk later (an upgrade under a long run); a forked worker has
#: its parent's
CODE_DIGEST = _code()


def key(template: Any, tokenizer: Any) -> str | None:
    """The key of a template's layouts with a tokenizer; None where they are not kept."""
    code = CODE_DIGEST
    if code is None or not template.plain or os.environ.get("CHATLOOM_LAYOUT_STORE") == "off":
        return None
    import jinja2
    import tiktoken
    import tokenizers

    what = (code.hex(), sys.version_info[:2], marshal.version, jinja2.__version__, tiktoken.__version__, tokenizers.__version__,
            template.source, sorted(template.tokens.items()), template.end, template.verbatim,
            tokenizer.cache_key, sorted(tokenizer.special_tokens.items()), sorted(tokenizer.added_tokens),
            sorted(tokenizer.template_tokens.items()))  # fmt: skip
    return hashlib.sha256(repr(what).encode()).hexdigest()


def pack(layouts: Iterable[tuple[Any, Layout]]) -> Compact:
    """Layouts by shape in compact form: each run once, the layouts as indices into them."""
    index: dict[int, int] = {}
    runs: list[tuple[Any, ...]] = []
    entries: dict[Any, tuple[Any, ...]] = {}
    for shape, layout in layouts:
        at = []
        for run in layout.runs:
            i = index.get(id(run))
            if i is None:
                i = index[id(run)] = len(runs)
                parts = tuple(p if isinstance(p, str) else (p.msg, p.kind, p.strip) for p in run.parts)
                runs.append((run.trained, parts, tuple(run.ids) if run.ids is not None else None, run.owner, run.special))
            at.append(i)
        entries[shape] = (layout.plain, tuple(layout.left_out), tuple(layout.missing_end), tuple(at))
    return tuple(runs), entries


def merge(packs: Iterable[Compact]) -> Compact:
    """Several packs as one (a shape in several: the first)."""
    index: dict[tuple[Any, ...], int] = {}
    entries: dict[Any, tuple[Any, ...]] = {}
    for runs, found in packs:
        mine = [index.setdefault(run, len(index)) for run in runs]
        for shape, (plain, left_out, missing_end, at) in found.items():
            if shape not in entries and len(entries) < MOST:
                entries[shape] = (plain, left_out, missing_end, tuple(mine[i] for i in at))
    return tuple(index), entries


def _valid(packed: Any) -> bool:
    """Whether a pack read back is of the shape ``pack`` makes, its indices in range (a file that
    reads back whole may still not be chatloom's: nothing of it is used then). Each run is looked
    at once; a layout's runs by C-speed min/max/map (SmolLM2's chitchat: 168,000 of them, 10 ms)."""
    runs, entries = packed
    if not (type(runs) is tuple and type(entries) is dict):
        return False
    need = []  # the fewest messages each run can be of: its owner's and its slots' messages
    for run in runs:
        if not (type(run) is tuple and len(run) == 5):
            return False
        trained, parts, ids, owner, special = run
        if not (type(trained) is bool and type(special) is bool and type(owner) is int and owner >= -1 and type(parts) is tuple
                and (ids is None or type(ids) is tuple and all(type(i) is int and i >= 0 for i in ids))):  # fmt: skip
            return False
        most = owner + 1
        for part in parts:
            if type(part) is tuple and len(part) == 3 and type(part[0]) is int and part[0] >= 0 and part[1] in ("c", "n") \
                    and part[2] in ("", "l", "r", "lr"):  # fmt: skip
                most = max(most, part[0] + 1)
            elif type(part) is not str:
                return False
        need.append(most)
    for shape, entry in entries.items():
        if not (type(shape) is tuple and len(shape) == 2 and type(shape[0]) is tuple and type(entry) is tuple and len(entry) == 4):
            return False
        n = len(shape[0])
        plain, left_out, missing_end, at = entry
        if not (type(plain) is bool and all(type(x) is tuple and all(type(i) is int and 0 <= i < n for i in x) for x in (left_out, missing_end))
                and type(at) is tuple):  # fmt: skip
            return False
        if at:
            try:
                if min(at) < 0 or max(map(need.__getitem__, at)) > n:  # (an index out of range or not an int: an error)
                    return False
            except (IndexError, TypeError):
                return False
    return True


def unpack(packed: Compact, tokenizer: Any = None) -> dict[Any, Layout]:
    """The layouts of a pack as ``pack`` makes it, or ``read`` gives it (``stored``: their runs
    are shared, and never changed). With ``tokenizer``, none unless every run of template text
    has the ids it gives that text now (each text encoded once: a few dozen), and every special
    token its id."""
    runs, entries = packed
    if tokenizer is not None:
        texts: dict[str, tuple[int, ...]] = {}
        for _, parts, ids, _, special in runs:
            if ids is None:
                continue
            text = "".join(parts)
            if special:
                now = (tokenizer.special_tokens.get(text),)
            elif (now := texts.get(text)) is None:  # type: ignore[assignment]
                now = texts[text] = tuple(tokenizer.encode(text))
            if now != ids:
                return {}
    made = [Run(trained, [p if isinstance(p, str) else Slot(*p) for p in parts], list(ids) if ids is not None else None,
                owner, special) for trained, parts, ids, owner, special in runs]  # fmt: skip
    return {shape: Layout(list(map(made.__getitem__, at)), list(missing_end), list(left_out), plain=plain, stored=True)
            for shape, (plain, left_out, missing_end, at) in entries.items()}  # fmt: skip


def _name(name: str) -> str:
    return f"{name}.layouts"


def read(name: str) -> Compact | None:
    """The pack stored under ``name``; None where there is none, or none that reads back whole
    and of the shape ``pack`` makes (``fileio.read_cached``; reading it marks it as used)."""
    from ..fileio import read_cached

    packed = read_cached("layouts", _name(name))
    if not (type(packed) is tuple and len(packed) == 2 and _valid(packed)):
        return None
    return packed  # type: ignore[no-any-return]


def load(name: str, tokenizer: Any) -> dict[Any, Layout]:
    """The layouts stored under ``name`` (none where there are none, or they do not unpack, or
    ``tokenizer`` now gives their template text other ids)."""
    packed = read(name) if os.environ.get("CHATLOOM_LAYOUT_STORE") != "rebuild" else None
    if packed is None:
        return {}
    return unpack(packed, tokenizer)


def save(name: str, packs: list[Compact]) -> None:
    """Add ``packs`` to what is stored under ``name`` (as it is now: another run may have added
    to it; a shape in both is the one just built), or with ``CHATLOOM_LAYOUT_STORE=rebuild``,
    replace it; written whole, or not at all."""
    if not any(entries for _, entries in packs):
        return
    from ..fileio import write_cached

    stored = read(name) if os.environ.get("CHATLOOM_LAYOUT_STORE") != "rebuild" else None
    if write_cached("layouts", _name(name), merge([*packs, stored] if stored is not None else packs)):  # (else built again next time)
        _prune()


def _prune() -> None:
    """Keep the ``KEEP`` stores last used (the others are of other templates and tokenizers, or of
    chatloom's code before an upgrade)."""
    from ..fileio import cache_dir

    found = []
    try:
        for path in cache_dir("layouts").glob("*.layouts"):
            found.append((path.stat().st_mtime, path))
        for _, path in sorted(found, reverse=True)[KEEP:]:
            path.unlink(missing_ok=True)
    except OSError:  # (removed by another run meanwhile, or a store not ours to remove): pruned next time
        pass
