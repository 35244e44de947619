"""The built-in filters, each on small conversations written here."""

from __future__ import annotations

from chatloom.model import Conversation, Message
from tests.conftest import conv
from tests.pipeline.conftest import keeps, step


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


def test_near_dedup_keeps_the_first_of_each_cluster() -> None:
    base = "the quick brown fox jumps over the lazy dog and then runs far away into the green forest to find some food"
    words = base.split()
    near = " ".join(words[:-1] + ["berries"])  # one word of 22 changed: Jaccard of 5-grams ≈ 0.9
    other = "a completely different conversation about cooking pasta with garlic olive oil and fresh basil leaves tonight"
    convs = [conv("hi", base, id="a"), conv("hello", other, id="b"), conv("hi", near, id="c")]
    s = step({"near_dedup": {"threshold": 0.8}})
    s.fit(convs)
    assert [s.keep(c) for c in convs] == [True, True, (False, "near duplicate")]
