"""LLM-assisted data through any OpenAI-compatible endpoint (DESIGN §7): keys and endpoints
(``settings``), the generators (``jobs``: reply, qa, selfchat), the journaled runner
(``runner``, ``client``), planning and status (``api``) and batch files (``batch``)."""

from .api import Plan, estimate, generate, prepare, rebuild, run_name, status
from .client import Limits
from .jobs import QAJob, ReplyJob, SelfChatJob, Settings
from .settings import Endpoint

__all__ = ["Endpoint", "Limits", "Plan", "QAJob", "ReplyJob", "SelfChatJob", "Settings", "estimate", "generate", "prepare", "rebuild",
           "run_name", "status"]  # fmt: skip
