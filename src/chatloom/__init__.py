"""chatloom: real conversations in, curated chat training data out.

    from chatloom import Store, Conversation, Message, get_source, get_tokenizer

    with Store("chatloom.db", create=True) as store:
        store.import_conversations(get_source("chatterbot").read(path, Reader(str(path))))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import ChatloomError, ConflictError, NotFoundError, SourceError, StoreError, UsageError
from .hookspecs import hookimpl
from .model import Conversation, Message, digest

if TYPE_CHECKING:
    from .formats import Format, get_format
    from .sources import Reader, Source, get_source
    from .store import Store
    from .tokens.tokenizer import get_tokenizer

# Imported on first use: a process that needs one part (a tokenize worker imports chatloom.tokens,
# and with it this package) does not pay for the store, the formats and the sources (0.1 s).
_LAZY = {"Format": "formats", "get_format": "formats", "Reader": "sources", "Source": "sources", "get_source": "sources",
         "Store": "store", "get_tokenizer": "tokens.tokenizer"}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'chatloom' has no attribute {name!r}")

__all__ = [
    "ChatloomError",
    "ConflictError",
    "Conversation",
    "Format",
    "Message",
    "NotFoundError",
    "Reader",
    "Source",
    "SourceError",
    "Store",
    "StoreError",
    "UsageError",
    "digest",
    "get_format",
    "get_source",
    "get_tokenizer",
    "hookimpl",
]
