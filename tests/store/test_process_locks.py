"""Two processes on one dataset: a process that opens the dataset a second time must keep the
locks of its first connection. A plain open()/close() of the file (the header check did one)
drops every POSIX lock the process holds on it; another process closing its last connection then
found the file unused, checkpointed it and deleted the WAL under the first, whose later commits
nobody else saw (a studio's edits, invisible to everyone but the studio)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from chatloom.model import Conversation, Message
from chatloom.store import Store
from tests.conftest import REPO

HOLDER = """
import sys
sys.path.insert(0, sys.argv[2])
from chatloom.model import Conversation, Message
from chatloom.store import Store
first = Store(sys.argv[1])
second = Store(sys.argv[1])           # the second open reads the header: it must not drop first's locks
e = first.entry("c:1")
e.conversation.messages[0].content = "edited while another process came and went"
print(first.put(e.conversation, base_revision=e.revision), flush=True)
sys.stdin.readline()                  # meanwhile the test opens and closes the dataset
e = first.entry("c:1")
e.conversation.messages[0].content = "and edited again"
print(first.put(e.conversation, base_revision=e.revision), flush=True)
sys.stdin.readline()
"""


def test_a_second_open_in_one_process_keeps_the_first_ones_locks(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    with Store(path, create=True) as store:
        store.put(Conversation(id="c:1", messages=[Message(role="user", content="first")]))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(REPO / "src")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "2"
        with Store(path) as store:  # this process's last connection closes here
            assert store.entry("c:1").revision == 2
        assert Path(f"{path}-wal").exists()  # the other process still has it open: the WAL stays
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "3"
        with Store(path) as store:
            e = store.entry("c:1")
        assert e.revision == 3 and e.conversation.messages[0].content == "and edited again"
    finally:
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(20)
