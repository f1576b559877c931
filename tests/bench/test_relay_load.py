"""Smoke test of the relay load harness: one tiny step per target, real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.relay_load import NATIVE_BUILD, BenchError, compile_wsload
from tests.bench.conftest import IN_CI, needs_cc
from tests.conftest import ROOT, TIMEOUT

NATIVE_BUILT = bool(list(NATIVE_BUILD.glob("relay/session.*.so")))
needs_native = pytest.mark.skipif(
    not NATIVE_BUILT and not IN_CI, reason="no build/native: run `make native` (CI's make does)"
)


def case(target: str) -> Any:
    marks = [needs_cc]
    if target == "native":
        marks.append(needs_native)
    return pytest.param(target, marks=marks, id=target)


@pytest.mark.parametrize(
    "target",
    [
        *(case(t) for t in ("direct", "naive", "relay")),
        case("splice"),  # the floor of any Python relay
        case("native"),  # the relay as the image ships it (mypyc build)
    ],
)
def test_one_small_step_reports_round_trips_and_no_loss(target: str, tmp_path: Path) -> None:
    """Five sessions for two seconds: every append comes back and the round trip is reported."""
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.relay_load",
            "--target",
            target,
            "--no-direct",
            "--steps",
            "5",
            "--step-seconds",
            "2",
            "--warmup-seconds",
            "0.5",
            "--max-seconds",
            "90",
            "--json",
            str(report),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=9 * TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    document = json.loads(report.read_text())
    assert document["harness"] == "c"
    [result] = document["targets"]
    [step] = result["steps"]
    assert step["error"] is None, step["error"]
    assert step["connected"] == 5
    assert step["sent"] > 0
    assert step["received"] == step["sent"]
    assert step["lost"] == 0
    assert step["reorders"] == 0
    assert step["samples"] > 0
    assert step["p50_ms"] is not None
    assert step["p99_ms"] is not None
    if target != "direct":
        assert step["relay_cpu_seconds"] is not None
        assert step["relay_rss_kb"] > 0
    assert f"target: {target}" in proc.stdout
    assert "harness: c (bench/wsload.c built with " in proc.stdout


@needs_cc
def test_a_harness_that_does_not_compile_is_a_clear_error(tmp_path: Path) -> None:
    """A C harness with a compile error stops the run with the compiler's own message."""
    source = tmp_path / "broken.c"
    source.write_text("int main(void) { return undeclared_name; }\n")
    with pytest.raises(BenchError, match=r"(?s)compiling broken\.c failed.*undeclared_name"):
        compile_wsload(tmp_path, source)
