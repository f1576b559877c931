"""The benches' and the agent page's percentile definition (nearest rank)."""

from __future__ import annotations

import pytest

from bench.percentiles import format_table, nearest_rank, summarize


def test_nearest_rank_picks_a_sample_at_or_above_the_share():
    """p50 of 1..10 is 5 and p99 is 10: values that were measured, never interpolated."""
    values = [float(v) for v in range(10, 0, -1)]
    assert nearest_rank(values, 50) == 5.0
    assert nearest_rank(values, 99) == 10.0
    assert nearest_rank(values, 100) == 10.0
    assert nearest_rank([7.0], 1) == 7.0


def test_nearest_rank_of_nothing_is_none_and_bad_p_is_refused():
    """No samples, no percentile; a p outside (0, 100] is an error, not a guess."""
    assert nearest_rank([], 50) is None
    with pytest.raises(ValueError, match="not in"):
        nearest_rank([1.0], 0)
    with pytest.raises(ValueError, match="not in"):
        nearest_rank([1.0], 101)


def test_summarize_counts_only_turns_with_a_number_for_the_leg():
    """A turn missing a leg (None, absent, a bool) is not counted for that leg."""
    turns: list[dict[str, object]] = [{"a": 1, "b": None}, {"a": 3.5, "b": 2}, {"a": True}, {}]
    summary = summarize(turns, ["a", "b", "c"])
    assert summary["a"] == {"p50": 1.0, "p99": 3.5, "n": 2}
    assert summary["b"] == {"p50": 2.0, "p99": 2.0, "n": 1}
    assert summary["c"] == {"p50": None, "p99": None, "n": 0}
    table = format_table(summary)
    assert "a" in table.splitlines()[1]
    assert table.splitlines()[3].endswith("-")
