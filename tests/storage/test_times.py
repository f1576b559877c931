"""The table's one time format: fixed width, so text order is time order, for every year."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.times import (
    KEY_TIME_CHARS,
    key_day,
    key_time,
    key_time_from_epoch_ms,
    parse_time,
)

OFFSETS = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)
#: Aware times whose UTC instant stays inside years 1-9999.
MOMENTS = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=OFFSETS
)


@settings(max_examples=300, database=None)
@given(first=MOMENTS, second=MOMENTS)
def test_text_order_is_time_order_in_every_year(first: datetime, second: datetime):
    """Any two times, in any offsets and years 1-9999, compare as text as they do as times."""
    a, b = key_time(first), key_time(second)
    assert len(a) == len(b) == KEY_TIME_CHARS
    assert (a < b) == (first < second)
    assert (a == b) == (first == second)
    assert parse_time(a) == first


def test_years_before_1000_are_zero_padded():
    """Year 999 is written 0999, so it sorts before 2026 (it sorted after: '9' > '2')."""
    assert key_time(datetime(999, 6, 1, tzinfo=UTC)) == "0999-06-01T00:00:00.000000Z"
    assert key_time(datetime(999, 6, 1, tzinfo=UTC)) < key_time(datetime(2026, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-1))),
    ],
    ids=["year-0-in-utc", "year-10000-in-utc"],
)
def test_a_time_outside_years_1_to_9999_in_utc_is_refused(moment: datetime):
    """A time that would need a fifth digit or year 0 raises ValueError, not OverflowError."""
    with pytest.raises(ValueError, match="outside years"):
        key_time(moment)


def test_naive_times_are_utc_and_offsets_normalise():
    """'18:45:09' and '20:45:09+02:00' are the same stored instant."""
    naive = datetime(2026, 11, 29, 18, 45, 9)
    offset = datetime(2026, 11, 29, 20, 45, 9, tzinfo=timezone(timedelta(hours=2)))
    assert key_time(naive) == key_time(offset) == "2026-11-29T18:45:09.000000Z"
    assert key_day(offset) == "2026-11-29"


def test_epoch_milliseconds_use_the_same_format():
    """The relay's millisecond stamps are written in the same 27-character format."""
    moment = datetime(2026, 11, 29, 18, 45, 9, 500_000, tzinfo=UTC)
    assert key_time_from_epoch_ms(int(moment.timestamp() * 1000)) == key_time(moment)
    assert key_time_from_epoch_ms(0) == "1970-01-01T00:00:00.000000Z"


def test_epoch_milliseconds_beyond_year_9999_are_refused():
    """An absurd millisecond count raises ValueError (not OverflowError or OSError)."""
    with pytest.raises(ValueError, match="not a representable time"):
        key_time_from_epoch_ms(10**20)


def test_times_stored_before_the_format_was_unified_still_read():
    """Older items' millisecond stamps and the unified ones parse to the same instant."""
    old, new = "2026-11-29T18:45:09.500Z", "2026-11-29T18:45:09.500000Z"
    assert parse_time(old) == parse_time(new) == datetime(2026, 11, 29, 18, 45, 9, 500_000, UTC)
    assert parse_time("last tuesday") is None
