"""The studio under test: ``chatloom studio`` started on a free loopback port (a real server,
in its own process), and Debian's chromium driven by Playwright (sync API) against it.

``make test`` installs chromium when it is missing; where it cannot (no apt, not root), the
browser tests are skipped with a message that says how to install it."""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.serve.conftest import _pump, stop_server

URL = re.compile(r"at (http://\S+/)")
CSRF = re.compile(r'<meta name="csrf" content="([^"]+)">')


@dataclass
class Studio:
    proc: subprocess.Popen
    url: str
    dataset: Path
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)  # type: ignore[arg-type]

    def csrf(self, client: httpx.Client | None = None) -> str:
        c = client or self.client()
        found = CSRF.search(c.get("/settings").text)
        assert found, "no csrf meta on the page"
        return found.group(1)


def start_studio(dataset: Path, *args: str, home: Path) -> Studio:
    """``chatloom studio -d DATASET ARGS --port 0``; returns once it prints its URL."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
               CHATLOOM_HOME=str(home), PYTHONUNBUFFERED="1")  # fmt: skip
    env.pop("CHATLOOM_STUDIO_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "chatloom", "studio", "-d", str(dataset), *args, "--port", "0"], env=env,
                            cwd=dataset.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    studio = Studio(proc, "", dataset)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, studio.stdout, lines), daemon=True).start()
    threading.Thread(target=_pump, args=(proc.stderr, studio.stderr, None), daemon=True).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if proc.poll() is not None:
                raise RuntimeError(f"chatloom studio exited {proc.returncode}: {''.join(studio.stdout + studio.stderr)}") from None
            continue
        if match := URL.search(line):
            studio.url = match.group(1).split("?")[0].replace("0.0.0.0", "127.0.0.1")
            time.sleep(0.1)
            return studio
    proc.kill()
    raise RuntimeError(f"chatloom studio did not start: {''.join(studio.stdout + studio.stderr)}")


def stop_studio(studio: Studio) -> None:
    stop_server(studio)  # type: ignore[arg-type]  (SIGTERM, then kill: a Server's way, by its proc)


@contextmanager
def served_in_process(path: Path, *, pool_size: int = 4, token: str | None = None) -> Iterator[tuple[str, Any]]:
    """The studio's app over ``path`` under a real uvicorn server (uvloop and httptools, as
    ``chatloom studio`` runs it) on a free loopback port, in a thread of this process:
    (base URL, the FastAPI app, whose state a test may look at)."""
    import uvicorn

    from chatloom.studio.app import Config, create_app

    guard, app = create_app(Config(dataset=path, token=token), pool_size=pool_size)
    server = uvicorn.Server(uvicorn.Config(guard, host="127.0.0.1", port=0, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the studio did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    assert app.state.checkpoints.running  # started by the lifespan
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(10)
        assert not app.state.checkpoints.running  # and stopped by it
        app.state.pool.close()


@pytest.fixture(scope="module")
def chitchat_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """chitchat-dataset's 7,168 real conversations, imported once per module."""
    from chatloom.importing.run import import_paths

    path = tmp_path_factory.mktemp("studio") / "chats.db"
    import_paths(path, ["package"], fmt="chitchat")
    return path


@pytest.fixture(scope="module")
def studio(chitchat_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    s = start_studio(chitchat_db, home=tmp_path_factory.mktemp("home"))
    yield s
    stop_studio(s)


def chromium_path() -> str | None:
    return os.environ.get("CHATLOOM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    path = chromium_path()
    if path is None:
        pytest.skip("Debian's chromium is not installed: run 'make test' (it runs apt-get install -y chromium), "
                    "or install it by hand and set CHATLOOM_CHROMIUM if it is elsewhere")  # fmt: skip
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    p = context.new_page()
    yield p
    context.close()
