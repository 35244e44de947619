"""chatloom.parallel: ordered_map keeps the order, bounds what is in flight, raises a worker's
exception in the caller and draws the jobs in the caller's thread (so maps nest on one pool);
batched and prefetch."""

from __future__ import annotations

import threading
import time

import pytest

from chatloom.parallel import batched, ordered_map, prefetch, process_pool


def slow_square(x: int) -> int:
    time.sleep(0.02 * (x % 3))  # later jobs often finish first
    return x * x


def fails_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"bad job {x}")
    return x


def negate(x: int) -> int:
    return -x


@pytest.fixture(scope="module")
def pool():  # type: ignore[no-untyped-def]
    with process_pool(2) as pool:
        yield pool


def test_order_is_kept(pool) -> None:  # type: ignore[no-untyped-def]
    assert list(ordered_map(slow_square, range(20), pool)) == [x * x for x in range(20)]
    assert list(ordered_map(slow_square, range(20))) == [x * x for x in range(20)]  # no pool: in this thread
    assert list(ordered_map(slow_square, [], pool)) == []


def test_one_worker_is_no_pool() -> None:
    with process_pool(1) as pool:
        assert pool is None


def test_the_window_bounds_the_jobs_in_flight(pool) -> None:  # type: ignore[no-untyped-def]
    drawn = 0

    def jobs():  # type: ignore[no-untyped-def]
        nonlocal drawn
        for x in range(100):
            drawn += 1
            yield x

    results = ordered_map(negate, jobs(), pool, window=3)
    for taken, _ in enumerate(results, 1):
        assert drawn <= taken + 3
    assert drawn == 100
    default = ordered_map(negate, jobs(), pool)  # two per worker
    drawn = 0
    next(default)
    assert drawn == 4
    default.close()


def test_an_exception_in_a_worker_is_raised_in_the_caller(pool) -> None:  # type: ignore[no-untyped-def]
    got = []
    with pytest.raises(ValueError, match="bad job 3"):
        for x in ordered_map(fails_on_three, range(10), pool):
            got.append(x)
    assert got == [0, 1, 2]  # everything before it, in order
    assert list(ordered_map(negate, range(3), pool)) == [0, -1, -2]  # the pool still works


def big(x: int) -> bytes:
    return bytes(4 << 20)  # far more than a pipe holds: a worker sends it in many writes


def test_stopping_early_while_workers_send_large_results_does_not_hang() -> None:
    """The caller stops (an error) while workers are still sending results larger than a pipe's
    buffer: the pool must end, not wait for the rest of a result from a killed worker."""
    done = threading.Event()

    def stop_early() -> None:
        for _ in range(3):  # before the fix it hung on most tries
            with pytest.raises(RuntimeError), process_pool(2) as pool:
                for n, _ in enumerate(ordered_map(big, range(40), pool)):
                    if n == 1:
                        raise RuntimeError("the caller stops")
        done.set()

    thread = threading.Thread(target=stop_early, daemon=True)
    thread.start()
    assert done.wait(60), "the pool did not end after the caller stopped"


def test_jobs_are_drawn_in_the_callers_thread_so_maps_nest_on_one_pool(pool) -> None:  # type: ignore[no-untyped-def]
    threads = set()

    def jobs():  # type: ignore[no-untyped-def]
        for x in range(30):
            threads.add(threading.get_ident())
            yield x

    inner = ordered_map(slow_square, jobs(), pool)
    outer = ordered_map(negate, inner, pool)  # drawing a job takes a result of the map on the same pool
    assert list(outer) == [-x * x for x in range(30)]
    assert threads == {threading.get_ident()}


def test_batched_and_prefetch() -> None:
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(prefetch(iter(range(50)), depth=2)) == list(range(50))

    def broken():  # type: ignore[no-untyped-def]
        yield 1
        raise KeyError("producer")

    it = prefetch(broken())
    assert next(it) == 1
    with pytest.raises(KeyError, match="producer"):
        next(it)


def test_workers_started_from_a_script_do_not_run_the_script_again(tmp_path) -> None:
    """A spawned worker runs its parent's __main__ script before anything else, unless it is
    hidden while the workers start (the chatloom console script would import the whole CLI in
    each). A script that says so when it runs shows whether the workers ran it."""
    import subprocess
    import sys

    script = tmp_path / "main_script.py"
    marker = tmp_path / "runs.txt"
    script.write_text(
        "import os\n"
        f"open({str(marker)!r}, 'a').write(f'{{os.getpid()}}\\n')\n"
        "from chatloom.parallel import ordered_map, process_pool\n"
        "if __name__ == '__main__':\n"
        "    with process_pool(2, context='spawn') as pool:\n"
        "        print(list(ordered_map(abs, [-1, -2, -3], pool)))\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[1, 2, 3]"
    assert len(marker.read_text().split()) == 1  # the parent only
