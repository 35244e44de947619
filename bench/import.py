"""Benchmark: import a JSONL of >= 100,000 conversations (the chitchat corpus, repeated) into a new
dataset, beside two floors measured in the same run on the same rows:

- orjson: parsing the file with orjson alone (no model, no store);
- sqlite: a bare ``executemany`` of the message rows into SQLite, with the same FTS5 index built
  in bulk afterwards (no digests, no ids, no revisions, no batching).

Each step runs in a fresh process so that its peak RSS is its own. The import also runs on half
the file, to show that peak memory does not grow with the file.

    .venv/bin/python bench/import.py                 # 100,352 conversations
    .venv/bin/python bench/import.py --copies 28     # 200,704
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import options_or_step, run_step, write_copies  # noqa: E402

OUT = HERE / "out"


def build_jsonl(path: Path, copies: int) -> tuple[int, int]:
    """The chitchat corpus, ``copies`` times, each copy with its own ids (real text, real turns)."""
    from chatloom.sources import Reader, get_source

    source = get_source("chitchat")
    file = source.resolve("package")[0]
    convs = list(source.read(file, Reader(str(file))))
    return write_copies(path, convs, copies)


# -- the steps, each run in its own process --------------------------------------------------


def step_orjson(path: str) -> dict:
    import orjson

    t = time.perf_counter()
    n = 0
    with open(path, "rb") as f:
        for line in f:
            orjson.loads(line)
            n += 1
    return {"seconds": time.perf_counter() - t}


def step_sqlite(path: str, db_path: str) -> dict:
    """The floor: message rows (pre-built from the same file, outside the timing) inserted with one
    executemany into a plain table, then the same FTS5 index filled in bulk."""
    import sqlite3

    import orjson

    rows = []
    with open(path, "rb") as f:
        for conv_pk, line in enumerate(f, 1):
            for i, m in enumerate(orjson.loads(line)["messages"]):
                rows.append((conv_pk, i, m["role"], m["content"]))
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("CREATE TABLE messages (pk INTEGER PRIMARY KEY, conv INTEGER, idx INTEGER, role TEXT, content TEXT)")
    db.execute(
        "CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='pk', "
        "tokenize='unicode61 remove_diacritics 2')"
    )
    t = time.perf_counter()
    db.execute("BEGIN")
    db.executemany("INSERT INTO messages (conv, idx, role, content) VALUES (?, ?, ?, ?)", rows)
    db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")
    db.execute("COMMIT")
    return {"seconds": time.perf_counter() - t, "messages": len(rows)}


def step_chatloom(path: str, db_path: str) -> dict:
    from chatloom.importing import import_paths
    from chatloom.store import Store

    t = time.perf_counter()
    with Store(db_path, create=True) as store:
        (result,) = import_paths(store, [path], fmt="openai")
    return {"seconds": time.perf_counter() - t, "added": result.counts.added, "messages": result.counts.messages}


STEPS = {"orjson": step_orjson, "sqlite": step_sqlite, "chatloom": step_chatloom}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=14, help="chitchat copies (14 × 7,168 = 100,352 conversations)")
    opts = options_or_step(ap, STEPS)
    if opts is None:
        return

    with tempfile.TemporaryDirectory(prefix="chatloom-bench-") as tmp:
        tmp = Path(tmp)
        data, half = tmp / "chats.jsonl", tmp / "half.jsonl"
        t = time.perf_counter()
        n_convs, n_msgs = build_jsonl(data, opts.copies)
        build_jsonl(half, max(opts.copies // 2, 1))
        size_mb = data.stat().st_size / 1e6
        print(f"input: {n_convs:,} conversations, {n_msgs:,} messages, {size_mb:.0f} MB (built in {time.perf_counter() - t:.1f}s)", file=sys.stderr)

        parse = run_step(__file__, "orjson", str(data))
        floor = run_step(__file__, "sqlite", str(data), str(tmp / "floor.db"))
        ours = run_step(__file__, "chatloom", str(data), str(tmp / "ours.db"))
        ours_half = run_step(__file__, "chatloom", str(half), str(tmp / "half.db"))
        assert ours["added"] == n_convs and ours["messages"] == n_msgs == floor["messages"], (ours, floor, n_msgs)

    def rate(step: dict) -> float:
        return n_msgs / step["seconds"]

    rows = [
        {"what": "orjson parse only (floor)", "seconds": parse["seconds"], "msgs_per_s": rate(parse), "rss": parse["peak_rss_mib"]},
        {"what": "sqlite executemany + FTS (floor)", "seconds": floor["seconds"], "msgs_per_s": rate(floor), "rss": floor["peak_rss_mib"]},
        {"what": "chatloom import", "seconds": ours["seconds"], "msgs_per_s": rate(ours), "convs_per_s": n_convs / ours["seconds"], "rss": ours["peak_rss_mib"]},
    ]
    ratio = rate(ours) / rate(floor)
    print(f"\n{'step':<36}{'seconds':>9}{'messages/s':>13}{'convs/s':>10}{'peak RSS':>11}")
    for r in rows:
        convs = f"{r['convs_per_s']:,.0f}" if "convs_per_s" in r else ""
        print(f"{r['what']:<36}{r['seconds']:>9.2f}{r['msgs_per_s']:>13,.0f}{convs:>10}{r['rss']:>8.0f} MiB")
    print(f"\nchatloom / sqlite floor: {ratio:.0%} (target ≥ 60%)")
    print(f"peak RSS, chatloom: {ours_half['peak_rss_mib']:.0f} MiB on {n_convs // 2:,} conversations, {ours['peak_rss_mib']:.0f} MiB on {n_convs:,}")
    summary = {
        "benchmark": "import",
        "rows": rows,
        "ratio_vs_sqlite_floor": ratio,
        "target": 0.6,
        "peak_rss_half_mib": ours_half["peak_rss_mib"],
        "peak_rss_full_mib": ours["peak_rss_mib"],
        "summary": [
            {"measure": "messages/s vs sqlite executemany+FTS floor", "ratio": ratio, "target": 0.6},
            {"measure": "peak RSS, half file / full file (flat = 1)", "ratio": ours_half["peak_rss_mib"] / ours["peak_rss_mib"], "target": 0.8},
        ],
        "conversations": n_convs,
        "messages": n_msgs,
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "import.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
