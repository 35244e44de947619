"""``python -m tests.tokens.real_templates``: one line per template, pass or its first failure."""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from pathlib import Path

from . import CHATS, HF, NAMES, Mismatch, check, write_folder


def main() -> int:
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in NAMES:
            folder = write_folder(Path(tmp), name)
            hf = HF(folder)
            outcomes: Counter[str] = Counter()
            first = None
            for fix in (False, True):
                for i, chat in enumerate(CHATS):
                    try:
                        outcome = check(name, folder, hf, i, fix)
                        outcomes[outcome.split(" (")[0]] += 1
                    except Mismatch as e:
                        outcomes["FAIL"] += 1
                        if first is None:
                            first = f"{chat.id}{' (fix)' if fix else ''}: {e}"
            failed += first is not None
            summary = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
            print(f"{name:18} {'pass' if first is None else 'FAIL'}  [{summary}]" + (f"\n{'':18} first: {first}" if first else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
