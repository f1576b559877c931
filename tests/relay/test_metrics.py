"""EMF metric lines: one per interval, counters summed, relay delay as percentiles."""

from __future__ import annotations

import bisect
import io
import json
import math
import random

from relay import metrics as metrics_module
from relay.metrics import COUNTERS, RECORD_COUNTERS, DelayHistogram, Metrics, bucket_index


def test_one_emf_line_per_interval_with_every_metric() -> None:
    """An interval's counters and delay summary land in one EMF line, then reset."""
    stream = io.StringIO()
    metrics = Metrics(namespace="NS", service="relay", active_sessions=lambda: 7, stream=stream)
    metrics.count("SessionsStarted", 3)
    metrics.count("AuthFailures")
    for i in range(1000):
        metrics.delay.observe(0.0001 if i < 980 else 0.02)
    metrics.flush()
    metrics.flush()
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    directive = first["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "NS"
    assert directive["Dimensions"] == [["Service"]]
    names = {m["Name"] for m in directive["Metrics"]}
    assert names == {"ActiveSessions", *COUNTERS, "RelayDelayMs"}
    assert first["Service"] == "relay"
    assert (first["ActiveSessions"], first["SessionsStarted"], first["AuthFailures"]) == (7, 3, 1)
    assert len(first["RelayDelayMs"]) == 100
    assert 0.09 <= first["RelayDelayP50Ms"] <= 0.12
    assert 15 <= first["RelayDelayP99Ms"] <= 21
    assert second["SessionsStarted"] == 0
    assert "RelayDelayMs" not in second


def test_histogram_quantiles_are_within_bucket_precision() -> None:
    """Quantiles are read from log buckets within ~15 % of the true value."""
    histogram = DelayHistogram()
    for i in range(1, 10_001):
        histogram.observe(i * 1e-6)  # 1 µs .. 10 ms uniformly
    assert abs(histogram.quantile(0.5) - 5e-3) / 5e-3 < 0.15
    assert abs(histogram.quantile(0.99) - 9.9e-3) / 9.9e-3 < 0.15
    assert histogram.quantile(1.0) == histogram.max


def test_record_counters_are_per_interval_increases() -> None:
    """The recorder's cumulative counts become per-interval RecordsWritten/Dropped/Failures."""
    counts = [(10, 1, 2)]
    metrics = Metrics(
        namespace="NS", service="relay", active_sessions=lambda: 0, records=lambda: counts[0]
    )
    first = metrics.render()
    counts[0] = (15, 1, 5)
    second = metrics.render()
    names = {m["Name"] for m in second["_aws"]["CloudWatchMetrics"][0]["Metrics"]}  # type: ignore[index]
    assert set(RECORD_COUNTERS) <= names
    assert [first[n] for n in RECORD_COUNTERS] == [10, 1, 2]
    assert [second[n] for n in RECORD_COUNTERS] == [5, 0, 3]


def test_bucket_index_matches_a_binary_search_over_the_bounds() -> None:
    """The arithmetic bucket equals bisect_left on the bounds: at, around and beyond each bound."""
    bounds = metrics_module._BOUNDS
    values = [0.0, -1.0, 1e-9, 1e6, float(bounds[-1]) * 2]
    for bound in bounds:
        values += [bound, math.nextafter(bound, 0.0), math.nextafter(bound, 1.0), bound * 1.07]
    values += [random.Random(7).uniform(0, 120) ** 3 / 1e6 for _ in range(20_000)]
    wrong = [v for v in values if bucket_index(v) != bisect.bisect_left(bounds, v)]
    assert wrong == []
