"""Generation tests: no key or base URL from the environment leaks in; a helper to run the CLI
in a subprocess (for kills and signals); question files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(var, raising=False)


def questions(path: Path, n: int, prefix: str = "question") -> Path:
    path.write_text("".join(f"{prefix} {i}?\n" for i in range(n)))
    return path


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1", **extra)
    return env


def spawn(*args: str, **popen: object) -> subprocess.Popen:
    """``chatloom ARGS`` in a subprocess of this test's folder and home."""
    return subprocess.Popen([sys.executable, "-m", "chatloom", *args], env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)  # type: ignore[call-overload]  # fmt: skip
