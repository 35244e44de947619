"""The list API (``store/listing.py``: keyset pages, filters, sorts, search, facets, token
counts) and the history reads and writes of ``store/edit.py`` (``state_at``, ``restore``,
``set_language``), on real SQLite files, each checked against what plain Python computes from
``iter_conversations``."""

from __future__ import annotations

import base64
import random
import re
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

import chatloom.store.listing as listing
from chatloom.errors import ChatloomError, ConflictError, NotFoundError, ParamError
from chatloom.model import Conversation, Message, digest
from chatloom.store import ListQuery, ListRow, Store
from chatloom.tokens.tokenizer import get_tokenizer
from tests.conftest import conv

# -- the dataset ------------------------------------------------------------------------------

WORDS = ["pizza", "sushi", "olive", "river", "mountain", "garden", "violin", "rocket", "lantern", "harbor"]
FILLER = ["the", "a", "and", "we", "it", "so", "then", "very", "quite", "maybe", "today", "again"]
TITLES = [None, None, None, "", "Alpha", "alpha", "Beta", "beta", "Zebra", "Äpfel", "pizza night", "日本語", "zz top"]
TAGS = ["greetings", "math", "code", "generated", "chitchat"]
LANGUAGES = ["en", "en", "de", "fr", None]
SOURCES: list[dict[str, Any]] = [
    {"format": "chitchat", "file": "a.jsonl", "locator": "line 1"},
    {"format": "chitchat", "file": "b.jsonl"},
    {"format": "openai", "file": "c.jsonl"},
    {"format": "sharegpt"},
    {},
    {"file": "no-format.json"},
]
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
N = 300


def _text(rng: random.Random) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(1, 30))]
    for _ in range(rng.randint(0, 2)):
        word = rng.choice(WORDS)
        words.insert(rng.randint(0, len(words)), word.capitalize() if rng.random() < 0.3 else word)
    text = " ".join(words)
    if rng.random() < 0.1:
        text = text.replace(" ", "\n", 2)
    if rng.random() < 0.05:
        text = (text + " ") * 20  # longer than a preview
    return text


def _conversation(rng: random.Random, conv_id: str) -> Conversation:
    messages = []
    if rng.random() < 0.3:
        messages.append(Message(role="system", content="You are helpful. " + rng.choice(FILLER)))
    tools = rng.random() < 0.2
    for i in range(rng.randint(1, 9)):
        messages.append(Message(role="user" if i % 2 == 0 else "assistant", content=_text(rng)))
    if tools:
        call = {"id": "call1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
        messages += [
            Message(role="assistant", content="", tool_calls=[call]),
            Message(role="tool", content="found " + rng.choice(WORDS), tool_call_id="call1", name="lookup"),
            Message(role="assistant", content=_text(rng)),
        ]
    tags = sorted(rng.sample(TAGS, rng.randint(0, 3)))
    if rng.random() < 0.03:
        tags.append("rare")
    return Conversation(
        id=conv_id,
        title=rng.choice(TITLES),
        language=rng.choice(LANGUAGES),
        tags=tags,
        tools=TOOLS if tools else [],
        source=dict(rng.choice(SOURCES)),
        messages=messages,
    )


def _edited(rng: random.Random, c: Conversation) -> Conversation:
    """``c`` with one more message (a new digest, another length) and maybe another title."""
    c.messages.append(Message(role="user" if c.messages[-1].role != "user" else "assistant", content=_text(rng)))
    if rng.random() < 0.5:
        c.title = rng.choice(TITLES)
    return c


@dataclass
class Live:
    """A live conversation and its store-side state, read the plain way."""

    id: str
    pk: int
    conv: Conversation
    modified_at: str
    revision: int
    digest: str
    msg_start: int
    tokens: int


def live(store: Store, tok: Any) -> dict[str, Live]:
    """Every live conversation by id: the conversation from ``iter_conversations``, its state
    from ``store.entry``, its pk and first message from the table, its tokens counted here."""
    convs = list(store.iter_conversations())
    places = dict((i, (pk, start)) for i, pk, start in store.db.execute("SELECT id, pk, msg_start FROM conversations"))
    counts = tok.chatml_counts([[(m.role, m.content) for m in c.messages] for c in convs])
    out = {}
    for c, n in zip(convs, counts, strict=True):
        assert c.id is not None
        e = store.entry(c.id)
        out[c.id] = Live(c.id, places[c.id][0], c, e.modified_at, e.revision, e.digest, places[c.id][1], n)
    return out


@pytest.fixture(scope="module")
def tok() -> Any:
    return get_tokenizer("gpt2-chatml")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tok: Any) -> Path:
    """A dataset of N conversations, imported in batches, some deleted, edited and retagged
    afterwards; token counts cached for gpt2-chatml. Built once; each test works on a copy."""
    path = tmp_path_factory.mktemp("listing") / "built.db"
    rng = random.Random(20240601)
    with Store(path, create=True) as s:
        s.import_conversations([_conversation(rng, f"c{i:03d}") for i in range(N)], batch_size=60)
        ids = [f"c{i:03d}" for i in range(N)]
        gone = rng.sample(ids, 25)
        s.tag(gone[:3], add=["gone"])  # a tag only deleted conversations had
        s.delete(gone)
        rest = [i for i in ids if i not in gone]
        for conv_id in rng.sample(rest, 20):
            s.put(_edited(rng, s.get(conv_id)))
        s.tag(rng.sample(rest, 10), add=["reviewed"], remove=["math"])
        s.token_counts(tok)
    return path


