"""Run every benchmark in bench/ and print one table of ratios against the peer or floor and the
target. Each benchmark prints its own details and writes bench/out/NAME.json.

    make bench                       # all of them
    .venv/bin/python bench/run.py import
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["import", "import_exports", "tokenize_files", "dedup", "train", "serve", "generate", "studio", "sync"]


def main() -> int:
    chosen = sys.argv[1:] or BENCHMARKS
    for name in chosen:
        print(f"== bench/{name}.py", flush=True)
        proc = subprocess.run([sys.executable, str(HERE / f"{name}.py")])
        if proc.returncode != 0:
            print(f"bench/{name}.py failed (exit {proc.returncode})", file=sys.stderr)
            return proc.returncode
    print(f"\n{'benchmark':<16}{'measure':<46}{'ratio':>8}{'target':>9}  verdict")
    for name in chosen:
        result = json.loads((HERE / "out" / f"{name}.json").read_text())
        for row in result["summary"]:
            ok = row["ratio"] >= row["target"]
            print(f"{name:<16}{row['measure']:<46}{row['ratio']:>8.2f}{row['target']:>9.2f}  {'meets' if ok else 'BELOW'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
