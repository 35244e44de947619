"""The import journal (table ``imports``): one row per file and run, so that an import killed
half-way is known again when it is run again.

    run, interrupted = store.journal_begin(file, "whatsapp", fingerprint(path))
    counts = store.import_conversations(convs, journal=run)   # the row follows every batch
    store.journal_end(run, counts, status="done")

A run starts as ``running``; it ends ``done`` or ``failed``, or, when it never ended (a kill, a
crash, Ctrl+C), the next run of the same file (same ``fingerprint``) marks it ``interrupted`` and
hears what it had committed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .db import StoreBase
from .rows import now

if TYPE_CHECKING:
    from .bulk import ImportCounts


def fingerprint(path: Path) -> str:
    """Size, mtime and the hash of the first MiB: cheap, and enough to know a file again."""
    st = path.stat()
    with open(path, "rb") as f:
        head = hashlib.sha256(f.read(1 << 20)).hexdigest()[:16]
    return f"{st.st_size}:{st.st_mtime_ns}:{head}"


class Journal(StoreBase):
    """The import journal of ``Store``."""

    def journal_begin(self, file: str, fmt: str, fingerprint: str) -> tuple[int, dict[str, Any] | None]:
        """Record the start of an import of one file. Returns the run's id and, when an earlier
        run of the same file (same fingerprint) never finished, what that run had committed."""
        with self._write():
            found = self.db.execute(
                "SELECT pk, records, added, updated FROM imports WHERE file = ? AND fingerprint = ? AND status = 'running' "
                "ORDER BY pk DESC LIMIT 1",
                (file, fingerprint),
            ).fetchone()
            interrupted = None
            if found is not None:
                pk, records, added, updated = found
                self.db.execute("UPDATE imports SET status = 'interrupted' WHERE pk = ?", (pk,))
                interrupted = {"records": records, "added": added, "updated": updated}
            cur = self.db.execute(
                "INSERT INTO imports (file, format, fingerprint, status, started_at) VALUES (?, ?, ?, 'running', ?)",
                (file, fmt, fingerprint, now()),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid, interrupted

    def _journal_update(self, run: int, c: ImportCounts, status: str | None = None) -> None:
        """The counts so far of run ``run``; with a ``status``, its end."""
        self.db.execute(
            "UPDATE imports SET records = ?, added = ?, updated = ?, unchanged = ?, "
            "status = coalesce(?, status), finished_at = CASE WHEN ? IS NULL THEN NULL ELSE ? END WHERE pk = ?",
            (c.records, c.added, c.updated, c.unchanged, status, status, now(), run),
        )

    def journal_end(self, run: int, counts: ImportCounts, *, status: str, bad: int = 0) -> None:
        """Record how run ``run`` ended (``done`` or ``failed``), its counts and its bad records."""
        with self._write():
            self._journal_update(run, counts, status)
            self.db.execute("UPDATE imports SET bad = ? WHERE pk = ?", (bad, run))
