"""Tokenizers, chat templates' masks and token files for training: ``tokenize`` writes them,
``TokenFile`` reads them.

    from chatloom.tokens import Encoder, TokenFile, tokenize
    from chatloom.tokens.tokenizer import get_tokenizer

The names below load on first use, so that importing ``chatloom.tokens.tokenizer`` (as the CLI
does for its defaults) does not load numpy and the encoder.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .encode import CheckError, Encoder, Report
    from .reader import PackedConversations, TokenFile, attention_mask
    from .writer import tokenize

_WHERE = {"CheckError": "encode", "Encoder": "encode", "Report": "encode", "PackedConversations": "reader",
          "TokenFile": "reader", "attention_mask": "reader", "tokenize": "writer"}

__all__ = ["CheckError", "Encoder", "PackedConversations", "Report", "TokenFile", "attention_mask", "tokenize"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
