"""A layout's text functions (``tokens/joined.py``): walked for the first calls, compiled from the
third, the same strings either way, however many parts a group has."""

from __future__ import annotations

from pathlib import Path

from chatloom.model import Conversation, Message
from chatloom.tokens import Encoder
from chatloom.tokens.joined import COMPILE_AFTER, Joined, Slot
from chatloom.tokens.tokenizer import get_tokenizer
from tests.tokens import real_templates as rt


def test_walked_and_compiled_give_the_same_strings_for_any_number_of_parts() -> None:
    messages = [Message(role="user", content=f" text {i} ", name=None if i % 3 else f"n{i}") for i in range(2500)]
    long = [part for i in range(2500) for part in (f"<{i}>'\"\\", Slot(i, "c", ["", "l", "r", "lr"][i % 4]), Slot(i, "n", ""))]
    groups = [long, ["a", Slot(1, "c", "")], [], long[:40]]
    joined = Joined(groups)
    walked = [joined(messages) for _ in range(COMPILE_AFTER)]
    assert joined.fn is None
    compiled = joined(messages)  # 7,500 parts in one group: Python's compiler recurses once per "+" of a chain
    assert joined.fn is not None
    assert walked[0] == walked[1] == compiled
    assert compiled[1] == "a text 1 " and compiled[2] == "" and compiled[0].startswith("<0>'\"\\ text 0 n0<1>")


def test_a_long_chat_met_again_and_again_with_a_template_that_is_checked_per_conversation(tmp_path: Path) -> None:
    """Llama 3.1's template is checked against each conversation's render: a 600-message chat's
    whole text, thousands of parts, is compiled from its third time (it failed with a
    RecursionError in the compiler, a traceback out of chatloom tokenize)."""
    folder = str(rt.write_folder(tmp_path, "llama-3.1"))
    msgs = [Message(role="user" if i % 2 == 0 else "assistant", content=f"turn {i} " * (i % 4 + 1)) for i in range(600)]
    convs = [Conversation(id=f"c{i}", messages=msgs) for i in range(COMPILE_AFTER + 2)]
    encoded = Encoder(get_tokenizer(folder), folder).encode_batch(convs)
    assert all(e is not None and e == encoded[0] for e in encoded)
