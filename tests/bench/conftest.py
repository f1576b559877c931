"""Fixtures for the benchmark harness tests: the C harness built once, echo upstreams on port 0."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.relay_load import Children, LineReader, c_compiler, compile_wsload
from tests.conftest import ROOT, TIMEOUT

HAS_CC = c_compiler() is not None
#: CI installs a compiler (.ci/run; the relay's mypyc build needs it too): there a missing
#: one fails the tests instead of skipping them.
IN_CI = bool(os.environ.get("CI"))

needs_cc = pytest.mark.skipif(not HAS_CC and not IN_CI, reason="the C harness needs cc or gcc")


@pytest.fixture(scope="session")
def wsload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bench/wsload.c compiled with the flags relay_load.py uses (once per session)."""
    if not HAS_CC:
        if IN_CI:
            pytest.fail("no C compiler: .ci/run installs gcc")
        pytest.skip("the C harness needs cc or gcc")
    return compile_wsload(tmp_path_factory.mktemp("wsload"))


def start_echo(argv: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    """Start an echo upstream; its URL from the one line it prints when ready."""
    proc = subprocess.Popen(
        argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        line = LineReader(proc).readline(time.monotonic() + TIMEOUT)
    except Exception:
        Children.stop(proc, timeout=TIMEOUT)
        raise
    assert line.startswith("echo upstream listening on ws://"), line
    return proc, line.split()[-1]


@pytest.fixture
def echo_factory() -> Iterator[Callable[[list[str]], str]]:
    """Start echo upstreams from argv; each is stopped (SIGTERM) when the test ends."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str]) -> str:
        proc, url = start_echo(argv)
        procs.append(proc)
        return url

    yield start
    for proc in procs:
        Children.stop(proc, timeout=TIMEOUT)  # SIGTERM, then closes its pipes


@pytest.fixture
def c_echo_url(wsload: Path, echo_factory: Callable[[list[str]], str]) -> str:
    """ws:// URL of a running C echo upstream (`wsload echo`) on 127.0.0.1, port 0."""
    return echo_factory([str(wsload), "echo", "--host", "127.0.0.1", "--port", "0"])
