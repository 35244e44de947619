"""chatloom: real conversations in, curated chat training data out.

    from chatloom import Store, Conversation, Message, get_source, get_tokenizer

    with Store("chatloom.db", create=True) as store:
        store.import_conversations(get_source("chatterbot").read(path, Reader(str(path))))
"""

from .errors import ChatloomError, ConflictError, NotFoundError, SourceError, StoreError, UsageError
from .formats import Format, get_format
from .hookspecs import hookimpl
from .model import Conversation, Message, digest
from .sources import Reader, Source, get_source
from .store import Store
from .tokens.tokenizer import get_tokenizer

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
