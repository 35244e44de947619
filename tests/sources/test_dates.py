"""Dates and times as exporters write them in their users' locales."""

from datetime import UTC, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatloom.sources import dates

offsets = st.one_of(st.none(), st.just(UTC), st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m))),
                    st.integers(-50000, 50000).map(lambda s: timezone(timedelta(seconds=s))))  # fmt: skip


@given(when=st.datetimes(), zone=offsets)
def test_iso_times_are_isoformat(when, zone):
    when = when.replace(tzinfo=zone)
    assert dates.iso(when) == when.isoformat()


@pytest.mark.parametrize(("written", "seconds"), [
    ("9:12:43 AM", 9 * 3600 + 12 * 60 + 43), ("11:32\u202fPM", 23 * 3600 + 32 * 60), ("11:25 a.\u00a0m.", 11 * 3600 + 25 * 60),
    ("12:05 a. m.", 5 * 60), ("12:05 PM", 12 * 3600 + 5 * 60), ("3:07_pm", 15 * 3600 + 7 * 60), (" 14:22 ", 14 * 3600 + 22 * 60),
    ("15:48:11.250", 15 * 3600 + 48 * 60 + 11), ("0:00", 0), ("14.22", 14 * 3600 + 22 * 60), ("12.00.05", 12 * 3600 + 5),
])  # fmt: skip
def test_times_in_the_exporters_layouts(written, seconds):
    assert dates.seconds_of_day(written) == seconds


@pytest.mark.parametrize("written", ["25:20", "9:60", "9:12:61", "9:12 XM", "9", "9:1", "\u202f25:05\u202f", "25:13:00 AM", "13:05 PM"])
def test_unreadable_times_name_the_cleaned_time(written):
    with pytest.raises(ValueError, match=f"^unreadable time '{dates.clean_time(written)}'$"):
        dates.seconds_of_day(written)
