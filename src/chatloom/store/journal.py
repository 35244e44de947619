"""The import journal (table ``imports``): one row per file and run, so that an import killed
half-way is known again when it is run again, and a file that fails is taken back whole.

    run = store.journal_begin(file, "whatsapp", fingerprint(path))   # reads only
    counts = store.import_conversations(convs, journal=run)   # the row is written with the
                                                              # first batch, and follows each one
    store.journal_end(run, counts, status="done")
    # or, when the file failed part-way: store.undo_import(run) takes back what it committed

A run's row is written in the transaction of the first batch it commits, so a file that fails
before that leaves no trace at all, not even in the journal. A run starts as ``running``; it ends
``done``, or ``failed`` (its changes taken back: see ``Bulk.undo_import``), or, when it never
ended (a kill, a crash, Ctrl+C: what it committed is kept), the next run of the same file (same
``fingerprint``) marks it ``interrupted`` and hears what it had committed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
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


@dataclass
class ImportRun:
    """One file's import, as the journal knows it.

    ``pk``: its row in ``imports``, None until its first batch is committed; ``interrupted``: what
    an earlier run of the same file that never ended had committed (None: there was none), and
    ``earlier``: that run's row, marked ``interrupted`` when this run writes its own."""

    file: str
    format: str
    fingerprint: str
    interrupted: dict[str, Any] | None = None
    earlier: int | None = None
    pk: int | None = None


class Journal(StoreBase):
    """The import journal of ``Store``."""

    def journal_begin(self, file: str, fmt: str, fingerprint: str) -> ImportRun:
        """A run of the import of one file, with what an earlier run of the same file (same
        fingerprint) that never finished had committed. Reads only: the run's row is written
        with its first batch (``_journal_row``)."""
        found = self.db.execute(
            "SELECT pk, records, added, updated FROM imports WHERE file = ? AND fingerprint = ? AND status = 'running' "
            "ORDER BY pk DESC LIMIT 1",
            (file, fingerprint),
        ).fetchone()
        run = ImportRun(file, fmt, fingerprint)
        if found is not None:
            run.earlier, records, added, updated = found
            run.interrupted = {"records": records, "added": added, "updated": updated}
        return run

    def _journal_row(self, run: ImportRun) -> int:
        """Write run ``run``'s row (inside the caller's write transaction), marking the earlier,
        unfinished run of the same file ``interrupted``; returns the row's pk. ``run.pk`` is the
        caller's to set once the transaction is committed."""
        if run.pk is not None:
            return run.pk
        if run.earlier is not None:
            self.db.execute("UPDATE imports SET status = 'interrupted' WHERE pk = ? AND status = 'running'", (run.earlier,))
        cur = self.db.execute(
            "INSERT INTO imports (file, format, fingerprint, status, started_at) VALUES (?, ?, ?, 'running', ?)",
            (run.file, run.format, run.fingerprint, now()),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def _journal_update(self, pk: int, c: ImportCounts, status: str | None = None) -> None:
        """The counts so far of run ``pk``; with a ``status``, its end."""
        self.db.execute(
            "UPDATE imports SET records = ?, added = ?, updated = ?, unchanged = ?, "
            "status = coalesce(?, status), finished_at = CASE WHEN ? IS NULL THEN NULL ELSE ? END WHERE pk = ?",
            (c.records, c.added, c.updated, c.unchanged, status, status, now(), pk),
        )

    def journal_end(self, run: ImportRun, counts: ImportCounts, *, status: str, bad: int = 0) -> None:
        """Record how run ``run`` ended (``done`` or ``failed``), its counts and its bad records
        (a run that committed nothing gets its row now)."""
        with self._write():
            pk = self._journal_row(run)
            self._journal_update(pk, counts, status)
            self.db.execute("UPDATE imports SET bad = ? WHERE pk = ?", (bad, pk))
        run.pk = pk