@pytest.fixture
def store(built: Path, tmp_path: Path):
    path = tmp_path / "ds.db"
    shutil.copy(built, path)
    with Store(path) as s:
        yield s


@pytest.fixture
def empty(tmp_path: Path):
    with Store(tmp_path / "empty.db", create=True) as s:
        yield s


def collect(store: Store, q: ListQuery, limit: int = 7, between: Callable[[int], None] | None = None) -> list[ListRow]:
    """Every row of a query, page by page (``between(n)``: called after page n)."""
    rows: list[ListRow] = []
    cursor: str | None = None
    for n in range(10_000):
        page, cursor = store.page(q, after=cursor, limit=limit)
        assert len(page) <= limit
        if cursor is not None:
            assert len(page) == limit, "a page that is not the last is full"
        rows += page
        if cursor is None:
            return rows
        if between is not None:
            between(n)
    raise AssertionError("the pages never end")


def row_key(sort: str, r: ListRow) -> Any:
    return {"updated": r.modified_at, "messages": r.n_messages, "title": r.title or "", "tokens": r.tokens}[sort]


def live_key(sort: str, x: Live) -> Any:
    return {"updated": x.modified_at, "messages": len(x.conv.messages), "title": x.conv.title or "", "tokens": x.tokens}[sort]


def in_order(sort: str, desc: bool, items: list[Live]) -> list[str]:
    return [x.id for x in sorted(items, key=lambda x: (live_key(sort, x), x.pk), reverse=desc)]


def preview(c: Conversation) -> str:
    first = next((m.content for m in c.messages if m.role != "system"), "")
    return first[:200].replace("\n", " ")


SORTS = [(s, d) for s in ("updated", "messages", "title", "tokens") for d in (True, False)]


# -- keyset pages -----------------------------------------------------------------------------


def test_the_dataset_is_varied_enough(store, tok):
    """What the tests below rely on: ties in every sort, None and empty titles, deleted rows."""
    rows = live(store, tok)
    assert 250 <= len(rows) < N
    assert store.count() == len(rows)
    assert sum(x.conv.title is None for x in rows.values()) > 20
    assert any(x.conv.title == "" for x in rows.values())
    assert len({x.modified_at for x in rows.values()}) < len(rows) / 2  # many rows share a time
    assert len({len(x.conv.messages) for x in rows.values()}) < 20
    assert len({x.tokens for x in rows.values()}) < len(rows)
    assert 0 < sum(bool(x.conv.tools) for x in rows.values()) < len(rows)
    assert 0 < sum("rare" in x.conv.tags for x in rows.values()) < 20
    assert store.db.execute("SELECT count(*) FROM conversations WHERE deleted = 1").fetchone()[0] == 25


@pytest.mark.parametrize("sort,desc", SORTS)
def test_pages_list_every_live_conversation_once_in_sort_order(store, tok, sort, desc):
    expected = live(store, tok)
    q = ListQuery(sort=sort, desc=desc, tokenizer=tok.cache_key)
    rows = collect(store, q, limit=7)
    assert [r.id for r in rows] == in_order(sort, desc, list(expected.values()))
    for r in rows:  # every column of the row, and the token count read from the cache
        x = expected[r.id]
        assert (r.pk, r.title, r.tags, r.language, r.n_messages) == (x.pk, x.conv.title, x.conv.tags, x.conv.language, len(x.conv.messages))
        assert (r.revision, r.modified_at, r.digest) == (x.revision, x.modified_at, x.digest)
        assert r.preview == preview(x.conv)
        assert r.tokens == x.tokens
        assert r.snippet is None


def test_a_row_source_is_the_format_the_source_filter_takes(store, tok):
    expected = live(store, tok)
    for r in collect(store, ListQuery(), limit=100):
        assert r.source == expected[r.id].conv.source.get("format")
        assert [x.id for x in collect(store, ListQuery(source=r.source or ""), limit=100) if x.id == r.id] == [r.id]


@pytest.mark.parametrize("limit", [1, 2, 50, 1000])
def test_any_page_size_gives_the_same_list(store, tok, limit):
    expected = in_order("title", False, list(live(store, tok).values()))
    assert [r.id for r in collect(store, ListQuery(sort="title", desc=False), limit=limit)] == expected


