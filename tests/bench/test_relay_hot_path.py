"""bench/relay_hot_path.py: the relay's own per-message Python, timed on a real RelaySession."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TIMEOUT


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.relay_hot_path", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_it_relays_every_frame_and_prints_a_figure() -> None:
    """A short run relays each append and delta (else it fails) and prints µs per round trip."""
    result = run("--round-trips", "2000", "--repeat", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    match = re.search(r"best ([0-9.]+) µs, median ([0-9.]+) µs", result.stdout)
    assert match is not None, result.stdout
    assert 0 < float(match.group(1)) <= float(match.group(2))


@pytest.mark.parametrize(
    "args",
    [
        ("--round-trips", "0"),
        ("--round-trips", "9999999999"),
        ("--repeat", "0"),
        ("--round-trips", "many"),
    ],
    ids=["zero-trips", "unbounded-trips", "zero-repeats", "not-a-number"],
)
def test_out_of_range_arguments_are_refused(args: tuple[str, ...]) -> None:
    """Arguments that would measure nothing or run unbounded: usage error, exit code 2."""
    result = run(*args)
    assert result.returncode == 2
    assert "usage:" in result.stderr
