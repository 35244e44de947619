"""Work that outlives a request: an import, an action over a whole query, the dedup scan. Each
runs in a thread of its own with a ``Store`` of its own and reports ``done``/``total`` as it
goes; the page polls ``GET /api/tasks/ID``. A task's error is one line, as the CLI gives it."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ChatloomError
from ..store import Store


@dataclass
class Task:
    id: str
    kind: str
    status: str = "running"  # running, done, failed
    done: int = 0
    total: int | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    started: float = field(default_factory=time.time)

    def public(self) -> dict[str, Any]:
        return asdict(self)


class Tasks:
    """The running and finished tasks of one studio (the last 100 are kept)."""

    def __init__(self, dataset: Path):
        self.dataset = dataset
        self._tasks: dict[str, Task] = {}
        self._lock = threading.Lock()

    def start(self, kind: str, work: Callable[[Store, Task], dict[str, Any]]) -> Task:
        task = Task(secrets.token_hex(8), kind)
        with self._lock:
            self._tasks[task.id] = task
            for old in list(self._tasks)[:-100]:
                if self._tasks[old].status != "running":
                    del self._tasks[old]

        def run() -> None:
            try:
                with Store(self.dataset) as store:
                    task.result = work(store, task)
                task.status = "done"
            except ChatloomError as err:
                task.error, task.status = str(err), "failed"
            except Exception as err:  # a bug: shown, never a silent stop
                task.error, task.status = f"{type(err).__name__}: {err}", "failed"

        threading.Thread(target=run, name=f"studio-{kind}", daemon=True).start()
        return task

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)