def test_a_page_that_ends_exactly_at_the_end_has_no_cursor(empty):
    empty.import_conversations([conv("hi", id=f"x{i}") for i in range(14)])
    first, cursor = empty.page(ListQuery(), limit=7)
    assert len(first) == 7 and cursor is not None
    second, cursor = empty.page(ListQuery(), after=cursor, limit=7)
    assert len(second) == 7 and cursor is None
    assert len({r.id for r in first + second}) == 14
    rows, cursor = empty.page(ListQuery(), limit=14)
    assert len(rows) == 14 and cursor is None


def test_an_empty_dataset_has_one_empty_page(empty, tok):
    for sort, desc in SORTS:
        assert empty.page(ListQuery(sort=sort, desc=desc, tokenizer=tok.cache_key)) == ([], None)
    assert empty.page(ListQuery(search="pizza")) == ([], None)
    assert list(empty.matching_ids(ListQuery())) == []


def test_deleted_conversations_never_appear(store, tok):
    deleted = {i for (i,) in store.db.execute("SELECT id FROM conversations WHERE deleted = 1")}
    assert len(deleted) == 25
    for sort, desc in SORTS:
        assert not deleted & {r.id for r in collect(store, ListQuery(sort=sort, desc=desc, tokenizer=tok.cache_key), limit=50)}
    for word in WORDS:
        assert not deleted & {r.id for r in collect(store, ListQuery(search=word), limit=50)}


@pytest.mark.parametrize("sort,desc", [("updated", True), ("updated", False), ("messages", False), ("title", True), ("tokens", True), ("tokens", False)])
def test_a_cursor_stays_valid_while_others_insert_edit_and_delete(store, tok, sort, desc):
    rng = random.Random(7)
    before = live(store, tok)
    moved: set[str] = set()
    q = ListQuery(sort=sort, desc=desc, tokenizer=tok.cache_key)

    def meanwhile(n: int) -> None:
        if n not in (2, 9, 20):
            return
        new = [_conversation(rng, f"new{n}-{i}") for i in range(8)]
        for c in new:
            store.put(c)
        edit = rng.sample(sorted(set(before) - moved), 8)
        for conv_id in edit:
            store.put(_edited(rng, store.get(conv_id)))
        drop = rng.sample(sorted(set(before) - moved - set(edit)), 4)
        store.delete(drop)
        moved.update(c.id for c in new if c.id)
        moved.update(edit + drop)
        store.token_counts(tok)  # the tokens sort lists the conversations whose count is cached

    rows = collect(store, q, limit=7, between=meanwhile)
    assert moved
    keys = [(row_key(sort, r), r.pk) for r in rows]
    assert keys == sorted(keys, reverse=desc) and len(set(keys)) == len(keys), "each page goes on after the last"
    ids = [r.id for r in rows]
    unmoved = [x for i, x in before.items() if i not in moved]
    assert [i for i in ids if i not in moved] == in_order(sort, desc, unmoved), "none skipped, none twice"
    if sort == "updated" and desc:  # what changes becomes the newest: before the cursor, so never twice
        assert len(ids) == len(set(ids))


def test_ties_are_broken_by_pk(empty):
    empty.import_conversations([conv("same", "length", id=f"t{i:02d}", title=None if i % 3 else "") for i in range(30)])
    pks = dict(empty.db.execute("SELECT id, pk FROM conversations"))
    for sort in ("updated", "messages", "title"):
        for desc in (True, False):
            ids = [r.id for r in collect(empty, ListQuery(sort=sort, desc=desc), limit=4)]
            assert ids == sorted(pks, key=pks.__getitem__, reverse=desc)


# -- filters ----------------------------------------------------------------------------------


def has(x: Live, **f: Any) -> bool:
    """The filters of a ListQuery, in Python."""
    c = x.conv
    checks = {
        "tag": lambda v: v in c.tags,
        "language": lambda v: c.language == (None if v == "" else v),
        "source": lambda v: c.source.get("format") == (None if v == "" else v),
        "min_messages": lambda v: len(c.messages) >= v,
        "max_messages": lambda v: len(c.messages) <= v,
        "min_tokens": lambda v: x.tokens >= v,
        "max_tokens": lambda v: x.tokens <= v,
        "has_tools": lambda v: bool(c.tools) == v,
        "edited_since": lambda v: x.modified_at >= v,
        "generated": lambda v: ("generated" in c.tags) == v,
    }
    return all(checks[k](v) for k, v in f.items())


FILTERS: list[dict[str, Any]] = [
    {"tag": "greetings"},
    {"tag": "rare"},
    {"tag": "reviewed"},
    {"tag": "gone"},
    {"tag": "no-such-tag"},
    {"language": "en"},
    {"language": "de"},
    {"language": ""},
    {"source": "chitchat"},
    {"source": "openai"},
    {"source": ""},
    {"source": "no-such-format"},
    {"min_messages": 5},
    {"max_messages": 3},
    {"min_messages": 3, "max_messages": 6},
    {"min_tokens": 150},
    {"max_tokens": 80},
    {"min_tokens": 60, "max_tokens": 200},
    {"has_tools": True},
    {"has_tools": False},
    {"generated": True},
    {"generated": False},
    {"tag": "math", "language": "en", "has_tools": False},
    {"tag": "code", "source": "chitchat", "min_messages": 3, "generated": False},
    {"language": "fr", "min_tokens": 50, "has_tools": True},
]


