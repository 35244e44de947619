"""Benchmark: ``chatloom diff`` of two 1,000,000-conversation datasets that differ in 1% of their
conversations, beside SQLite's own ``sqldiff`` (Debian's ``sqlite3-tools``) on the same two files,
in the same run; and ``chatloom sync`` of such a pair (at 50,000 conversations, on copies).

    .venv/bin/python bench/sync.py              # A: bench/studio.py's 1,000,000-conversation dataset
    .venv/bin/python bench/sync.py --quick      # 50,000

A is bench/studio.py's dataset (built by it when missing). B is a copy of A in which 1% of the
conversations, spread over the whole file, have one message edited (one import of the edited
conversations: each a revision). Both are cached in bench/out (B with a sidecar).

Timed, each the best of ``--repeat`` runs, end to end as a user runs them:
- ``chatloom diff A B --stat`` (a process: start-up, both states read in id order, the merge);
- ``sqldiff --summary --table conversations A B``: the same table compared by SQLite's tool;
- ``sqldiff --summary A B``: every table (messages, the full-text index, revisions…), what a user
  of sqldiff would run.
Target: chatloom's diff at least as fast as sqldiff on the conversations table.

Then push and pull over loopback (``--sync-size``, default 50,000: each run copies the dataset
twice): a laptop's copy and a server's copy (``chatloom serve-dataset``), a first ``chatloom sync``
(both changes feeds read whole), then 1% edited on the laptop and ``chatloom push``, 1% edited on
the server and ``chatloom pull``: their time, and the bytes that crossed (request and response
bodies) beside the size of the changed conversations as JSON. Target: within 2×.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
sys.path.insert(0, str(HERE))


def _timed(argv: list[str], repeat: int) -> tuple[float, str]:
    best, out = float("inf"), ""
    for _ in range(repeat):
        t = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, env=_env())
        best = min(best, time.perf_counter() - t)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr[-500:]}")
        out = proc.stdout
    return best, out


def _env() -> dict[str, str]:
    from studio import env

    return env()


def _pair(size: int) -> tuple[Path, Path, int]:
    """A (bench/studio.py's dataset of ``size``) and B (A with 1% edited), built once."""
    from studio import dataset

    a = OUT / f"studio-{size}.db"
    dataset(a, size)
    b = OUT / f"sync-b-{size}.db"
    info = Path(f"{b}.json")
    from chatloom.store import Store

    with Store(a) as store:
        mark = store.changes_mark()  # A written since B was made from it (bench/studio.py saves edits): B again
    if b.exists() and info.exists() and json.loads(info.read_text()).get("a_mark") == mark:
        return a, b, json.loads(info.read_text())["edited"]
    print(f"B: copying {a.name} and editing 1% …", file=sys.stderr, flush=True)
    tmp = b.with_suffix(".tmp")
    for p in (b, tmp, Path(f"{b}-wal"), Path(f"{b}-shm")):
        p.unlink(missing_ok=True)
    shutil.copyfile(a, tmp)
    for suffix in ("-wal", "-shm"):
        if Path(f"{a}{suffix}").exists():
            shutil.copyfile(f"{a}{suffix}", f"{tmp}{suffix}")
    edited = subprocess.run([sys.executable, __file__, "--edit", str(tmp)], env=_env(), check=True, capture_output=True, text=True)
    n = int(edited.stdout.strip())
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{tmp}{suffix}").exists():
            Path(f"{tmp}{suffix}").rename(f"{b}{suffix}")
    info.write_text(json.dumps({"edited": n, "a_mark": mark}))
    return a, b, n


def _edit(path: str) -> None:
    """Edit every 100th live conversation of ``path`` (one import: a revision each); print how many."""
    from chatloom.store import Store

    with Store(path) as store:
        ids = store.ids()[::100]
        convs = []
        for conv in store.iter_conversations(ids=ids):
            conv.messages[-1].content += " (edited for bench/sync.py)"
            convs.append(conv)
        store.import_conversations(convs)
    print(len(convs))


def _edit_some(path: Path, every: int, mark: str) -> int:
    """Edit every ``every``-th live conversation of ``path`` (one import); the edited ones' size as JSON."""
    import msgspec

    from chatloom.store import Store

    with Store(path) as store:
        ids = store.ids()[every // 2 :: every]
        convs = []
        for conv in store.iter_conversations(ids=ids):
            conv.messages[-1].content += f" ({mark})"
            convs.append(conv)
        store.import_conversations(convs)
    return sum(len(msgspec.json.encode(c)) for c in convs), len(convs)


def _push_pull(size: int) -> list[dict]:
    import re

    from studio import dataset

    src = OUT / f"studio-{size}.db"
    dataset(src, size)
    work = OUT / "sync-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    laptop, server_db = work / "laptop.db", work / "server.db"
    for dst in (laptop, server_db):
        shutil.copyfile(src, dst)
    server = subprocess.Popen([sys.executable, "-m", "chatloom", "serve-dataset", "-d", str(server_db), "--port", "0"], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        url = re.search(r"at (http://\S+/)", server.stdout.readline()).group(1)  # type: ignore[union-attr]
        cli = [sys.executable, "-m", "chatloom"]
        subprocess.run([*cli, "remote", "add", "server", url, "-d", str(laptop)], env=_env(), check=True, capture_output=True)
        rows = []

        def timed(what: str, argv: list[str], changed: int | None = None, n: int | None = None) -> None:
            t = time.perf_counter()
            proc = subprocess.run(argv, env=_env(), capture_output=True, text=True)
            seconds = time.perf_counter() - t
            if proc.returncode != 0:
                raise SystemExit(f"{' '.join(argv[2:])} failed: {proc.stderr[-400:]}")
            d = json.loads(proc.stdout)
            wire = d["bytes_sent"] + d["bytes_received"]
            rows.append({"what": what, "seconds": seconds, "moved": d["to_a"] + d["to_b"], "bytes_sent": d["bytes_sent"],
                         "bytes_received": d["bytes_received"], "changed_bytes": changed, "changed": n,
                         "wire_ratio": None if not changed else wire / changed})  # fmt: skip

        timed("first sync (both feeds whole)", [*cli, "sync", "-d", str(laptop), "server", "--json"])
        changed, n = _edit_some(laptop, 100, "laptop")
        timed(f"push of 1% ({n:,} edited on the laptop)", [*cli, "push", "-d", str(laptop), "server", "--json"], changed, n)
        changed, n = _edit_some(server_db, 100, "server")
        timed(f"pull of 1% ({n:,} edited on the server)", [*cli, "pull", "-d", str(laptop), "server", "--json"], changed, n)
        timed("sync with nothing to move", [*cli, "sync", "-d", str(laptop), "server", "--json"])
        return rows
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50,000 conversations")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sync-size", type=int, default=50_000, help="conversations for push and pull (copied twice a run)")
    ap.add_argument("--edit", default=None, help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.edit:
        _edit(opts.edit)
        return 0
    size = opts.size or (50_000 if opts.quick else 1_000_000)
    sqldiff = shutil.which("sqldiff")
    if sqldiff is None:
        raise SystemExit("sqldiff is not installed: apt-get install sqlite3-tools")
    a, b, edited = _pair(size)
    for p in (a, b):  # into the page cache, as both tools find them
        with open(p, "rb") as f:
            while f.read(16 << 20):
                pass
    ours, out = _timed([sys.executable, "-m", "chatloom", "diff", str(a), str(b), "--stat", "--json"], opts.repeat)
    counts = json.loads(out)
    assert counts["changed"] == edited and counts["added"] == counts["removed"] == 0, counts
    table, table_out = _timed([sqldiff, "--summary", "--table", "conversations", str(a), str(b)], opts.repeat)
    whole, whole_out = _timed([sqldiff, "--summary", str(a), str(b)], 1)
    rows = [
        {"what": "chatloom diff A B --stat", "seconds": ours},
        {"what": "sqldiff --summary --table conversations", "seconds": table, "output": table_out.strip()},
        {"what": "sqldiff --summary (every table)", "seconds": whole, "output": whole_out.strip()},
    ]
    print(f"\n{size:,} conversations a side, {edited:,} changed ({edited / size:.1%}); best of {opts.repeat} (sqldiff of every table: 1 run)")
    for r in rows:
        print(f"  {r['what']:<44}{r['seconds']:>9.2f} s")
    print(f"chatloom diff: {table / ours:.2f}× sqldiff's speed on the conversations table (target ≥ 1), "
          f"{whole / ours:.2f}× on the whole file")
    moves = _push_pull(opts.sync_size)
    print(f"\npush and pull over loopback, {opts.sync_size:,} conversations a side (chatloom serve-dataset on 127.0.0.1)")
    print(f"  {'':<44}{'seconds':>9}{'moved':>8}{'sent':>12}{'received':>12}{'changed, as JSON':>18}{'wire/changed':>14}")
    for r in moves:
        ratio = "" if r["wire_ratio"] is None else f"{r['wire_ratio']:.2f}×"
        changed = "" if r["changed_bytes"] is None else f"{r['changed_bytes']:,}"
        print(f"  {r['what']:<44}{r['seconds']:>9.2f}{r['moved']:>8,}{r['bytes_sent']:>12,}{r['bytes_received']:>12,}{changed:>18}{ratio:>14}")
    ratios = [r["wire_ratio"] for r in moves if r["wire_ratio"] is not None]
    result = {"size": size, "edited": edited, "rows": rows, "push_pull": moves,
              "summary": [{"measure": "diff vs sqldiff (conversations table)", "ratio": table / ours, "target": 1.0},
                          {"measure": "diff vs sqldiff (every table)", "ratio": whole / ours, "target": 1.0},
                          {"measure": "changed size / bytes on the wire (worst)", "ratio": 1 / max(ratios), "target": 0.5}]}  # fmt: skip
    (OUT / "sync.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
