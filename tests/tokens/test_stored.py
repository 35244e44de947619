"""Layouts kept between runs of tokenize (``tokens/stored.py``): a run on stored layouts writes
the same files as one that builds them, for real models' plain templates; what they depend on is
in the key; a store that is cut, changed, or made with a tokenizer that now gives other ids is
not used; only plain templates' layouts are kept; ``CHATLOOM_LAYOUT_STORE`` switches it off or
rebuilds it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chatloom import jsonl
from chatloom.tokens import stored, tokenize
from chatloom.tokens.chat_templates import ChatTemplate
from chatloom.tokens.encode import Encoder
from chatloom.tokens.frames import Layout
from chatloom.tokens.tokenizer import get_tokenizer
from tests.tokens import real_templates as rt


def _files(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in ("train.bin", "train.idx", "train.loss", "val.bin", "val.loss")}


def _stores() -> list[Path]:
    return sorted((Path(os.environ["CHATLOOM_HOME"]) / "cache" / "layouts").glob("*.layouts"))


@pytest.fixture(scope="module")
def chats() -> list:
    """chitchat's conversations with something to train (an assistant turn), in order."""
    from chatloom.sources import Reader, get_source

    source = get_source("chitchat")
    return [c for c in source.read(source.resolve("package")[0], Reader("x")) if any(m.role == "assistant" for m in c.messages)]


def _jsonl(path: Path, convs: list) -> Path:
    path.write_bytes(b"".join(jsonl.dumps(c) for c in convs))
    return path


