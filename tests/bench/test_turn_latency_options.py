"""The turn-latency bench's options: the ``--latency-hint`` it passes to the page, and its
bounded background CPU load (bench/cpu_load.py)."""

from __future__ import annotations

import argparse
import subprocess

import pytest

from bench.cpu_load import cpu_load, load_command
from bench.turn_latency import latency_hint, output_counted


@pytest.mark.parametrize(
    ("text", "passed"),
    [("interactive", "interactive"), ("balanced", "balanced"), ("0", "0"), ("0.010", "0.01")],
)
def test_latency_hint_passes_what_the_page_accepts(text: str, passed: str):
    assert latency_hint(text) == passed


@pytest.mark.parametrize("text", ["fast", "-0.01", "0.6", "20", "nan", ""])
def test_latency_hint_refuses_what_the_page_would_ignore(text: str):
    with pytest.raises(argparse.ArgumentTypeError):
        latency_hint(text)


def test_output_counted_reports_underruns_after_the_warm_up_only():
    """The counters are differences (the warm-up's underruns are not the run's); the
    settings are the last reported."""
    first = {"underruns": {"events": 2, "ms": 5.8, "playedMs": 3000.0}, "gaps": 1, "gapMs": 4.0}
    last = {
        "latencyHint": 0,
        "baseLatencyMs": 2.9,
        "outputLatencyMs": 9.0,
        "sampleRate": 44100,
        "underruns": {"events": 5, "ms": 14.5, "playedMs": 63000.0},
        "gaps": 1,
        "gapMs": 4.0,
    }
    counted = output_counted(first, last)
    assert counted["underrun_events"] == 3
    assert counted["underrun_ms"] == pytest.approx(8.7)
    assert counted["underrun_playedMs"] == pytest.approx(60000.0)
    assert counted["gaps"] == 0
    assert counted["latencyHint"] == 0


@pytest.mark.parametrize(("workers", "seconds"), [(0, 1.0), (17, 1.0), (1, 0.0), (1, 1801.0)])
def test_load_is_bounded(workers: int, seconds: float):
    with pytest.raises(ValueError, match="must be"):
        load_command(workers, seconds)


def test_load_processes_end_with_the_block(monkeypatch: pytest.MonkeyPatch):
    """Every busy loop started is gone when the block ends, well before its own deadline."""
    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def record(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        proc = real_popen(*args, **kwargs)  # type: ignore[call-overload]
        started.append(proc)
        return proc  # type: ignore[no-any-return]

    monkeypatch.setattr(subprocess, "Popen", record)
    with cpu_load(2, 60.0) as what:
        assert "2 x" in what
        assert len(started) in (1, 2)  # stress-ng runs both workers; Python needs two
        assert all(proc.poll() is None for proc in started)
    assert all(proc.poll() is not None for proc in started)


def test_no_load_starts_nothing():
    with cpu_load(0, 60.0) as what:
        assert what == "none"
