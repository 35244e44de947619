"""Token files for training: ``tokenize`` writes them, ``TokenFile`` reads them.

    from chatloom.tokens import Encoder, TokenFile, tokenize
"""

from .encode import CheckError, Encoder, Report
from .reader import PackedConversations, TokenFile, attention_mask
from .writer import tokenize

__all__ = ["CheckError", "Encoder", "PackedConversations", "Report", "TokenFile", "attention_mask", "tokenize"]
