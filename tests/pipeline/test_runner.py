"""The run: a recipe's outputs, report and rejects, and the same bytes whatever the workers or the executor."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from chatloom.pipeline.recipe import load_recipe
from chatloom.pipeline.runner import run_recipe
from tests.conftest import conv, write_jsonl


def _recipe(tmp_path: Path) -> Path:
    chats = [conv("hi there", "hello! mail me at a@b.co", id="c1"), conv("hi there", "hello! mail me at a@b.co", id="c1dup"),
             conv("<b>only</b> me", id="lonely"), *[conv(f"question {i}", f"answer number {i}", id=f"q{i}") for i in range(20)]]
    write_jsonl(tmp_path / "chats.jsonl", chats)
    recipe = {
        "seed": 3, "split": 0.2, "output": str(tmp_path / "out"),
        "inputs": [{"name": "mine", "file": str(tmp_path / "chats.jsonl")}],
        "tasks": [{"name": "pal", "system_prompts": ["You are {{char}}, %{kind|warm}."], "char": "Mimi", "filters": [{"turns": {"min": 2}}]}],
        "filters": ["exact_dedup"],
        "transforms": [{"pii": {"mode": "redact"}}],
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_pipeline_outputs_report_and_rejects(tmp_path: Path, run) -> None:  # type: ignore[no-untyped-def]
    path = _recipe(tmp_path)
    r = run("build", str(path), "--json")
    assert r.exit_code == 0, r.stderr
    out = tmp_path / "out"
    report = json.loads((out / "report.json").read_text())
    assert report["inputs"] == {"mine": 23}
    by_step = {s["step"]: s for s in report["steps"]}
    assert by_step["turns"]["dropped"] == {"fewer than 2 turns": 1}
    assert by_step["exact_dedup"]["dropped"] == {"exact duplicate": 1}
    assert by_step["pii"]["stats"]["email found"] == 1  # the duplicate went before
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert {(x["id"], x["step"], x["reason"]) for x in rejected} == {("pal:lonely", "turns", "fewer than 2 turns"),
                                                                     ("pal:c1dup", "exact_dedup", "exact duplicate")}
    assert rejected[0]["conversation"]["messages"]  # nothing is lost: the conversation itself is there
    train = [json.loads(line) for line in (out / "data" / "train.jsonl").read_text().splitlines()]
    val = [json.loads(line) for line in (out / "data" / "val.jsonl").read_text().splitlines()]
    assert len(train) + len(val) == report["output"]["conversations"] == 21 and len(val) == round(21 * 0.2)
    first = next(c for c in train + val if c["id"] == "pal:c1")
    assert first["messages"][0]["content"] in ("You are Mimi, kind.", "You are Mimi, warm.")
    assert first["messages"][2]["content"] == "hello! mail me at [EMAIL]"
    assert report["inputs"]["mine"] == report["output"]["conversations"] + report["dropped"]
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "fewer than 2 turns" in page
    assert "&lt;b&gt;only&lt;/b&gt; me" in page and "<b>only</b>" not in page  # chat text is escaped
    assert report["tokens"]["output"] > 0 and report["tokens"]["inputs"] > 0


def test_same_recipe_same_bytes_whatever_the_workers(tmp_path: Path) -> None:
    path = _recipe(tmp_path)
    recipe = load_recipe(path)
    a = run_recipe(recipe, str(tmp_path / "a"))
    run_recipe(recipe, str(tmp_path / "b"))
    c = run_recipe(recipe, str(tmp_path / "c"), workers=2)
    for name in ("data/train.jsonl", "data/val.jsonl", "rejected.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes() == (tmp_path / "c" / name).read_bytes(), name
    strip = [{k: v for k, v in s.items() if k != "seconds"} for s in a.report["steps"]]
    assert strip == [{k: v for k, v in s.items() if k != "seconds"} for s in c.report["steps"]]


def test_dry_run_counts_inputs(tmp_path: Path, run) -> None:  # type: ignore[no-untyped-def]
    r = run("build", str(_recipe(tmp_path)), "--dry-run", "--json")
    assert json.loads(r.stdout)["inputs"] == {"mine": 23}
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_ray_executor_gives_the_same_bytes(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    recipe = load_recipe(_recipe(tmp_path))
    run_recipe(recipe, str(tmp_path / "local"))
    run_recipe(recipe, str(tmp_path / "ray"), executor="ray", workers=2)
    for name in ("data/train.jsonl", "data/val.jsonl", "rejected.jsonl"):
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name


@pytest.mark.slow
def test_a_steps_error_on_ray_names_the_recipe_and_key(tmp_path: Path, run, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Raised in a Ray task, a step's error would reach the driver as Ray's wrapper, with the error
    only as text: it comes back as the chunk's result instead, and is the usual one line."""
    pytest.importorskip("ray")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(os.path.abspath(p) for p in sys.path if p))  # Ray's workers: this code
    write_jsonl(tmp_path / "chats.jsonl", [conv("a" * 50 + "b", "ok", id="slow")])
    (tmp_path / "r.yaml").write_text("inputs: [{file: chats.jsonl}]\nfilters: [{regex: {pattern: '(a|aa)+$', timeout: 0.2}}]\n")
    r = run("build", "r.yaml", "-o", "out", "--executor", "ray", "--workers", "1")
    assert r.exit_code == 2 and r.stderr.startswith("error: r.yaml:2: filters[0].regex.pattern: a search took over 0.2 s"), r.stderr
    assert not (tmp_path / "out").exists()


def test_records_an_input_cannot_read_are_counted_not_lost(tmp_path: Path, run) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "chats.jsonl").write_text('{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}\n'
                                          '{"messages": [truncated\n')
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"inputs": [{"name": "mine", "file": str(tmp_path / "chats.jsonl")}],
                                                     "output": str(tmp_path / "out")}))
    r = run("build", str(tmp_path / "r.yaml"))
    assert r.exit_code == 0
    assert r.stderr.startswith(f"warning: input mine: 1 records could not be read and were skipped, e.g. {tmp_path / 'chats.jsonl'}:2:")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["skipped_records"]["mine"]["count"] == 1 and report["output"]["conversations"] == 1


def test_a_build_removes_what_a_killed_build_left_and_nothing_else(tmp_path: Path, run) -> None:  # type: ignore[no-untyped-def]
    """A killed build leaves its scratch folder and half-written files (``.chatloom-build-PID-…``,
    ``.rejected.jsonl.PID.….tmp``); the next build into the folder removes them, those of older
    chatloom versions too, and nothing of another name or of a process that still runs."""
    import os
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    dead = proc.pid
    path = _recipe(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    stale = [f".chatloom-build-{dead}-abcd1234", ".chatloom-build-x1y2z3_4", f".rejected.jsonl.{dead}.abcdefgh.tmp",
             ".report.html.abcdefgh.tmp", f".data.{dead}.abcdefgh.tmp"]  # fmt: skip
    keep = [".chatloom-notes", f".chatloom-build-{os.getpid()}-abcd1234", ".rejected.jsonl.bak", "my.tmp", ".other.abcdefgh.tmp"]
    for name in stale + keep:
        if name.startswith(".chatloom-build") or name.startswith(".data"):
            (out / name).mkdir()
            (out / name / "stage1.jsonl").write_text("{}\n")
        else:
            (out / name).write_text("x")
    assert run("build", str(path)).exit_code == 0
    hidden = sorted(p.name for p in out.iterdir() if p.name.startswith(".") or p.name == "my.tmp")
    assert hidden == sorted(keep)
