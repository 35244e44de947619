"""The sessionizer's rules (who is who, turns, sessions), against a plain reference and through every stream format written and read back."""

import json
from collections import Counter
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatloom.importing import ImportOptions
from chatloom.sources import Reader
from chatloom.sources.stream import Post, Sessionizer
from tests.sources.common import read


def test_sessionizer_rules():
    t0 = datetime(2024, 1, 1, 12, 0)
    posts = [Post("ana", "a", t0), Post("ana", "b", t0 + timedelta(minutes=4)), Post("ben", "c", t0 + timedelta(minutes=5)),
             Post("ana", "d", t0 + timedelta(hours=3)), Post("ben", "e", t0 + timedelta(hours=3, minutes=1)),
             Post("ben", "f", t0 + timedelta(hours=6))]  # fmt: skip
    reader = Reader("x")
    convs = list(Sessionizer(ImportOptions(me=["ANA"]), reader).conversations(posts, fmt="t", chat_id="c", file="x"))
    assert [[(m.role, m.content) for m in c.messages] for c in convs] == [
        [("assistant", "a\nb"), ("user", "c")],
        [("assistant", "d"), ("user", "e")],
    ]
    assert reader.dropped == {"fewer than 2 turns": 1}


words = st.text(st.characters(whitelist_categories=("L", "N"), max_codepoint=0x2FF), min_size=1, max_size=12)


def _reference_sessions(posts, me, merge_gap, session_gap, min_turns):
    """DESIGN §3's rules, written the plain way: cut sessions, then merge turns within each."""
    sessions, last = [], None
    for post in posts:
        if sessions and post.time is not None and last is not None and post.time - last > session_gap:
            sessions.append([])
        elif not sessions:
            sessions.append([])
        sessions[-1].append(post)
        last = post.time or last
    out = []
    for session in sessions:
        turns = []
        for prev, post in zip([None, *session], session):
            if prev is not None and post.author == prev.author and (
                    post.time is None or prev.time is None or post.time - prev.time <= merge_gap):  # fmt: skip
                turns[-1][1] += "\n" + post.text
            else:
                turns.append([post.author, post.text, post.time, post.id])
        if len(turns) >= min_turns and any(a in me for a, *_ in turns):
            out.append([("assistant" if a in me else "user", a, text, t.isoformat() if t else None, i) for a, text, t, i in turns])
    return out


times = st.one_of(st.none(), st.integers(0, 200).map(lambda m: timedelta(minutes=m)))


@given(spec=st.lists(st.tuples(st.sampled_from(["ana", "ben"]), words, times, st.one_of(st.none(), words)), max_size=30),
       merge=st.sampled_from([0, 5, 60]), gap=st.sampled_from([30, 60, 180]), min_turns=st.integers(1, 3))  # fmt: skip
@settings(max_examples=300, deadline=None)
def test_sessionizer_follows_the_rules_with_and_without_times(spec, merge, gap, min_turns):
    t, posts = datetime(2024, 1, 1), []
    for author, text, step, pid in spec:
        t += step or timedelta()
        posts.append(Post(author, text, t if step is not None else None, pid))
    reader = Reader("x")
    options = {"me": ["ANA"], "merge_gap": f"{merge}m", "session_gap": f"{gap}m", "min_turns": min_turns}
    got = list(Sessionizer(ImportOptions(**options), reader).conversations(posts, fmt="t", chat_id="c", file="x"))
    assert [[(m.role, m.name, m.content, m.meta.get("time"), m.meta.get("id")) for m in c.messages] for c in got] == (
        _reference_sessions(posts, {"ana"}, timedelta(minutes=merge), timedelta(minutes=gap), min_turns))
    assert reader.speakers == Counter(p.author for p in posts)


def _render(kind, posts, path):
    if kind == "whatsapp":
        # the first line, a day above 12 on its own, tells the date order (and is dropped: no --me in it)
        path.write_text("[13/12/2023, 00:00:00] x: pin\n" +
                        "".join(f"[{p.time:%d/%m/%Y}, {p.time:%H:%M:%S}] {p.author}: {p.text}\n" for p in posts), encoding="utf-8")
    elif kind == "discord":
        path.write_text(json.dumps({"guild": {"name": "g"}, "channel": {"id": "9", "name": "c"}, "messages": [
            {"id": str(i), "type": "Default", "timestamp": p.time.isoformat() + "+00:00", "content": p.text, "author": {"name": p.author}}
            for i, p in enumerate(posts)]}, indent=2))  # fmt: skip
    else:
        path.write_text(json.dumps({"name": "c", "id": 9, "messages": [
            {"id": i, "type": "message", "date": p.time.isoformat(), "from": p.author, "from_id": p.author, "text": p.text}
            for i, p in enumerate(posts)]}))  # fmt: skip


post_lists = st.lists(st.tuples(st.sampled_from(["ana", "ben", "cy"]), st.lists(words, min_size=1, max_size=4).map(" ".join),
                                st.integers(1, 200)), min_size=1, max_size=25)  # fmt: skip


@pytest.mark.parametrize("kind", ["whatsapp", "discord", "telegram"])
@given(spec=post_lists)
@settings(max_examples=40, deadline=None)
def test_stream_formats_read_back_what_was_written(tmp_path_factory, kind, spec):
    t = datetime(2024, 1, 1)
    posts = []
    for author, text, gap in spec:
        t += timedelta(minutes=gap)
        posts.append(Post(author, text, t))
    path = tmp_path_factory.mktemp(kind) / ("chat.txt" if kind == "whatsapp" else "chat.json")
    _render(kind, posts, path)
    options = {"me": ["ana"], "min_turns": 1}
    expected = list(Sessionizer(ImportOptions(**options), Reader("x")).conversations(posts, fmt=kind, chat_id="c", file="x"))
    got, _, name = read(path, kind, **options)
    assert name == kind
    assert [[(m.role, m.name, m.content) for m in c.messages] for c in got] == [
        [(m.role, m.name, m.content) for m in c.messages] for c in expected
    ]
