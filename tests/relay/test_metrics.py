"""EMF metric lines: one per interval, counters summed, relay delay as percentiles."""

from __future__ import annotations

import io
import json

from relay.metrics import COUNTERS, RECORD_COUNTERS, DelayHistogram, Metrics


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
