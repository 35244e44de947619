"""The dataset store: one SQLite file per dataset (DESIGN §2), one ``Store`` class made of one
part per job.

    store = Store("chatloom.db", create=True)       # migrates itself when opened
    counts = store.import_conversations(convs)      # batched, idempotent upsert by id
    conv = store.get("chitchat:abc")
    store.put(edited, base_revision=3)               # ConflictError if someone saved revision 4
    store.undo("chitchat:abc")

The parts, each a class in its own module, each standing on the ones it uses:

    db.py       StoreBase   opening the file (WAL, migrations), the write transaction
    rows.py                 rows ↔ Conversation / Message, read by column name
    read.py     Read        get, entry, ids, count, is_empty, iter_conversations, summaries, search
    edit.py     Edit        put, delete, tag, history, undo, settings
    journal.py  Journal     the import journal: journal_begin, journal_end; ImportRun, fingerprint
    bulk.py     Bulk        import_conversations, import_batches, undo_import, preview; make_batches, Batch
    stats.py    Stats       stats, token_counts
    sync.py     Sync        states (diff and sync), sync_base, conflicts, remotes
    listing.py  Listing     page (keyset pages, filters, sorts, search), matching_ids, facets, page_tokens
    check.py    Check       check, repair_fts, sqlite_problems, start_sound_check (SoundCheck)
    generation.py Generations the generation journal: gen_run, gen_plan, gen_done, gen_fail, …

Layout choices, each for the hot path:
- a conversation's messages are one contiguous range of ``messages.pk`` (``msg_start``,
  ``n_messages``), so reading one is a range scan and streaming all of them is a merge of two
  ordered cursors, with no secondary index on ``messages`` to maintain during bulk import;
- the FTS5 index is external-content over ``messages`` and is filled per batch with one
  ``INSERT … SELECT`` over the batch's range, not row by row through triggers;
- every write runs in ``BEGIN IMMEDIATE`` (one writer at a time, others wait on busy_timeout),
  and a bulk import commits whole batches: a crash leaves a batch or nothing;
- every read of a conversation, or of a page of them, runs in one read transaction: one
  snapshot, whatever others commit meanwhile.

Every public method's SQLite errors come out as a ``StoreError`` that names the file (and, for
a damaged file, what can be done): ``names_its_file``, applied to each of them here.
"""

from __future__ import annotations

import inspect

from .bulk import Bulk
from .check import Check
from .db import names_its_file
from .generation import Generations
from .listing import Listing
from .sync import Sync


def _errors_name_the_file(cls: type) -> type:
    """Wrap every public method ``cls`` has (its own or inherited) in ``names_its_file``."""
    for name in dir(cls):
        attr = inspect.getattr_static(cls, name)
        if not name.startswith("_") and inspect.isfunction(attr):
            setattr(cls, name, names_its_file(attr))
    return cls


@_errors_name_the_file
class Store(Bulk, Listing, Sync, Check, Generations):
    """A dataset: one SQLite file. Opening it migrates it; ``create=False`` refuses a missing file.

    :param path: the dataset file (default: ``$CHATLOOM_DATASET``, else ./chatloom.db)
    :param create: create the file when it does not exist
    """
