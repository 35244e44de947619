"""Steps run their own loops: a filter and a transform count what they saw, kept and dropped (with
the reason); a window emits several conversations for one; a step's Params is its generic argument;
a chunk goes through a run of steps conversation by conversation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from chatloom.errors import ParamError
from chatloom.model import Conversation
from chatloom.pipeline.base import Context, Filter, Params, Transform
from chatloom.pipeline.executors import run_chunk
from chatloom.pipeline.recipe import parse_recipe
from chatloom.pipeline.runner import run_recipe
from tests.conftest import conv
from tests.pipeline.conftest import step


class ShoutParams(Params):
    marks: int = Field(1, ge=1)


class Shout(Transform[ShoutParams]):
    """A plugin's transform, written as docs/build.md says."""

    name = "shout"
    drop_reason = "nothing to shout"

    def apply(self, conv: Conversation) -> Conversation | None:
        if not conv.messages[-1].content:
            return None
        self.stats["shouted"] += 1
        return conv  # the content is not what this test is about


def test_a_step_takes_its_params_from_its_generic_argument() -> None:
    assert Shout.Params is ShoutParams
    s = Shout(Shout.Params.model_validate({"marks": 3}), Context())
    assert s.params.marks == 3
    assert step("fix_roles").params == Params()  # a step without parameters


def test_a_filter_counts_and_sends_what_it_drops_with_the_reason() -> None:
    s = step({"turns": {"min": 2}})
    dropped: list[tuple[str | None, str]] = []
    kept = list(s.run([conv("a", "b", id="1"), conv("a", id="2"), conv("a", "b", id="3")], lambda c, why: dropped.append((c.id, why))))
    assert [c.id for c in kept] == ["1", "3"]
    assert dropped == [("2", "fewer than 2 turns")]
    assert (s.seen, s.kept) == (3, 2) and s.seconds > 0
    assert isinstance(s, Filter)


def test_a_transform_counts_and_drops_with_its_reason() -> None:
    s = Shout(ShoutParams(), Context())
    dropped: list[str] = []
    out = list(s.run([conv("a", "b"), conv("a", "")], lambda c, why: dropped.append(why)))
    assert len(out) == 1 and dropped == ["nothing to shout"]
    assert (s.seen, s.kept, s.stats) == (2, 1, {"shouted": 1})


def test_window_runs_its_own_loop_and_emits_several() -> None:
    w = step("window")
    dropped: list[str] = []
    out = list(w.run([conv("q1", "a1", "q2", "a2", id="c"), conv("q", id="none")], lambda c, why: dropped.append(why)))
    assert [x.id for x in out] == ["c@1", "c@3"]
    assert dropped == ["no assistant turn to window"]
    assert (w.seen, w.kept, w.stats) == (2, 1, {"windows": 2})


def test_a_chunk_goes_through_the_steps_in_order() -> None:
    steps = [step("window"), step({"turns": {"min": 3}})]
    result = run_chunk(steps, [conv("q1", "a1", "q2", "a2", id="c"), conv("q", "a", id="d")])
    assert [c.id for c in result.out] == ["c@3"]
    assert result.rejects == [(1, "fewer than 3 turns", result.rejects[0][2]), (1, "fewer than 3 turns", result.rejects[1][2])]
    assert [r[2].id for r in result.rejects] == ["c@1", "d@1"]
    assert [(seen, kept) for seen, kept, _, _ in result.counts] == [(2, 2), (3, 1)]
    assert [s.barrier for s in steps] == [False, False] and step("exact_dedup").barrier


def test_an_unknown_executor_names_the_parameter(tmp_path: Path) -> None:
    recipe = parse_recipe({"inputs": [{"corpus": "chitchat"}]})
    with pytest.raises(ParamError) as err:
        run_recipe(recipe, str(tmp_path / "out"), executor="spark")
    assert str(err.value) == "unknown executor 'spark'; choose local or ray"
    assert err.value.render({"executor": "--executor"}) == "unknown --executor 'spark'; choose local or ray"
