"""The built-in transforms, each on small conversations written here."""

from __future__ import annotations

from chatloom.model import Conversation, Message
from tests.conftest import conv
from tests.pipeline.conftest import step


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
