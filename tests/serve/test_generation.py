"""Generation: history trimmed by tokens, best-of against a separate forward pass, stop strings,
tools in the template, cancellation."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatloom.errors import UsageError
from chatloom.serve.generation import Generator, PromptTooLong, Sampling, trim
from chatloom.serve.streaming import StopCutter, cut_at_stop


@pytest.fixture(scope="module")
def gen() -> Generator:
    from chatloom.train.models import load

    return Generator(*load("tiny:llama"))


def history(pairs: int) -> list[dict]:
    messages = [{"role": "system", "content": "You are a terse assistant."}]
    for i in range(pairs):
        messages += [{"role": "user", "content": f"question number {i} about the weather"},
                     {"role": "assistant", "content": f"answer number {i}: it is sunny"}]
    return messages + [{"role": "user", "content": "and tomorrow?"}]


def test_a_long_history_keeps_the_system_prompt_and_the_newest_turns(gen: Generator, monkeypatch) -> None:
    monkeypatch.setattr(gen, "context", 120)
    messages = history(20)
    prompt = gen.chat_prompt(messages, max_tokens=16)
    assert len(prompt.ids) <= 120 - 16
    assert prompt.ids == gen.render(prompt.messages)
    assert prompt.messages[0] == messages[0]
    assert prompt.messages[1:] == messages[len(messages) - len(prompt.messages) + 1:]  # the newest, in order
    assert prompt.messages[1]["role"] == "user"  # whole turns went
    assert prompt.dropped == len(messages) - len(prompt.messages) > 0
    one_more = [messages[0]] + messages[len(messages) - len(prompt.messages) - 1:]
    assert len(gen.render(one_more)) > 120 - 16  # as many turns as fit: one more does not


def test_a_short_history_is_kept_whole(gen: Generator) -> None:
    prompt = gen.chat_prompt(history(2), max_tokens=16)
    assert prompt.dropped == 0 and prompt.messages == history(2)


def test_a_prompt_that_cannot_fit_is_an_error(gen: Generator, monkeypatch) -> None:
    monkeypatch.setattr(gen, "context", 40)
    with pytest.raises(PromptTooLong, match="the context leaves 24"):
        gen.chat_prompt([{"role": "user", "content": "word " * 50}], max_tokens=16)
    with pytest.raises(UsageError, match="leaves no room"):
        gen.chat_prompt(history(1), max_tokens=40)


@given(st.lists(st.integers(1, 30), min_size=1, max_size=12), st.integers(1, 200))
def test_trim_drops_oldest_turns_only(sizes: list[int], budget: int) -> None:
    messages = [{"role": "system", "content": "s"}]
    for i, size in enumerate(sizes):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": "x" * size})

    def count(kept: list[dict]) -> int:
        return sum(len(m["content"]) for m in kept)

    try:
        kept, dropped = trim(messages, budget, count)
    except PromptTooLong:
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        assert count([messages[0]] + messages[last_user:]) > budget
        return
    assert count(kept) <= budget and kept[0] == messages[0] and kept[1:] == messages[len(messages) - len(kept) + 1:]
    assert dropped == len(messages) - len(kept)


def test_best_of_keeps_the_highest_mean_logprob_of_a_forward_pass(gen: Generator) -> None:
    import torch

    ids = gen.chat_prompt([{"role": "user", "content": "hi"}], max_tokens=6).ids
    sampling = Sampling(temperature=1.0, seed=4, max_tokens=6)
    candidates = gen.complete(ids, sampling, n=4)
    assert len({c.text for c in candidates}) == 4

    def mean_logprob(tokens: list[int]) -> float:  # a separate, whole-sequence forward pass
        with torch.no_grad():
            logits = gen.model(torch.tensor([ids + tokens])).logits[0].float()
        lp = torch.log_softmax(logits[len(ids) - 1: -1], dim=-1)
        return float(lp[torch.arange(len(tokens)), torch.tensor(tokens)].mean())

    scores = [mean_logprob(c.token_ids) for c in candidates]
    [best] = gen.complete(ids, sampling, n=1, best_of=4)
    assert best.token_ids == candidates[scores.index(max(scores))].token_ids
    assert best.mean_logprob == pytest.approx(max(scores), abs=1e-4)
    scored = gen.complete(ids, sampling.model_copy(update={"logprobs": True}), n=4)
    assert [c.mean_logprob for c in scored] == pytest.approx(scores, abs=1e-4)


def test_tools_reach_the_template(gen: Generator, monkeypatch) -> None:
    template = ("{% if tools %}TOOLS:{% for t in tools %}{{ t.function.name }};{% endfor %}\n{% endif %}"
                "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:")
    monkeypatch.setattr(gen.tok, "chat_template", template)
    tools = [{"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}]
    ids = gen.chat_prompt([{"role": "user", "content": "hi"}], tools=tools, max_tokens=8).ids
    assert gen.tok.decode(ids).startswith("TOOLS:now;user: hi")  # (jinja trims the newline after a block)


def test_stop_cutter_matches_the_whole_text() -> None:
    text = "one two three four five"
    for stops in (["three"], ["e f", "wo"], ["zzz"], ["five"]):
        cutter = StopCutter(stops)
        out = "".join(cutter.feed(c) for c in text) + cutter.flush()
        expected = cut_at_stop(text, stops)
        assert out == (text if expected is None else expected)


def test_cancel_stops_a_stream(gen: Generator) -> None:
    ids = gen.chat_prompt([{"role": "user", "content": "hi"}], max_tokens=1000).ids
    cancel = threading.Event()
    stream = gen.stream(ids, Sampling(temperature=1, seed=1, max_tokens=1000), cancel)
    for _ in stream:
        cancel.set()  # after the first piece (it comes at once; the rest come joined every 20 ms)
    assert stream.result is not None and stream.result.finish_reason == "cancelled"
    assert len(stream.result.token_ids) < 1000
    idle(gen)
    done = threading.Event()
    done.set()
    [skipped] = gen.complete(ids, Sampling(max_tokens=5), cancel=done)  # cancelled before it started
    assert skipped.finish_reason == "cancelled" and skipped.token_ids == []


def test_a_stream_yields_while_generating(gen: Generator) -> None:
    ids = gen.chat_prompt([{"role": "user", "content": "hi"}], max_tokens=300).ids
    stream = gen.stream(ids, Sampling(temperature=1, seed=2, max_tokens=300))
    pieces, unfinished = [], []
    for piece in stream:
        pieces.append(piece)
        unfinished.append(stream.result is None)
    assert unfinished[0] and sum(unfinished) > 2  # pieces came while the model was still generating
    [whole] = gen.complete(ids, Sampling(temperature=1, seed=2, max_tokens=300))
    assert "".join(pieces) == whole.text == stream.result.text


def idle(gen: Generator) -> None:
    """Wait for the worker to end its batch: a job is done at its last token, the batch a moment
    later (its count and ``active`` change then)."""
    for _ in range(1000):
        if not gen.active:
            return
        threading.Event().wait(0.01)
    raise AssertionError("the worker is still busy after 10 s")


def _busy(gen: Generator) -> object:
    """A long job that keeps the worker busy, so that the jobs queued next wait together."""
    return gen.job(gen.chat_prompt([{"role": "user", "content": "go"}], max_tokens=400).ids,
                   Sampling(temperature=1, max_tokens=400))


def test_waiting_requests_run_as_one_batch_with_the_same_replies(gen: Generator) -> None:
    prompts = [gen.chat_prompt([{"role": "user", "content": "hi " * k}], max_tokens=12).ids for k in (1, 9, 30, 4)]
    greedy = Sampling(temperature=0, max_tokens=12)
    alone = [gen.complete(p, greedy)[0] for p in prompts]
    idle(gen)
    before = gen.batcher.batches
    busy = _busy(gen)
    limits = [12, 5, 12, 8]
    jobs = [gen.job(p, greedy.model_copy(update={"max_tokens": m})) for p, m in zip(prompts, limits)]
    for job in jobs:
        job.done.wait()
    busy.done.wait()
    idle(gen)
    assert gen.batcher.batches - before <= 2  # the busy job's batch, then the four waiting ones in one
    for one, job, limit in zip(alone, jobs, limits):  # left padding changes nothing: the same greedy tokens
        [res] = job.results
        assert res.token_ids == one.token_ids[:limit] and res.finish_reason == "length"


def test_a_batch_keeps_each_rows_stop_and_cancel(gen: Generator) -> None:
    ids = gen.chat_prompt([{"role": "user", "content": "hi"}], max_tokens=40).ids
    busy = _busy(gen)
    sampling = Sampling(temperature=1, max_tokens=40)
    left = threading.Event()
    left.set()
    gone = gen.job(ids, sampling, cancel=left)  # its client left before it started
    streamed = gen.stream(ids, sampling.model_copy(update={"max_tokens": 300}))
    stopped = gen.job(ids, sampling.model_copy(update={"stop": [" ", "e"]}))
    plain = gen.job(ids, sampling)
    pieces = iter(streamed)
    next(pieces)
    pieces.close()  # the reader leaves after its first piece: its row ends, the others go on
    for job in (gone, stopped, plain, busy):
        job.done.wait()
    assert gone.results[0].finish_reason == "cancelled" and gone.results[0].token_ids == []
    streamed.job.done.wait()
    assert streamed.job.results[0].finish_reason == "cancelled" and len(streamed.job.results[0].token_ids) < 300
    text = stopped.results[0].text
    assert " " not in text and "e" not in text and stopped.results[0].finish_reason in ("stop", "length")
    assert plain.results[0].finish_reason == "length" and len(plain.results[0].token_ids) == 40
