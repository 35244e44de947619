"""The build: recipes (and their errors), every step, the pipeline's outputs, report and determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from chatloom.errors import UsageError
from chatloom.model import Conversation, Message
from chatloom.pipeline.base import Context
from chatloom.pipeline.recipe import load_recipe, parse_recipe
from chatloom.pipeline.registry import build_step
from chatloom.pipeline.runner import run_recipe
from tests.conftest import conv, write_jsonl

CTX = Context(seed=0, tokenizer="gpt2-chatml", max_tokens=40)


def step(spec):  # type: ignore[no-untyped-def]
    return build_step(spec, CTX, "test")


def keeps(spec, c: Conversation):  # type: ignore[no-untyped-def]
    s = step(spec)
    if hasattr(s, "fit"):
        s.fit([c])
    v = s.keep(c)
    return v if isinstance(v, bool) else v[0]


# -- recipe errors name the key path ------------------------------------------------------------

@pytest.mark.parametrize(("recipe", "message"), [
    ({"inputs": [{"corpus": "chitchat"}], "filterz": []}, "filterz: Extra inputs are not permitted"),
    ({"inputs": []}, "inputs: List should have at least 1 item"),
    ({"inputs": [{"corpus": "chitchat", "file": "x.json"}]}, "inputs[0]: Value error, give exactly one of dataset, file, corpus"),
    ({"inputs": [{"corpus": "chitchat"}], "filters": [{"nope": {}}]}, "filters[0]: unknown step 'nope'; choose one of:"),
    ({"inputs": [{"corpus": "chitchat"}], "filters": [{"near_dedup": {"threshold": 2}}]}, "filters[0].near_dedup.threshold: Input should be less than or equal to 1"),
    ({"inputs": [{"corpus": "chitchat"}], "filters": [{"turns": {"mni": 2}}]}, "filters[0].turns.mni: Extra inputs are not permitted"),
    ({"inputs": [{"corpus": "chitchat"}], "transforms": ["turns"]}, "transforms[0]: 'turns' is a filter; list it under filters"),
    ({"inputs": [{"corpus": "chitchat"}], "tasks": [{"name": "t", "inputs": ["other"]}]}, "no input named 'other'"),
    ({"inputs": [{"corpus": "chitchat"}], "format": "nope"}, "format: unknown format 'nope'"),
    ({"inputs": [{"corpus": "chitchat"}], "split": -1}, "split: Input should be greater than 0"),
])
def test_recipe_errors_name_the_key(recipe, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError) as err:
        parse_recipe(recipe, "r.yaml")
    assert str(err.value).startswith("r.yaml: ") and message in str(err.value)


def test_yaml_errors_name_the_line(tmp_path: Path, run) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "r.yaml"
    bad.write_text("inputs:\n  - corpus: chitchat\nfilters: [\n")
    r = run("build", str(bad))
    assert r.exit_code == 2 and r.stderr.startswith(f"error: {bad}:4: not valid YAML")


def test_the_example_uses_every_step_and_is_valid(run) -> None:  # type: ignore[no-untyped-def]
    from chatloom.pipeline.registry import steps

    r = run("build", "--example")
    example = yaml.safe_load(r.stdout)
    parse_recipe(example, "example")
    named = {next(iter(s)) if isinstance(s, dict) else s for s in example["filters"] + example["transforms"]}
    named |= {"window"} if "# - window:" in r.stdout else set()
    assert named | {"persona", "system_prompt", "turns"} >= set(steps())


# -- filters ------------------------------------------------------------------------------------

def test_exact_dedup_whole_and_per_turn() -> None:
    s = step({"exact_dedup": {"per_turn": True}})
    a, b = conv("Hi!", "Hello there.", id="a"), conv("hi", "hello there", id="b")  # the same after normalization
    c = conv("other question", "Hello there.", id="c")  # its only reply was seen
    d = conv("new", "new answer", id="d")
    s.fit([a, b, c, d])
    assert [s.keep(x) for x in (a, b, c, d)] == [True, (False, "exact duplicate"), (False, "every assistant turn seen before"), True]


def test_turns_tokens_regex_structure() -> None:
    assert keeps({"turns": {"min": 3}}, conv("a", "b")) is False
    assert keeps({"turns": {"min": 2, "max": 2}}, conv("a", "b")) is True
    assert keeps({"tokens": {"max": 5}}, conv("a long question " * 5, "b")) is False
    assert keeps({"regex": {"pattern": "secret"}}, conv("my SECRET", "ok")) is False
    assert keeps({"regex": {"pattern": "secret", "roles": ["assistant"]}}, conv("my SECRET", "ok")) is True
    assert keeps({"regex": {"pattern": "pizza", "keep_matching": True}}, conv("pasta", "ok")) is False
    s = step("structure")
    assert s.keep(conv("a", "b")) is True
    assert s.keep(conv("a", "b", "c")) == (False, "does not end with an assistant turn")
    assert s.keep(conv("a", "")) == (False, "an empty turn")
    twice = Conversation(id="t", messages=[Message(role="user", content="a"), Message(role="user", content="b"), Message(role="assistant", content="c")])
    assert s.keep(twice) == (False, "roles do not alternate")


def test_phrases_quality_language() -> None:
    assert keeps("phrases", conv("hi", "As an AI language model, I cannot.")) is False
    assert keeps("phrases", conv("hi", "I’m sorry, but I can’t help.")) is False  # curly apostrophes too
    assert keeps({"phrases": {"lists": [], "extra": ["pineapple"]}}, conv("hi", "Pineapple pizza!")) is False
    assert keeps("phrases", conv("hi", "Sure, here you go.")) is True
    assert keeps("quality", conv("hi", "same line\n" * 6)) is False
    assert keeps("quality", conv("hi", "!!! ??? ### $$$ %%% ^^^")) is False
    assert keeps("quality", conv("hi", "a normal, helpful reply.")) is True
    assert keeps({"language": {"keep": ["en"]}}, conv("Where is the nearest train station, please?", "It is two streets down, next to the bakery.")) is True
    assert keeps({"language": {"keep": ["en"]}}, conv("¿Dónde está la estación de tren más cercana, por favor?", "Está a dos calles, junto a la panadería.")) is False


# -- transforms -----------------------------------------------------------------------------------

def test_pii_redacts_each_kind_or_drops() -> None:
    text = ("mail me at ana.b@example.org or call +1 415-555-0134, see https://example.com/x, "
            "server 192.168.1.20, card 4111 1111 1111 1111, ping <@123456789012> and @ana_b")
    s = step("pii")
    out = s.apply(conv(text, "ok"))
    assert out.messages[0].content == ("mail me at [EMAIL] or call [PHONE], see [URL], server [IP], card [CARD], "
                                       "ping [MENTION] and [HANDLE]")
    assert s.stats["conversations redacted"] == 1 and s.stats["card found"] == 1
    assert step({"pii": {"mode": "drop"}}).apply(conv(text, "ok")) is None
    assert step("pii").apply(conv("card 4111 1111 1111 1112 fails the Luhn check", "ok")).messages[0].content.endswith("1112 fails the Luhn check")


def test_merge_system_prompt_persona() -> None:
    twice = Conversation(id="t", messages=[Message(role="user", content="a"), Message(role="user", content="b"), Message(role="assistant", content="c")])
    assert [m.content for m in step("merge_turns").apply(twice).messages] == ["a\nb", "c"]
    s = step({"system_prompt": {"prompts": ["You are %{Mimi|Momo}."]}})
    picks = {s.apply(conv("a", "b", id=f"c{i}")).messages[0].content for i in range(40)}
    assert picks == {"You are Mimi.", "You are Momo."}
    again = step({"system_prompt": {"prompts": ["You are %{Mimi|Momo}."]}})
    assert [again.apply(conv("a", "b", id=f"c{i}")).messages[0].content for i in range(5)] == \
        [s.apply(conv("a", "b", id=f"c{i}")).messages[0].content for i in range(5)]  # seeded per conversation
    p = step({"persona": {"char": "Mimi", "user": "Sam"}})
    assert [m.content for m in p.apply(conv("hi {{char}}", "hi {{user}}")).messages] == ["hi Mimi", "hi Sam"]


def test_truncate_keeps_the_system_prompt_and_counts() -> None:
    long = Conversation(id="l", messages=[Message(role="system", content="Be brief."), *conv("one " * 30, "two", "three", "four").messages])
    s = step("truncate")  # max_tokens 40 from the context
    out = s.apply(long)
    assert [m.content for m in out.messages] == ["Be brief.", "three", "four"]
    assert s.stats == {"conversations truncated": 1, "turns cut": 2}
    assert s.apply(conv("a", "b " * 60)) is None  # the last exchange alone is too long


def test_window_fix_roles_cleanup() -> None:
    w = step("window")
    out = w.expand(conv("q1", "a1", "q2", "a2", id="c"))
    assert [(x.id, len(x.messages)) for x in out] == [("c@1", 2), ("c@3", 4)]
    messy = Conversation(id="m", messages=[Message(role="assistant", content="hello?"), Message(role="user", content="a"),
                                           Message(role="user", content="b"), Message(role="assistant", content="c"),
                                           Message(role="user", content="trailing")])
    assert [(m.role, m.content) for m in step("fix_roles").apply(messy).messages] == [("user", "a\nb"), ("assistant", "c")]
    cleaned = step("cleanup").apply(conv("The Mona Lisa doesnâ€™t have eyebrows.  \n\n\n\nok", "b"))
    assert cleaned.messages[0].content == "The Mona Lisa doesn't have eyebrows.\n\nok"


# -- the pipeline ---------------------------------------------------------------------------------

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


def test_the_ray_executor_gives_the_same_bytes(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    recipe = load_recipe(_recipe(tmp_path))
    run_recipe(recipe, str(tmp_path / "local"))
    run_recipe(recipe, str(tmp_path / "ray"), executor="ray", workers=2)
    for name in ("data/train.jsonl", "data/val.jsonl", "rejected.jsonl"):
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name


def test_near_dedup_keeps_the_first_of_each_cluster() -> None:
    base = "the quick brown fox jumps over the lazy dog and then runs far away into the green forest to find some food"
    words = base.split()
    near = " ".join(words[:-1] + ["berries"])  # one word of 22 changed: Jaccard of 5-grams ≈ 0.9
    other = "a completely different conversation about cooking pasta with garlic olive oil and fresh basil leaves tonight"
    convs = [conv("hi", base, id="a"), conv("hello", other, id="b"), conv("hi", near, id="c")]
    s = step({"near_dedup": {"threshold": 0.8}})
    s.fit(convs)
    assert [s.keep(c) for c in convs] == [True, True, (False, "near duplicate")]


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
