"""What the sync tests share: chitchat's conversations as a dataset, and one edit of a chat."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatloom.store import Store


@pytest.fixture(scope="module")
def chitchat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """chitchat-dataset's 7,168 real conversations, imported once per module (tests copy it)."""
    from chatloom.importing.run import import_paths

    path = tmp_path_factory.mktemp("sync") / "chitchat.db"
    import_paths(path, ["package"], fmt="chitchat")
    return path


def edit(path: Path, conv_id: str, suffix: str) -> None:
    """Add ``suffix`` to a chat's first message (one revision)."""
    with Store(path) as s:
        c = s.get(conv_id)
        c.messages[0].content += suffix
        s.put(c)
