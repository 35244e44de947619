"""kajitool's Kajiwoto CSV: history rows become context turns."""


from tests.sources.common import read


def test_kajiwoto(fixture):
    convs, _, _ = read(fixture("kajiwoto_kajitool_layout_SYNTHETIC.csv"))
    by_id = {c.id: c for c in convs}
    assert [m.content for m in by_id["kajiwoto:a1B2"].messages] == ["Hi!", "Hello {{user}}!"]
    follow_up = by_id["kajiwoto:c3D4"]
    assert [m.content for m in follow_up.messages] == ["Hi!", "Hello {{user}}!", "How are you?", "I'm great!"]
    assert by_id["kajiwoto:e5F6"].meta["kajiwoto"]["duplicate_ids"] == "a1B2"
    assert sum(1 for c in convs if c.id is None) == 1  # the row without an ID: the store derives one
