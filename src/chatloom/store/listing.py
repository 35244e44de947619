"""Listing a big dataset a page at a time: ``page`` (filters, sort, full-text search), the ids a
query matches (``matching_ids``, for actions over a whole query), the counts a dashboard shows
(``facets``), and the token counts of a page (``page_tokens``, cached per digest).

Every page is a keyset page: the cursor is the last row's sort value and pk, and the next page
is the range after it in an index (migration 4), so page 10,000 costs what page 1 does. A
search walks the full-text index by message rowid, newest first; a conversation's messages are
one contiguous range of rowids, so its matches come together and the cursor is the first
message of the last conversation shown.

    q = ListQuery(tag="greetings", sort="messages")
    rows, cursor = store.page(q, limit=50)
    more, cursor = store.page(q, after=cursor, limit=50)
"""

from __future__ import annotations

import base64
import re
import sqlite3
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import ChatloomError, ParamError, StoreError
from .read import fts_query
from .rows import loads
from .stats import Stats

#: sort name → the expression a page is ordered by (each has an index: migration 4)
SORTS = {"updated": "c.modified_at", "messages": "c.n_messages", "title": "ifnull(c.title, '')", "tokens": "t.tokens"}
#: a tag with at most this many conversations drives the query (its rows, then sorted);
#: a commoner one is probed row by row along the sort's index
_RARE = 5000
#: a conversation's source, as the list filters and counts it: the format it was imported from
_SOURCE = "json_extract(c.source, '$.format')"


@dataclass
class ListQuery:
    """What a list shows: a search, filters, a sort. ``tokenizer`` is the token-count cache key
    (``Tokenizer.cache_key``) that the token filters, the token sort and the column read."""

    search: str | None = None
    tag: str | None = None
    language: str | None = None
    source: str | None = None
    min_tokens: int | None = None
    max_tokens: int | None = None
    min_messages: int | None = None
    max_messages: int | None = None
    has_tools: bool | None = None
    edited_since: str | None = None
    generated: bool | None = None
    sort: str = "updated"
    desc: bool = True
    tokenizer: str | None = None

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise ParamError(f"sort: {_braced(repr(self.sort))} is not one of {', '.join(SORTS)}")
        if self.search is not None and not self.search.strip():
            self.search = None
        if self.tokenizer is None and (self.sort == "tokens" or self.min_tokens is not None or self.max_tokens is not None):
            raise ParamError("sorting or filtering by tokens needs a tokenizer")


@dataclass
class ListRow:
    """One row of a list page."""

    pk: int
    id: str
    title: str | None
    preview: str
    tags: list[str]
    language: str | None
    source: str | None  # the format it was imported from
    n_messages: int
    revision: int
    modified_at: str
    digest: str
    tokens: int | None = None
    snippet: str | None = None  # the best match, \x02…\x03 around each matched word


@dataclass
class Facets:
    """What the dashboard counts."""

    conversations: int = 0
    deleted: int = 0
    tags: list[tuple[str, int]] = field(default_factory=list)
    languages: list[tuple[str | None, int]] = field(default_factory=list)
    sources: list[tuple[str | None, int]] = field(default_factory=list)
    roles: list[tuple[str, int]] = field(default_factory=list)


def _cursor(value: Any, pk: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([value, pk])).decode().rstrip("=")


def _uncursor(text: str) -> tuple[Any, int]:
    try:
        value, pk = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(pk, int) or isinstance(pk, bool) or not (value is None or isinstance(value, str | int | float)):
            raise ValueError
        return value, pk
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise ParamError(f"not a page cursor: {_braced(repr(text[:40]))}") from None


_WORD = re.compile(r"\w+")


def _fold(word: str) -> str:
    """A word as the full-text index compares it (unicode61, remove_diacritics 2): lower case,
    without its diacritics."""
    return "".join(c for c in unicodedata.normalize("NFKD", word.casefold()) if not unicodedata.combining(c))