def _built(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the layouts built from here on (in this process)."""
    from chatloom.tokens.layout import Layouts

    count = [0]
    build = Layouts._build

    def counted(self, conv, key):  # type: ignore[no-untyped-def]
        count[0] += 1
        return build(self, conv, key)

    monkeypatch.setattr(Layouts, "_build", counted)
    return count


@pytest.fixture(scope="module")
def plain_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The real templates' folders whose template is plain (their layouts are kept)."""
    root = tmp_path_factory.mktemp("stored")
    folders = {name: rt.write_folder(root, name) for name in rt.NAMES}
    return {name: folder for name, folder in folders.items()
            if Encoder(get_tokenizer(str(folder)), str(folder)).template.plain}  # fmt: skip


def test_the_real_templates_kept_are_the_plain_ones(plain_folders: dict[str, Path]) -> None:
    assert set(plain_folders) == {"olmo-2", "phi-3.5", "phi-4", "qwen2.5", "smollm2", "zephyr"}


@pytest.mark.parametrize("name", ["olmo-2", "phi-3.5", "phi-4", "qwen2.5", "smollm2", "zephyr"])
def test_a_run_on_stored_layouts_writes_what_building_them_does(name: str, plain_folders: dict[str, Path], chats: list,
                                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A first run builds the layouts and stores them; the next builds none and writes the same
    bytes, with and without truncation and fixes (which build layouts of their own)."""
    folder = str(plain_folders[name])
    data = _jsonl(tmp_path / "chats.jsonl", chats[:400])
    ids = [c.id for c in chats[:40]]
    for options in ({}, {"max_tokens": 300, "truncate": True, "fix": True}):
        for store in _stores():
            store.unlink()
        count = _built(monkeypatch)
        first = tokenize(jsonl.RawLines(data), tmp_path / "first", tokenizer=folder, template=folder, val_ids=set(ids), **options)
        assert count[0] > 50 and len(_stores()) == 1
        count[0] = 0
        second = tokenize(jsonl.RawLines(data), tmp_path / "second", tokenizer=folder, template=folder, val_ids=set(ids), **options)
        assert count[0] == 0, "the second run builds no layout"
        assert first["splits"] == second["splits"] and first["report"] == second["report"]
        assert _files(tmp_path / "first") == _files(tmp_path / "second")
        monkeypatch.setenv("CHATLOOM_LAYOUT_STORE", "off")
        third = tokenize(jsonl.RawLines(data), tmp_path / "third", tokenizer=folder, template=folder, val_ids=set(ids), **options)
        monkeypatch.delenv("CHATLOOM_LAYOUT_STORE")
        assert count[0] > 50 and third["splits"] == first["splits"] and _files(tmp_path / "third") == _files(tmp_path / "first")


def test_workers_hand_their_layouts_to_the_store(chats: list, tmp_path: Path) -> None:
    """With two worker processes, the layouts each builds are stored by the main process; the next
    run, with one worker or two, writes the same files."""
    out = [tmp_path / f"run{i}" for i in range(3)]
    data = _jsonl(tmp_path / "chats.jsonl", chats)
    tokenize(jsonl.RawLines(data), out[0], tokenizer="gpt2-chatml", val_ids=set(), workers=2)
    [store] = _stores()
    packed = stored.read(store.stem)
    assert packed is not None and len(packed[1]) > 200  # chitchat's shapes
    tokenize(jsonl.RawLines(data), out[1], tokenizer="gpt2-chatml", val_ids=set(), workers=2)
    tokenize(jsonl.RawLines(data), out[2], tokenizer="gpt2-chatml", val_ids=set(), workers=1)
    assert _files(out[0]) == _files(out[1]) == _files(out[2])
    assert _stores() == [store]


def _encoder(template: str = "chatml") -> Encoder:
    return Encoder(get_tokenizer("gpt2-chatml"), template, keep_layouts=True)


def _store(convs: list) -> tuple[Encoder, stored.Compact]:
    """An encoder that encoded ``convs``, and the pack of its layouts, now stored."""
    enc = _encoder()
    enc.encode_batch(convs)
    key, packed = enc.layouts.built()  # type: ignore[misc]
    stored.save(key, [packed])
    return enc, packed



def test_a_store_that_does_not_read_back_whole_is_not_used(chats: list, monkeypatch: pytest.MonkeyPatch) -> None:
    convs = chats[:300]
    enc, _ = _store(convs)
    [store] = _stores()
    whole = store.read_bytes()
    for broken in (whole[:1000], whole[:5000] + bytes([whole[5000] ^ 1]) + whole[5001:], b""):
        store.write_bytes(broken)
        count = _built(monkeypatch)
        assert _encoder().encode_batch(convs) == enc.encode_batch(convs)
        assert count[0] > 10
    store.write_bytes(whole)
    count = _built(monkeypatch)
    assert _encoder().encode_batch(convs) == enc.encode_batch(convs) and count[0] == 0


def test_stored_ids_the_tokenizer_no_longer_gives_are_not_used(chats: list) -> None:
    """The template text's ids are checked against the tokenizer when the store is read (a
    tokenizer that changed under the same name): one wrong id, and no stored layout is used."""
    enc = _encoder()
    enc.encode_batch(chats[:50])
    _, (runs, entries) = enc.layouts.built()  # type: ignore[misc]
    assert stored.unpack((runs, entries), enc.tokenizer)
    at = next(i for i, run in enumerate(runs) if run[2] is not None and not run[4])  # a run of template text, not a special token
    trained, parts, ids, owner, special = runs[at]
    changed = (*runs[:at], (trained, parts, (ids[0] + 1, *ids[1:]), owner, special), *runs[at + 1:])
    assert stored.unpack((changed, entries), enc.tokenizer) == {}
    special_at = next(i for i, run in enumerate(runs) if run[4])
    trained, parts, ids, owner, special = runs[special_at]
    changed = (*runs[:special_at], (trained, parts, (ids[0] + 1,), owner, special), *runs[special_at + 1:])
    assert stored.unpack((changed, entries), enc.tokenizer) == {}


def test_the_key_holds_what_layouts_depend_on() -> None:
    tok = get_tokenizer("gpt2-chatml")
    chatml = _encoder().template
    key = stored.key(chatml, tok)
    assert key is not None and key == stored.key(_encoder().template, get_tokenizer("gpt2-chatml"))
    other_text = ChatTemplate("chatml", chatml.source.replace("\\n", "\\n\\n", 1), dict(chatml.tokens))
    other_tokens = ChatTemplate("chatml", chatml.source, {**chatml.tokens, "eos_token": "<|im_end|>"})
    other_end = ChatTemplate("chatml", chatml.source, dict(chatml.tokens), end="<|im_start|>")
    keys = {stored.key(t, tok) for t in (other_text, other_tokens, other_end)}
    assert None not in keys and len(keys | {key}) == 4
    assert stored.key(chatml, get_tokenizer("gpt2")) != key  # another tokenizer (its name and special tokens)


def test_only_plain_templates_are_kept(chats: list) -> None:
    """A template that changes contents (Llama 3 trims them) is checked conversation by
    conversation: its layouts are not kept."""
    trims = ChatTemplate("trims", "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] | trim + '<|im_end|>\\n' }}"
                                  "{% endfor %}", {"eos_token": "<|endoftext|>"})  # fmt: skip
    assert not trims.plain and stored.key(trims, get_tokenizer("gpt2-chatml")) is None
    enc = Encoder(get_tokenizer("gpt2-chatml"), trims, keep_layouts=True)
    enc.encode_batch(chats[:50])
    assert enc.layouts.built() is None and not _stores()


def test_rebuild_builds_every_layout_and_stores_them(chats: list, monkeypatch: pytest.MonkeyPatch) -> None:
    convs = chats[:100]
    _, packed = _store(convs)
    monkeypatch.setenv("CHATLOOM_LAYOUT_STORE", "rebuild")
    count = _built(monkeypatch)
    again = _encoder()
    again.encode_batch(convs)
    assert count[0] == len(packed[1]) and again.layouts.built() is not None


def test_a_stored_layout_is_never_the_base_of_a_longer_shape(chats: list, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stored layouts keep no renders: a shape not stored is built on a built one, or alone."""
    convs = sorted(chats[:400], key=lambda c: len(c.messages))
    _store([c for c in convs if len(c.messages) < 12])
    again = _encoder()
    fresh = Encoder(get_tokenizer("gpt2-chatml"), "chatml")
    assert again.encode_batch(convs) == fresh.encode_batch(convs)
    assert any(isinstance(layout, Layout) and layout.stored for layout in again.layouts._cache.values())


def test_the_store_keeps_the_last_used(monkeypatch: pytest.MonkeyPatch, chats: list) -> None:
    """Stores of other templates, tokenizers or versions of chatloom are pruned, the least
    recently used first (reading one counts as a use)."""
    monkeypatch.setattr(stored, "KEEP", 2)
    enc = _encoder()
    enc.encode_batch(chats[:20])
    _, packed = enc.layouts.built()  # type: ignore[misc]
    for when, name in enumerate(("a" * 64, "b" * 64, "c" * 64), 1):
        stored.save(name, [packed])
        os.utime(Path(os.environ["CHATLOOM_HOME"]) / "cache" / "layouts" / f"{name}.layouts", (when, when))
    assert [p.stem for p in _stores()] == ["b" * 64, "c" * 64]
    assert stored.read("b" * 64) is not None  # now the last used
    stored.save("d" * 64, [packed])
    assert [p.stem for p in _stores()] == ["b" * 64, "d" * 64]


def _rewrite(store: Path, change) -> None:  # type: ignore[no-untyped-def]
    """Change a store's content and give it its new digest (a file that reads back whole, but is
    not what chatloom wrote)."""
    import hashlib
    import marshal

    runs, entries = marshal.loads(store.read_bytes()[32:])
    payload = marshal.dumps(change(runs, entries))
    store.write_bytes(hashlib.sha256(payload).digest() + payload)


def _flip_losses(runs, entries):  # type: ignore[no-untyped-def]
    return tuple((not trained, *rest) for trained, *rest in runs), entries


def test_rebuild_replaces_what_is_stored(chats: list, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store gone wrong (here: every run's loss flag flipped, which the ids check cannot see)
    is replaced by ``rebuild``: the next run writes what building the layouts writes."""
    convs = chats[:100]
    want = Encoder(get_tokenizer("gpt2-chatml"), "chatml").encode_batch(convs)
    _store(convs)
    [store] = _stores()
    _rewrite(store, _flip_losses)
    assert _encoder().encode_batch(convs) != want  # (the store is read as it is)
    monkeypatch.setenv("CHATLOOM_LAYOUT_STORE", "rebuild")
    rebuilt = _encoder()
    assert rebuilt.encode_batch(convs) == want
    key, packed = rebuilt.layouts.built()  # type: ignore[misc]
    stored.save(key, [packed])
    monkeypatch.delenv("CHATLOOM_LAYOUT_STORE")
    assert _encoder().encode_batch(convs) == want


def test_a_shape_just_built_is_stored_over_the_one_stored(chats: list) -> None:
    convs = chats[:60]
    want = Encoder(get_tokenizer("gpt2-chatml"), "chatml").encode_batch(convs)
    _, packed = _store(convs)
    [store] = _stores()
    _rewrite(store, _flip_losses)
    stored.save(store.stem, [packed])  # what a run built, saved over the stored
    assert _encoder().encode_batch(convs) == want


@pytest.mark.parametrize("change", [
    lambda runs, entries: (tuple((t, tuple((p[0], p[1], "x") if type(p) is tuple else p for p in ps), i, o, s)
                                 for t, ps, i, o, s in runs), entries),  # a strip chatloom never writes
    lambda runs, entries: (tuple((t, tuple((p[0] + 1000, *p[1:]) if type(p) is tuple else p for p in ps), i, o, s)
                                 for t, ps, i, o, s in runs), entries),  # a message the shape has not
    lambda runs, entries: (runs, {k: (pl, (len(k[0]) + 5,), me, at) for k, (pl, lo, me, at) in entries.items()}),  # left out: out of range
    lambda runs, entries: (runs, {k: (pl, lo, me, at + (len(runs) + 3,)) for k, (pl, lo, me, at) in entries.items()}),  # no such run
    lambda runs, entries: ([list(r) for r in runs], entries),  # lists where chatloom writes tuples
    lambda runs, entries: (runs, {k: (pl, lo, me, tuple(str(i) for i in at)) for k, (pl, lo, me, at) in entries.items()}),
    lambda runs, entries: (runs,),
])  # fmt: skip
def test_a_store_chatloom_did_not_write_is_not_used(change, chats: list, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A store that reads back whole but is not of the shape chatloom writes (indices out of
    range, unknown values, other types) is not used: no traceback, the layouts are built, and
    storing them after works."""
    convs = chats[:60]
    want = Encoder(get_tokenizer("gpt2-chatml"), "chatml").encode_batch(convs)
    _store(convs)
    [store] = _stores()
    _rewrite(store, change)
    count = _built(monkeypatch)
    enc = _encoder()
    assert enc.encode_batch(convs) == want and count[0] > 10
    key, packed = enc.layouts.built()  # type: ignore[misc]
    stored.save(key, [packed])
    assert stored.read(key) is not None


def test_a_cache_that_cannot_be_written_leaves_tokenize_as_it_was(chats: list, tmp_path: Path) -> None:
    """Where the layouts cannot be stored (a folder made by another user, a read-only mount:
    here a folder nobody can create files in), tokenize writes its files all the same."""
    layouts = Path(os.environ["CHATLOOM_HOME"]) / "cache" / "layouts"
    layouts.parent.mkdir(parents=True)
    layouts.symlink_to("/proc/self")  # (no file can be created there, even by root)
    data = _jsonl(tmp_path / "chats.jsonl", chats[:50])
    meta = tokenize(jsonl.RawLines(data), tmp_path / "out", tokenizer="gpt2-chatml")
    assert meta["splits"]["train"]["conversations"] == 50 and (tmp_path / "out" / "train.bin").stat().st_size > 0


def test_the_code_in_the_key_is_the_code_that_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The layout code's digest is taken when it is imported (a forked worker has its parent's),
    not from the files as they may be later; and it is part of the key."""
    template, tok = _encoder().template, get_tokenizer("gpt2-chatml")
    key = stored.key(template, tok)
    monkeypatch.setattr(stored, "_code", lambda: b"the files changed on disk since")
    assert stored.key(template, tok) == key
    monkeypatch.setattr(stored, "CODE_DIGEST", b"other code")
    assert stored.key(template, tok) != key
    assert "model.py" in stored.CODE  # (``Message.trains``: which turns train by default)
