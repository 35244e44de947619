"""What the benchmarks share: running one measured step in a fresh process, and its peak RSS."""

from __future__ import annotations

import json
import resource
import subprocess
import sys


def peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: on Linux ru_maxrss keeps the high-water mark
    of the parent a child was forked from, which would charge the benchmark's own memory to it."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_step(script: str, name: str, *args: str) -> dict:
    """Run ``script --step NAME ARGS…`` in a child process; its last stdout line is JSON."""
    proc = subprocess.run([sys.executable, script, "--step", name, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"step {name} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def children_peak_rss_mib() -> float:
    """The largest peak RSS of the child processes this one waited for (a worker that parsed while
    this process wrote). A forked child's figure includes the pages it shares with its parent, so
    parent + children over-counts: it is an upper bound."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def options_or_step(ap, steps: dict):  # type: ignore[no-untyped-def]
    """Parse a benchmark's options, or, when it was run as ``--step NAME ARGS…`` (by ``run_step``),
    run that one step, print its result and return None."""
    import argparse

    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.step:
        step_main(steps, opts.step, opts.args)
        return None
    return opts


def step_main(steps: dict, name: str, args: list[str]) -> None:
    result = steps[name](*args)
    result["peak_rss_mib"] = peak_rss_mib() + children_peak_rss_mib()
    print(json.dumps(result))


def write_copies(path, convs: list, copies: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """``convs`` written ``copies`` times as chatloom JSONL, each copy with its own ids (``ID#COPY``);
    returns (conversations, messages) written."""
    from chatloom import jsonl

    n = m = 0
    with open(path, "wb") as fp:
        for copy in range(copies):
            for conv in convs:
                conv_id = conv.id
                conv.id = f"{conv_id}#{copy}"
                fp.write(jsonl.dumps(conv))
                conv.id = conv_id
                n += 1
                m += len(conv.messages)
    return n, m