def _snippet(text: str, search: str, width: int = 12) -> str:
    """About ``width`` words of ``text`` around its first match of a word of ``search``, the
    matched words between \x02 and \x03, '…' where it is cut (as FTS5's snippet() marks them)."""
    wanted = {_fold(w) for w in _WORD.findall(search)}
    words = list(_WORD.finditer(text))
    hits = [i for i, m in enumerate(words) if _fold(m.group()) in wanted]
    if not words:
        return text[:200]
    first = hits[0] if hits else 0
    lo = max(0, min(first - width // 4, len(words) - width))
    hi = min(len(words), lo + width)
    start = words[lo].start() if lo else 0
    end = words[hi - 1].end() if hi < len(words) else len(text)
    out, at = [], start
    for i in range(lo, hi):
        m = words[i]
        if i in hits:
            out += [text[at : m.start()], "\x02", m.group(), "\x03"]
            at = m.end()
    out.append(text[at:end])
    return ("…" if start else "") + "".join(out).strip() + ("…" if end < len(text) else "")


def _braced(text: str) -> str:
    """User text inside a ParamError's message, whose braces name parameters."""
    return text.replace("{", "{{").replace("}", "}}")


_PAGE_COLUMNS = f"""c.pk, c.id, c.title, c.tags, c.language, {_SOURCE}, c.n_messages, c.revision, c.modified_at, c.digest,
    (SELECT substr(m.content, 1, 200) FROM messages m
      WHERE m.pk >= c.msg_start AND m.pk < c.msg_start + c.n_messages AND m.role != 'system' ORDER BY m.pk LIMIT 1)"""


class Listing(Stats):
    """The list API of ``Store``."""

    def _filters(self, q: ListQuery) -> tuple[list[str], list[Any], bool]:
        """WHERE terms over ``c`` (and ``t`` for tokens), their arguments, and whether ``t`` is joined."""
        where, args = ["c.deleted = 0"], []
        if q.tag is not None:
            (n,) = self.db.execute("SELECT count(*) FROM (SELECT 1 FROM tags WHERE tag = ? LIMIT ?)", (q.tag, _RARE + 1)).fetchone()
            if n <= _RARE:
                where.append("c.pk IN (SELECT conv FROM tags WHERE tag = ?)")
            else:
                where.append("EXISTS (SELECT 1 FROM tags WHERE tag = ? AND conv = c.pk)")
            args.append(q.tag)
        for column, value in (("c.language", q.language), (_SOURCE, q.source)):
            if value is not None:
                where.append(f"{column} IS ?" if value == "" else f"{column} = ?")
                args.append(None if value == "" else value)
        tokens = q.sort == "tokens" or q.min_tokens is not None or q.max_tokens is not None
        for term, value in (("c.n_messages >= ?", q.min_messages), ("c.n_messages <= ?", q.max_messages),
                            ("c.modified_at >= ?", q.edited_since), ("t.tokens >= ?", q.min_tokens), ("t.tokens <= ?", q.max_tokens)):
            if value is not None:
                where.append(term)
                args.append(value)
        if q.has_tools is not None:
            where.append("c.tools IS NOT NULL" if q.has_tools else "c.tools IS NULL")
        if q.generated is not None:
            where.append(("" if q.generated else "NOT ") + "EXISTS (SELECT 1 FROM tags WHERE tag = 'generated' AND conv = c.pk)")
        return where, args, tokens

    def page(self, q: ListQuery, *, after: str | None = None, limit: int = 50) -> tuple[list[ListRow], str | None]:
        """One page of the list and the cursor of the next (None: this is the last)."""
        with self._reading():
            rows, cursor = self._search_page(q, after, limit) if q.search else self._sorted_page(q, after, limit)
            if q.tokenizer is not None:
                self._known_tokens(q.tokenizer, [r for r in rows if r.tokens is None])
        return rows, cursor

    def _sorted_page(self, q: ListQuery, after: str | None, limit: int) -> tuple[list[ListRow], str | None]:
        """The page's pks and sort values first (over the sort's index, no other column read),
        then their rows. After a cursor, the rows that tie with its value (one import gives a
        million rows one ``modified_at``) and those past it are two range scans, not one scan
        of everything before the cursor."""
        where, args, tokens = self._filters(q)
        key = SORTS[q.sort]
        pk_key = "t.conv" if q.sort == "tokens" else "c.pk"
        if q.sort == "tokens":
            frm = "token_counts t JOIN conversations c ON c.pk = t.conv AND t.tokenizer = ? AND t.digest = c.digest"
        elif tokens:
            frm = "conversations c JOIN token_counts t ON t.tokenizer = ? AND t.conv = c.pk AND t.digest = c.digest"
        else:
            frm = "conversations c"
        head = [q.tokenizer] if tokens else []
        order = "DESC" if q.desc else "ASC"
        past = "<" if q.desc else ">"
        select = f"SELECT {pk_key} AS p, {key} AS k, {'t.tokens' if tokens else 'NULL'} AS n FROM {frm}"
        base = " AND ".join(where)
        if after is None:
            sql = f"{select} WHERE {base} ORDER BY k {order}, p {order} LIMIT ?"
            params = [*head, *args, limit + 1]
        else:
            value, pk = _uncursor(after)
            sql = (f"SELECT * FROM ({select} WHERE {base} AND {key} = ? AND {pk_key} {past} ? ORDER BY p {order} LIMIT ?) "
                   f"UNION ALL SELECT * FROM ({select} WHERE {base} AND {key} {past} ? ORDER BY k {order}, p {order} LIMIT ?) "
                   f"ORDER BY k {order}, p {order} LIMIT ?")  # fmt: skip
            params = [*head, *args, value, pk, limit + 1, *head, *args, value, limit + 1, limit + 1]
        found = self.db.execute(sql, params).fetchall()
        by_pk = self._rows_of([p for p, _, _ in found[:limit]])
        rows = []
        for p, _, n in found[:limit]:
            if p in by_pk:
                by_pk[p].tokens = n
                rows.append(by_pk[p])
        cursor = _cursor(found[limit - 1][1], found[limit - 1][0]) if len(found) > limit else None
        return rows, cursor

    def _search_page(self, q: ListQuery, after: str | None, limit: int) -> tuple[list[ListRow], str | None]:
        where, args, tokens = self._filters(q)
        join = "JOIN token_counts t ON t.tokenizer = ? AND t.conv = c.pk AND t.digest = c.digest" if tokens else ""
        head = [q.tokenizer] if tokens else []
        terms = ["messages_fts MATCH ?", *where]
        args = [*head, fts_query(q.search or ""), *args]
        if after is not None:
            _, before = _uncursor(after)
            terms.append("messages_fts.rowid < ?")
            args.append(before)
        sql = f"""SELECT m.conv, c.msg_start, messages_fts.rowid
                  FROM messages_fts JOIN messages m ON m.pk = messages_fts.rowid JOIN conversations c ON c.pk = m.conv {join}
                  WHERE {' AND '.join(terms)} ORDER BY messages_fts.rowid DESC"""
        found: dict[int, tuple[int, int]] = {}  # conversation pk → (its first message, its newest match)
        more = False
        try:
            for conv, start, rowid in self.db.execute(sql, args):
                if conv in found:
                    continue
                if len(found) == limit:
                    more = True
                    break
                found[conv] = (start, rowid)
            # a snippet for the match each row shows, made here from its text: FTS5's snippet()
            # seeks in the word's whole doclist for each row (11 ms for 50 rows of a common word
            # in a million chats), and was paid for every match read on the way
            rowids = {rowid: conv for conv, (_, rowid) in found.items()}
            snippets = {rowids[pk]: _snippet(text, q.search or "") for pk, text in self.db.execute(
                "SELECT pk, content FROM messages WHERE pk IN (SELECT value FROM json_each(?))",
                (orjson.dumps(list(rowids)).decode(),))}  # fmt: skip
        except sqlite3.OperationalError as err:
            raise ChatloomError(f"{self.path}: search: {err}") from None
        by_pk = self._rows_of(list(found))
        rows = []
        for pk in found:
            if pk in by_pk:
                by_pk[pk].snippet = snippets[pk].replace("\n", " ")
                rows.append(by_pk[pk])
        cursor = _cursor(None, found[list(found)[-1]][0]) if more else None
        return rows, cursor

    def _rows_of(self, pks: Sequence[int]) -> dict[int, ListRow]:
        sql = f"SELECT {_PAGE_COLUMNS} FROM conversations c WHERE c.pk IN (SELECT value FROM json_each(?))"
        return {r[0]: self._list_row(r) for r in self.db.execute(sql, (orjson.dumps(list(pks)).decode(),))}

    @staticmethod
    def _list_row(r: Sequence[Any], tokens: int | None = None) -> ListRow:
        pk, conv_id, title, tags, language, source, n_messages, revision, modified_at, dg, preview = r
        return ListRow(pk, conv_id, title, (preview or "").replace("\n", " "), loads(tags, []), language, source, n_messages,
                       revision, modified_at, dg, tokens)  # fmt: skip

    def _known_tokens(self, key: str, rows: Sequence[ListRow]) -> None:
        """Fill ``tokens`` of the rows whose count is cached for their digest."""
        if not rows:
            return
        found = dict(self.db.execute(
            "SELECT t.conv, t.tokens FROM token_counts t JOIN conversations c ON c.pk = t.conv AND c.digest = t.digest "
            "WHERE t.tokenizer = ? AND t.conv IN (SELECT value FROM json_each(?))",
            (key, orjson.dumps([r.pk for r in rows]).decode()),
        ).fetchall())  # fmt: skip
        for r in rows:
            r.tokens = found.get(r.pk, r.tokens)

    def page_tokens(self, tokenizer: Any, rows: Sequence[ListRow]) -> None:
        """Count (and cache, per digest) the tokens of the rows that have no count yet."""
        missing = {r.pk for r in rows if r.tokens is None}
        if not missing:
            return
        with self._reading():  # these rows only, by their message ranges (_iter_texts reads the whole dataset)
            batch = []
            for pk, dg, start, n in self.db.execute(
                "SELECT pk, digest, msg_start, n_messages FROM conversations WHERE deleted = 0 AND pk IN (SELECT value FROM json_each(?))",
                (orjson.dumps(sorted(missing)).decode(),),
            ).fetchall():
                texts = self.db.execute("SELECT role, content FROM messages WHERE pk >= ? AND pk < ? ORDER BY pk", (start, start + n)).fetchall()
                batch.append((pk, dg, texts))
        sums = tokenizer.chatml_counts([texts for _, _, texts in batch])
        counts = {pk: n for (pk, _, _), n in zip(batch, sums)}
        try:
            with self._write():
                self.db.executemany(
                    "INSERT OR REPLACE INTO token_counts (tokenizer, conv, digest, tokens) VALUES (?, ?, ?, ?)",
                    [(tokenizer.cache_key, pk, dg, n) for (pk, dg, _), n in zip(batch, sums)],
                )
        except (StoreError, sqlite3.OperationalError):
            pass  # a read-only dataset: counted, not kept
        for r in rows:
            r.tokens = counts.get(r.pk, r.tokens)

    def matching_ids(self, q: ListQuery, *, batch: int = 2000) -> Iterator[list[str]]:
        """The ids of every conversation the query matches, in batches, page by page (each
        page a snapshot of its own: an action over a whole query may write between pages)."""
        cursor: str | None = None
        while True:
            rows, cursor = self.page(q, after=cursor, limit=batch)
            if rows:
                yield [r.id for r in rows]
            if cursor is None:
                return

    def facets(self) -> Facets:
        """Counts by tag, language, source and role, in one snapshot."""
        with self._reading():
            f = Facets()
            f.conversations, f.deleted = self.db.execute(
                "SELECT count(*) - coalesce(sum(deleted), 0), coalesce(sum(deleted), 0) FROM conversations").fetchone()
            f.tags = self.db.execute("SELECT tag, count(*) n FROM tags GROUP BY tag ORDER BY n DESC, tag").fetchall()
            f.languages = self.db.execute(
                "SELECT language, count(*) n FROM conversations WHERE deleted = 0 GROUP BY language ORDER BY n DESC").fetchall()
            f.sources = self.db.execute(
                f"SELECT {_SOURCE} s, count(*) n FROM conversations c WHERE deleted = 0 GROUP BY s ORDER BY n DESC").fetchall()
            f.roles = self.db.execute("SELECT role, count(*) n FROM messages GROUP BY role ORDER BY n DESC").fetchall()
        return f

    def vocabulary(self) -> list[str]:
        """Every tag in use, then the dataset's ``tags`` setting (a vocabulary kept before use)."""
        used = [t for (t,) in self.db.execute("SELECT DISTINCT tag FROM tags ORDER BY tag")]
        kept = self.get_setting("tags", []) or []
        return sorted(set(used) | {str(t) for t in kept})

    def cached_token_counts(self, key: str) -> list[int]:
        """The token counts already cached for the live conversations (``key``: the tokenizer's
        cache key), for their current digest; ``token_counts`` counts the rest."""
        return [n for (n,) in self.db.execute(
            "SELECT t.tokens FROM token_counts t JOIN conversations c ON c.pk = t.conv AND c.digest = t.digest "
            "WHERE t.tokenizer = ? AND c.deleted = 0", (key,))]  # fmt: skip
