"""The dataset store (SQLite): ``Store`` and what its methods take and return. See ``store.py``
for the parts, and ``bulk.py`` for the bulk-write interface (``make_batches``, ``Batch``)."""

from .bulk import Batch, ImportCounts, make_batches
from .check import CheckResult, SoundCheck
from .db import DEFAULT_DATASET, dataset_path
from .edit import Revision
from .generation import Completion, GenRow, PlanCounts, PlannedRequest
from .journal import ImportRun, fingerprint
from .listing import Facets, ListQuery, ListRow
from .read import Entry, Summary, fts_query
from .store import Store

__all__ = [
    "DEFAULT_DATASET",
    "Batch",
    "CheckResult",
    "Completion",
    "Entry",
    "Facets",
    "GenRow",
    "ImportCounts",
    "ImportRun",
    "ListQuery",
    "ListRow",
    "PlanCounts",
    "PlannedRequest",
    "Revision",
    "SoundCheck",
    "Store",
    "Summary",
    "dataset_path",
    "fingerprint",
    "fts_query",
    "make_batches",
]