@pytest.mark.parametrize("f", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
def test_filters_match_python(store, tok, f):
    xs = list(live(store, tok).values())
    wanted = [x for x in xs if has(x, **f)]
    if not f.get("tag", "").startswith(("gone", "no-such")) and f.get("source") != "no-such-format":
        assert wanted, "a filter that matches nothing checks little"
    for sort, desc in [("updated", True), ("messages", False), ("tokens", True)]:
        q = ListQuery(sort=sort, desc=desc, tokenizer=tok.cache_key, **f)
        assert [r.id for r in collect(store, q, limit=7)] == in_order(sort, desc, wanted)


def test_edited_since(store, tok):
    xs = list(live(store, tok).values())
    times = sorted({x.modified_at for x in xs})
    assert len(times) >= 3
    for since in (times[0], times[len(times) // 2], times[-1], "9999"):
        wanted = [x for x in xs if has(x, edited_since=since)]
        assert [r.id for r in collect(store, ListQuery(edited_since=since), limit=7)] == in_order("updated", True, wanted)


@pytest.mark.parametrize("f", [{"tag": "greetings"}, {"tag": "rare"}, {"tag": "generated", "language": "en"}])
def test_a_common_tag_lists_what_a_rare_one_does(store, tok, monkeypatch, f):
    """A tag with more than ``_RARE`` conversations is probed along the sort's index instead of
    driving the query: the rows are the same."""
    xs = list(live(store, tok).values())
    for rare in (listing._RARE, 3, 0):
        monkeypatch.setattr(listing, "_RARE", rare)
        for sort, desc in [("updated", True), ("title", False), ("tokens", True)]:
            q = ListQuery(sort=sort, desc=desc, tokenizer=tok.cache_key, **f)
            assert [r.id for r in collect(store, q, limit=7)] == in_order(sort, desc, [x for x in xs if has(x, **f)])
        q = ListQuery(search="pizza", **f)
        assert {r.id for r in collect(store, q)} == {s.id for s in store.search("pizza", limit=None)} & {x.id for x in xs if has(x, **f)}


# -- search -----------------------------------------------------------------------------------


def marked(snippet: str) -> list[str]:
    return re.findall("\x02(.*?)\x03", snippet)


@pytest.mark.parametrize("text", [*WORDS, "pizza sushi", "Pizza", "the pizza", "found"])
def test_search_pages_find_what_search_finds(store, tok, text):
    expected = {s.id for s in store.search(text, limit=None)}
    assert expected
    rows = collect(store, ListQuery(search=text), limit=7)
    ids = [r.id for r in rows]
    assert len(ids) == len(set(ids)), "no conversation twice"
    assert set(ids) == expected
    xs = live(store, tok)
    assert [x.msg_start for x in map(xs.__getitem__, ids)] == sorted((xs[i].msg_start for i in ids), reverse=True), "newest first"
    words = {w.lower() for w in text.split()}
    for r in rows:
        assert r.snippet is not None and "\n" not in r.snippet
        found = {m.lower() for m in marked(r.snippet)}
        assert found and found <= words, r.snippet
        x = xs[r.id]
        assert (r.title, r.n_messages, r.digest, r.preview) == (x.conv.title, len(x.conv.messages), x.digest, preview(x.conv))


def test_a_word_that_is_nowhere_finds_nothing(store):
    assert store.page(ListQuery(search="xylophone")) == ([], None)
    assert store.page(ListQuery(search="pizza xylophone")) == ([], None)


@pytest.mark.parametrize("f", FILTERS[:3] + FILTERS[5:9] + FILTERS[12:14] + FILTERS[15:16] + FILTERS[18:19] + FILTERS[20:23],
                         ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))  # fmt: skip
def test_search_with_filters(store, tok, f):
    xs = live(store, tok)
    for word in ("pizza", "river"):
        expected = {s.id for s in store.search(word, limit=None)} & {i for i, x in xs.items() if has(x, **f)}
        rows = collect(store, ListQuery(search=word, tokenizer=tok.cache_key, **f), limit=7)
        ids = [r.id for r in rows]
        assert len(ids) == len(set(ids)) and set(ids) == expected
        assert all(r.tokens == xs[r.id].tokens for r in rows), "with a tokenizer, the cached counts come along"


def test_a_blank_search_is_no_search(store, tok):
    expected = in_order("messages", True, list(live(store, tok).values()))
    for blank in ("", "   ", "\t\n"):
        rows = collect(store, ListQuery(search=blank, sort="messages"), limit=50)
        assert [r.id for r in rows] == expected and all(r.snippet is None for r in rows)


@pytest.mark.parametrize("text", ['"', '"pizza"', "pizza AND sushi", "pizza OR", "AND", "*", "pizza*", "NEAR(", "NEAR(pizza sushi)",
                                  "a*b", "-x", "title:pizza", "(", ")", "^pizza", "pizza +", "{", "'"])  # fmt: skip
def test_fts_syntax_in_a_search_is_text(store, text):
    rows = collect(store, ListQuery(search=text), limit=7)
    assert {r.id for r in rows} == {s.id for s in store.search(text, limit=None)}
    if text == '"pizza"':
        assert rows


def test_a_search_cursor_stays_valid_while_others_write(store, tok):
    rng = random.Random(3)
    before = {s.id for s in store.search("pizza", limit=None)}
    moved: set[str] = set()

    def meanwhile(n: int) -> None:
        if n != 1:
            return
        fresh = [conv(f"pizza number {i}", "yes", id=f"fresh{i}") for i in range(5)]
        store.import_conversations(fresh)
        edit = rng.sample(sorted(before), 3)
        for conv_id in edit:
            c = store.get(conv_id)
            c.messages.append(Message(role="user", content="more pizza please"))
            store.put(c)
        drop = rng.sample(sorted(before - set(edit)), 3)
        store.delete(drop)
        moved.update({c.id for c in fresh if c.id} | set(edit) | set(drop))

    ids = [r.id for r in collect(store, ListQuery(search="pizza"), limit=4, between=meanwhile)]
    assert len(ids) == len(set(ids))
    assert sorted(i for i in ids if i not in moved) == sorted(before - moved)


# -- errors -----------------------------------------------------------------------------------


def _b64(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


BAD_CURSORS = ["nope", "", "!!!", "%%%%", "AAAA", _b64({"a": 1}), _b64([1]), _b64([1, 2, 3]), _b64(["x", "y"]),
               _b64(["x", 1.5]), _b64(["x", None]), _b64("text"), _b64(7)]  # fmt: skip


@pytest.mark.parametrize("cursor", BAD_CURSORS)
def test_a_bad_cursor_is_a_param_error(store, cursor):
    for q in (ListQuery(), ListQuery(sort="title", desc=False), ListQuery(search="pizza")):
        with pytest.raises(ParamError, match="not a page cursor"):
            store.page(q, after=cursor)


def test_a_cursor_of_another_page_still_works(store):
    """A cursor is only (sort value, pk): any well-formed one gives a page, never an error."""
    _, cursor = store.page(ListQuery(sort="messages"), limit=5)
    assert cursor is not None
    for q in (ListQuery(sort="title"), ListQuery(sort="updated", desc=False), ListQuery(search="pizza")):
        rows, _ = store.page(q, after=cursor, limit=5)
        assert isinstance(rows, list)


@pytest.mark.parametrize("text", ["{", "}{", "{0}", "{x}"])
def test_braces_in_a_bad_cursor_or_sort_are_a_param_error_that_quotes_them(store, text):
    with pytest.raises(ParamError) as cursor_error:
        store.page(ListQuery(), after=text)
    with pytest.raises(ParamError) as sort_error:
        ListQuery(sort=text)
    assert text in str(cursor_error.value) and text in str(sort_error.value)


@pytest.mark.parametrize("value", [[1], {"a": 1}])
def test_a_cursor_whose_value_is_not_a_scalar_is_a_param_error(store, value):
    with pytest.raises(ParamError, match="not a page cursor"):
        store.page(ListQuery(sort="messages"), after=_b64([value, 3]))


@pytest.mark.parametrize("sort", ["nope", "Updated", "", "pk", "modified_at"])
def test_an_unknown_sort_is_a_param_error(sort):
    with pytest.raises(ParamError, match="is not one of updated, messages, title, tokens"):
        ListQuery(sort=sort)


@pytest.mark.parametrize("kw", [{"sort": "tokens"}, {"min_tokens": 1}, {"max_tokens": 1}, {"sort": "tokens", "search": "x"}])
def test_tokens_without_a_tokenizer_are_a_param_error(kw):
    with pytest.raises(ParamError, match="needs a tokenizer"):
        ListQuery(**kw)
    ListQuery(**kw, tokenizer="gpt2-chatml")


def test_errors_are_chatloom_errors(store):
    assert issubclass(ParamError, ChatloomError)
    with pytest.raises(ChatloomError):
        store.page(ListQuery(), after="nope")


# -- matching_ids -----------------------------------------------------------------------------


@pytest.mark.parametrize("q", [ListQuery(), ListQuery(language="en", sort="title", desc=False), ListQuery(search="river"),
                               ListQuery(tag="rare"), ListQuery(tag="gone")], ids=["all", "language", "search", "rare", "none"])  # fmt: skip
def test_matching_ids_yields_every_match_once_in_batches(store, q):
    expected = [r.id for r in collect(store, q, limit=1000)]
    batches = list(store.matching_ids(q, batch=7))
    assert all(batches), "no empty batch"
    assert all(len(b) == 7 for b in batches[:-1]) and all(len(b) <= 7 for b in batches)
    assert [i for b in batches for i in b] == expected
    assert len(expected) == len(set(expected))
    assert [i for b in store.matching_ids(q) for i in b] == expected  # the default batch


def test_an_action_over_a_whole_query_may_write_between_batches(store, tok):
    q = ListQuery(language="en")
    expected = {i for i, x in live(store, tok).items() if x.conv.language == "en"}
    seen: list[str] = []
    for batch in store.matching_ids(q, batch=9):
        seen += batch
        assert store.tag(batch, add=["acted"]) == len(batch)  # a revision each: they become the newest
    assert len(seen) == len(set(seen)) and set(seen) == expected
    assert set(store.ids(tag="acted")) == expected


# -- facets and vocabulary --------------------------------------------------------------------


def test_facets_count_what_python_counts(store, tok):
    xs = [x.conv for x in live(store, tok).values()]
    f = store.facets()
    assert f.conversations == len(xs) == store.count()
    assert f.deleted == N - len(xs)
    tags = Counter(t for c in xs for t in c.tags)
    assert [tuple(t) for t in f.tags] == sorted(tags.items(), key=lambda t: (-t[1], t[0]))
    assert "gone" not in dict(f.tags)
    for got, want in ((f.languages, Counter(c.language for c in xs)), (f.sources, Counter(c.source.get("format") for c in xs)),
                      (f.roles, Counter(m.role for c in xs for m in c.messages))):  # fmt: skip
        assert dict(got) == want
        assert len(got) == len(want)
        counts = [n for _, n in got]
        assert counts == sorted(counts, reverse=True)
    assert set(dict(f.roles)) == {"system", "user", "assistant", "tool"}
    assert None in dict(f.languages) and None in dict(f.sources)


def test_facets_of_an_empty_dataset(empty):
    f = empty.facets()
    assert (f.conversations, f.deleted, f.tags, f.languages, f.sources, f.roles) == (0, 0, [], [], [], [])


def test_facets_follow_edits(empty):
    empty.import_conversations([conv("a", "b", id="x", tags=["t"], language="en", source={"format": "openai"}), conv("c", id="y")])
    empty.delete(["x"])
    f = empty.facets()
    assert (f.conversations, f.deleted, f.tags, dict(f.languages), dict(f.sources), dict(f.roles)) == (
        1, 1, [], {None: 1}, {None: 1}, {"user": 1})  # fmt: skip
    empty.undo("x")
    f = empty.facets()
    assert (f.conversations, f.deleted, [tuple(t) for t in f.tags]) == (2, 0, [("t", 1)])
    assert dict(f.sources) == {"openai": 1, None: 1} and dict(f.roles) == {"user": 2, "assistant": 1}


def test_vocabulary_is_the_tags_in_use_and_the_tags_setting(store, tok):
    used = {t for x in live(store, tok).values() for t in x.conv.tags}
    assert store.vocabulary() == sorted(used)
    assert "gone" not in store.vocabulary()
    store.set_setting("tags", ["zeta", "greetings", "Aardvark", "kept but unused"])
    assert store.vocabulary() == sorted(used | {"zeta", "Aardvark", "kept but unused"})
    store.set_setting("tags", None)
    assert store.vocabulary() == sorted(used)


# -- token counts of a page -------------------------------------------------------------------


class Counting:
    """A tokenizer that tells how many conversations it was asked to count."""

    def __init__(self, tok: Any):
        self.tok, self.cache_key, self.counted = tok, tok.cache_key, 0

    def chatml_counts(self, conversations: Any) -> list[int]:
        self.counted += len(conversations)
        return self.tok.chatml_counts(conversations)


def _expected_tokens(store: Store, tok: Any, conv_id: str) -> int:
    return tok.chatml_counts([[(m.role, m.content) for m in store.get(conv_id).messages]])[0]


def test_page_tokens_counts_caches_and_recounts_after_an_edit(empty, tok):
    rng = random.Random(11)
    empty.import_conversations([_conversation(rng, f"p{i:02d}") for i in range(20)])
    counting = Counting(tok)
    key = tok.cache_key
    q = ListQuery(sort="messages", tokenizer=key)
    rows, _ = empty.page(q, limit=10)
    assert len(rows) == 10 and all(r.tokens is None for r in rows)
    assert empty.cached_token_counts(key) == []
    empty.page_tokens(counting, rows)
    assert counting.counted == 10
    want = {r.id: _expected_tokens(empty, tok, r.id) for r in rows}
    assert {r.id: r.tokens for r in rows} == want
    assert sorted(empty.cached_token_counts(key)) == sorted(want.values())
    assert empty.db.execute("SELECT count(*) FROM token_counts WHERE tokenizer = ?", (key,)).fetchone()[0] == 10

    again, _ = empty.page(q, limit=10)  # read from the cache: nothing to count
    assert {r.id: r.tokens for r in again} == want
    empty.page_tokens(counting, again)
    assert counting.counted == 10

    edited = empty.get(rows[0].id)  # a new digest: its count is stale
    edited.messages[0].content += " and then some more words than before"
    empty.put(edited)
    empty.tag([rows[1].id], add=["x"])  # metadata only: the same digest, the count still holds
    empty.set_language([rows[2].id], "xx")
    empty.delete([rows[3].id])
    after = {r.id: r for r in collect(empty, q, limit=10)}
    assert after[rows[0].id].tokens is None
    assert all(after[i].tokens == n for i, n in want.items() if i not in (rows[0].id, rows[3].id))
    assert rows[3].id not in after
    assert sorted(empty.cached_token_counts(key)) == sorted(n for i, n in want.items() if i not in (rows[0].id, rows[3].id))
    empty.page_tokens(counting, [after[rows[0].id]])
    assert counting.counted == 11
    assert after[rows[0].id].tokens == _expected_tokens(empty, tok, rows[0].id) != want[rows[0].id]

    # the whole dataset's counts: only the ones not yet cached are counted
    calls: list[int] = []
    totals = empty.token_counts(counting, progress=lambda done, total: calls.append(total))
    assert calls == [19 - 9]
    assert sorted(totals) == sorted(_expected_tokens(empty, tok, c.id) for c in empty.iter_conversations() if c.id)
    assert len(empty.cached_token_counts(key)) == 19


def test_page_tokens_of_a_search_page(store, tok):
    store.db.execute("DELETE FROM token_counts")
    q = ListQuery(search="violin", tokenizer=tok.cache_key)
    rows, _ = store.page(q, limit=7)
    assert rows and all(r.tokens is None for r in rows)
    store.page_tokens(tok, rows)
    assert all(r.tokens == _expected_tokens(store, tok, r.id) for r in rows)
    assert [r.tokens for r in store.page(q, limit=7)[0]] == [r.tokens for r in rows]


def test_the_tokens_sort_lists_the_counted_conversations(empty, tok):
    empty.import_conversations([conv(*["word"] * n, id=f"n{n}") for n in range(1, 8)])
    q = ListQuery(sort="tokens", desc=False, tokenizer=tok.cache_key)
    assert empty.page(q) == ([], None)
    rows, _ = empty.page(ListQuery(tokenizer=tok.cache_key), limit=3)
    empty.page_tokens(tok, rows)
    assert {r.id for r in collect(empty, q, limit=2)} == {r.id for r in rows}
    empty.token_counts(tok)
    assert [r.id for r in collect(empty, q, limit=2)] == [f"n{n}" for n in range(1, 8)]


# -- state_at, restore ------------------------------------------------------------------------


def _rich(conv_id: str = "r") -> Conversation:
    return Conversation(
        id=conv_id,
        title="first",
        language="en",
        tags=["a"],
        tools=TOOLS,
        source={"format": "openai", "file": "x.jsonl", "locator": "line 3"},
        meta={"persona": "p", "n": [1, 2]},
        created_at="2024-01-01T00:00:00Z",
        messages=[
            Message(role="system", content="sys"),
            Message(role="user", content="tell me about the harbor", name="bob", meta={"ts": 1}),
            Message(role="assistant", content="", tool_calls=[{"id": "1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]),
            Message(role="tool", content="ok", tool_call_id="1", name="lookup"),
            Message(role="assistant", content="the harbor is calm", train=True),
        ],
    )


def _history(store: Store) -> dict[int, Conversation | None]:
    """A conversation edited every way there is; its state right after each revision."""
    states: dict[int, Conversation | None] = {}

    def seen() -> None:
        e = store.entry("r")
        states[e.revision] = None if e.deleted else store.get("r")

    store.put(_rich())  # 1 create
    seen()
    c = store.get("r")
    c.messages[-1].content = "the harbor is stormy"
    c.title = None
    store.put(c)  # 2 edit
    seen()
    store.tag(["r"], add=["b"], remove=["a"])  # 3 tag
    seen()
    store.set_language(["r"], "de")  # 4 edit
    seen()
    store.delete(["r"])  # 5 delete
    seen()
    store.undo("r")  # 6 undo: back as at 4
    seen()
    c = store.get("r")
    c.messages.append(Message(role="user", content="and the river?"))
    store.import_conversations([c])  # 7 import
    seen()
    store.undo("r")  # 8 undo of 7
    seen()
    assert [r.op for r in store.history("r")] == ["create", "edit", "tag", "edit", "delete", "undo", "import", "undo"]
    assert sorted(states) == list(range(1, 9))
    return states


def test_state_at_is_the_conversation_right_after_each_revision(empty):
    states = _history(empty)
    assert states[1] == _rich() and states[5] is None and states[6] == states[4] and states[8] == states[6]
    for revision, state in states.items():
        assert empty.state_at("r", revision) == state, revision
    empty.delete(["r"])
    assert empty.state_at("r", 9) is None
    assert empty.state_at("r", 8) == states[8]


def test_state_at_a_revision_that_is_not_there(empty):
    empty.put(conv("a", id="x"))
    empty.put(conv("b", id="x"))
    for revision in (0, -1, 3, 100):
        with pytest.raises(NotFoundError, match="no revision"):
            empty.state_at("x", revision)
    with pytest.raises(NotFoundError):
        empty.state_at("missing", 1)


def test_restore_brings_back_an_older_state_as_a_new_revision(empty):
    states = _history(empty)
    for target, new in ((1, 9), (3, 10), (8, 11)):
        assert empty.restore("r", target) == new
        e = empty.entry("r")
        assert (e.revision, e.deleted, e.digest) == (new, False, digest(states[target]))
        assert empty.get("r") == states[target]
        assert empty.history("r")[-1].op == "restore"
        assert empty.state_at("r", new) == states[target]
    assert [r.id for r in empty.page(ListQuery(search="calm"))[0]] == []  # restored 8: the stormy harbor
    assert empty.restore("r", 1) == 12
    assert [r.id for r in empty.page(ListQuery(search="calm"))[0]] == ["r"]
    assert [r.id for r in empty.page(ListQuery(tag="a"))[0]] == ["r"]
    assert empty.page(ListQuery(tag="b"))[0] == []
    assert empty.check().ok
    undone, new = empty.undo("r")  # a restore is undone like any change
    assert (undone, new) == (12, 13) and empty.get("r") == states[8]


def test_restore_with_a_stale_base_revision_is_a_conflict(empty):
    states = _history(empty)
    with pytest.raises(ConflictError, match="based on revision 7"):
        empty.restore("r", 2, base_revision=7)
    assert empty.entry("r").revision == 8 and empty.get("r") == states[8]
    assert empty.restore("r", 2, base_revision=8) == 9
    assert empty.get("r") == states[2]


def test_restoring_a_revision_at_which_it_was_deleted_deletes_it(empty):
    states = _history(empty)
    empty.import_conversations([conv("other", "pizza", id="o")])
    assert empty.restore("r", 5) == 9
    e = empty.entry("r")
    assert e.deleted and e.revision == 9 and empty.history("r")[-1].op == "restore"
    with pytest.raises(NotFoundError, match="deleted"):
        empty.get("r")
    assert empty.state_at("r", 9) is None
    assert [r.id for r in collect(empty, ListQuery(), limit=1)] == ["o"]
    assert empty.page(ListQuery(search="harbor")) == ([], None)
    assert empty.facets().deleted == 1
    assert empty.restore("r", 5) == 9  # deleted already: nothing to do, no revision
    assert len(empty.history("r")) == 9
    assert empty.restore("r", 4) == 10  # an older state brings it back
    assert empty.get("r") == states[4]
    assert {r.id for r in empty.page(ListQuery(search="harbor"))[0]} == {"r"}
    assert empty.check().ok


def test_restore_of_a_missing_conversation_or_revision(empty):
    empty.put(conv("a", id="x"))
    with pytest.raises(NotFoundError):
        empty.restore("missing", 1)
    with pytest.raises(NotFoundError, match="no revision"):
        empty.restore("x", 2)
    assert empty.entry("x").revision == 1


# -- set_language -----------------------------------------------------------------------------


def test_set_language_changes_the_live_conversations_whose_language_differs(empty, tok):
    empty.import_conversations([
        conv("hello", "hi", id="en1", language="en"),
        conv("hallo", "hi", id="de1", language="de"),
        conv("salut", id="none1"),
        conv("hej", id="gone", language="sv"),
        conv("ciao", id="other", language="it"),
    ])  # fmt: skip
    empty.delete(["gone"])
    before = {i: empty.entry(i) for i in ("en1", "de1", "none1", "gone", "other")}
    assert empty.set_language(["en1", "de1", "none1", "gone", "de1"], "de") == 2
    after = {i: empty.entry(i) for i in before}
    for i in ("en1", "none1"):
        assert after[i].conversation.language == "de" and after[i].revision == before[i].revision + 1
        assert empty.history(i)[-1].op == "edit"
        assert after[i].digest == before[i].digest and after[i].conversation.messages == before[i].conversation.messages
        assert after[i].modified_at >= before[i].modified_at
    for i in ("de1", "gone", "other"):
        assert after[i] == before[i], i
    assert {r.id for r in collect(empty, ListQuery(language="de"))} == {"en1", "de1", "none1"}
    assert dict(empty.facets().languages) == {"de": 3, "it": 1}

    assert empty.undo("en1")[0] == 2
    assert empty.get("en1").language == "en"
    assert empty.undo("none1")[0] == 2
    assert empty.get("none1").language is None
    assert empty.set_language(["de1", "other"], None) == 2
    assert {r.id for r in collect(empty, ListQuery(language=""))} == {"none1", "de1", "other"}
    assert empty.check().ok


def test_set_language_of_a_missing_conversation_changes_nothing(empty):
    empty.import_conversations([conv("a", id="x", language="en")])
    with pytest.raises(NotFoundError):
        empty.set_language(["x", "missing"], "fr")
    e = empty.entry("x")
    assert e.conversation.language == "en" and e.revision == 1
