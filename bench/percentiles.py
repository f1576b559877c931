"""Nearest-rank percentiles and per-leg summaries, as the agent page computes them.

The page's ``agentStats.latency`` (relay_container/relay/static/turn-latency.js) and the
latency benches use the same definition, so a recorded p50/p99 means one thing: the
smallest value with at least p % of the samples at or below it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence


def nearest_rank(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of ``values``; None if empty."""
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} is not in (0, 100]")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(
    turns: Iterable[Mapping[str, object]], legs: Sequence[str]
) -> dict[str, dict[str, float | int | None]]:
    """``{leg: {"p50", "p99", "n"}}`` over the turns that have a number for that leg."""
    rows = list(turns)
    summary: dict[str, dict[str, float | int | None]] = {}
    for leg in legs:
        values = [
            float(v)
            for row in rows
            if isinstance(v := row.get(leg), (int, float)) and not isinstance(v, bool)
        ]
        summary[leg] = {
            "p50": nearest_rank(values, 50),
            "p99": nearest_rank(values, 99),
            "n": len(values),
        }
    return summary


def format_table(summary: Mapping[str, Mapping[str, float | int | None]]) -> str:
    """A fixed-width table: leg, n, p50, p99 (ms)."""
    lines = [f"{'leg':<16} {'n':>4} {'p50 ms':>9} {'p99 ms':>9}"]
    for leg, row in summary.items():
        p50, p99 = row["p50"], row["p99"]
        cells = [f"{x:9.1f}" if isinstance(x, (int, float)) else f"{'-':>9}" for x in (p50, p99)]
        lines.append(f"{leg:<16} {row['n']:>4} {cells[0]} {cells[1]}")
    return "\n".join(lines)
