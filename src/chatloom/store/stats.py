"""Statistics: the dataset at a glance (``stats``) and tokens per conversation (``token_counts``).

Token counts are cached in table ``token_counts`` per tokenizer and conversation, valid while the
conversation's digest is the same: only new or changed conversations are counted again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import StoreError
from .db import connect
from .read import Read


class Stats(Read):
    """The statistics of ``Store``."""

    def token_counts(self, tokenizer: Any, *, progress: Callable[[int, int], None] | None = None) -> list[int]:
        """Tokens per live conversation, in storage order, as rendered in ChatML (see
        ``Tokenizer.chatml_counts``); ``progress(done, total)`` hears the counting of the
        conversations not yet cached."""
        key = tokenizer.cache_key
        rows = self.db.execute(
            """SELECT c.pk, c.digest, t.tokens FROM conversations c
               LEFT JOIN token_counts t ON t.tokenizer = ? AND t.conv = c.pk AND t.digest = c.digest
               WHERE c.deleted = 0 ORDER BY c.msg_start""",
            (key,),
        ).fetchall()
        missing = {pk for pk, _, tokens in rows if tokens is None}
        counts = {pk: tokens for pk, _, tokens in rows if tokens is not None}
        cache = True  # a read-only dataset is counted all the same, without keeping the counts
        if missing:
            done = 0
            for batch in self._iter_texts(missing, batch=2000):
                sums = tokenizer.chatml_counts([texts for _, _, texts in batch])
                if cache:
                    try:
                        with self._write():  # each count with the digest its texts were read with
                            self.db.executemany(
                                "INSERT OR REPLACE INTO token_counts (tokenizer, conv, digest, tokens) VALUES (?, ?, ?, ?)",
                                [(key, pk, dg, n) for (pk, dg, _), n in zip(batch, sums)],
                            )
                    except (StoreError, sqlite3.OperationalError) as err:
                        if "read-only" not in str(err) and "readonly" not in str(err):
                            raise
                        cache = False
                counts.update((pk, n) for (pk, _, _), n in zip(batch, sums))
                done += len(batch)
                if progress is not None:
                    progress(done, len(missing))
        return [counts[pk] for pk, _, _ in rows]

    def _iter_texts(self, pks: set[int], batch: int) -> Iterator[list[tuple[int, str, list[tuple[str, str]]]]]:
        """(pk, digest, [(role, content)]) for the given conversations, in batches, streaming, in
        one snapshot (the merge of ``iter_conversations``, reading only role and content)."""
        db = connect(self.path)
        try:
            db.execute("BEGIN")
            convs = db.execute("SELECT pk, digest, msg_start, n_messages FROM conversations WHERE deleted = 0 ORDER BY msg_start")
            msgs = db.execute("SELECT pk, role, content FROM messages ORDER BY pk")
            pending = next(msgs, None)
            out: list[tuple[int, str, list[tuple[str, str]]]] = []
            for pk, dg, start, n in convs:
                texts = []
                while pending is not None:
                    msg_pk, role, content = pending
                    if msg_pk >= start + n:
                        break
                    if msg_pk >= start:  # below it: stray rows
                        texts.append((role, content))
                    pending = next(msgs, None)
                if pk in pks:
                    out.append((pk, dg, texts))
                    if len(out) >= batch:
                        yield out
                        out = []
            if out:
                yield out
        finally:
            db.close()

    def stats(self, tokenizer: Any | None = None, *, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """The dataset at a glance (its counts from one snapshot); with a tokenizer, token counts
        per conversation too."""
        with self._reading():
            out = self._counts()
        n = out["conversations"]
        out["turns"] = {"mean": round(out["messages"] / n, 2) if n else 0}
        if tokenizer is not None:
            import numpy as np

            counts = np.asarray(self.token_counts(tokenizer, progress=progress), dtype=np.int64)
            n = len(counts)
            out["tokens"] = {
                "tokenizer": tokenizer.name,
                "total": int(counts.sum()),
                "mean": round(float(counts.mean()), 2) if n else 0,
                "p50": int(np.percentile(counts, 50)) if n else 0,
                "p95": int(np.percentile(counts, 95)) if n else 0,
                "max": int(counts.max()) if n else 0,
            }
            out["_token_counts"] = counts
        return out

    def _counts(self) -> dict[str, Any]:
        db = self.db
        return {
            "dataset": str(self.path),
            "conversations": self.count(),
            "messages": db.execute("SELECT coalesce(sum(n_messages), 0) FROM conversations WHERE deleted = 0").fetchone()[0],
            "deleted": db.execute("SELECT count(*) FROM conversations WHERE deleted = 1").fetchone()[0],
            "by_role": dict(db.execute("SELECT role, count(*) FROM messages GROUP BY role ORDER BY count(*) DESC")),
            "by_tag": dict(db.execute("SELECT tag, count(*) FROM tags GROUP BY tag ORDER BY count(*) DESC, tag")),
            "by_language": dict(
                db.execute(
                    "SELECT coalesce(language, 'unknown'), count(*) FROM conversations WHERE deleted = 0 "
                    "GROUP BY 1 ORDER BY 2 DESC, 1"
                )
            ),
            "by_source": dict(
                db.execute(
                    "SELECT coalesce(json_extract(source, '$.format'), 'unknown'), count(*) FROM conversations "
                    "WHERE deleted = 0 GROUP BY 1 ORDER BY 2 DESC, 1"
                )
            ),
        }
