"""The dataset store (SQLite). See ``store.py``."""

from .store import (
    DEFAULT_DATASET,
    CheckResult,
    Entry,
    ImportCounts,
    Revision,
    Store,
    Summary,
    dataset_path,
    fingerprint,
    fts_query,
)

__all__ = [
    "DEFAULT_DATASET",
    "CheckResult",
    "Entry",
    "ImportCounts",
    "Revision",
    "Store",
    "Summary",
    "dataset_path",
    "fingerprint",
    "fts_query",
]
