"""Where chatloom keeps its own files: ``$CHATLOOM_HOME``, else ``~/.chatloom``."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("CHATLOOM_HOME") or Path.home() / ".chatloom")


def cache_dir(*parts: str) -> Path:
    path = home().joinpath("cache", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
