"""Which build of the relay runs: the checkout's sources, or the image's mypyc extensions.

``make test`` runs the relay's tests twice: on the sources, then with ``build/native`` (made
by ``relay_container/build_native.py``) first on ``PYTHONPATH`` and
``RELAY_EXPECT_COMPILED=1``. These tests make sure each pass ran the build it claims.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from types import ModuleType

import pytest

from relay import (
    client_events,
    client_leg,
    core,
    core_client,
    core_legs,
    core_moves,
    effects,
    events,
    metrics,
    rollover_legs,
    session,
    session_legs,
    turn_timing,
    upstream_leg,
    wire,
)
from relay.server import Relay
from tests.conftest import TIMEOUT
from tests.relay.conftest import SECRET, environ_for_subprocess

EXPECT_COMPILED = os.environ.get("RELAY_EXPECT_COMPILED") == "1"


@pytest.mark.parametrize(
    "module",
    [
        wire,
        session,
        session_legs,
        core,
        core_client,
        core_moves,
        core_legs,
        upstream_leg,
        rollover_legs,
        client_leg,
        client_events,
        effects,
        events,
        metrics,
        turn_timing,
    ],
    ids=lambda m: m.__name__,
)
def test_the_per_message_modules_are_the_build_this_pass_expects(module: ModuleType) -> None:
    """Each module build_native compiles is an extension exactly when this pass expects it."""
    suffix = Path(module.__file__ or "").suffix
    assert (suffix == ".so") is EXPECT_COMPILED, f"{module.__name__} loaded from {module.__file__}"


async def test_the_relay_reports_the_build_it_runs(relay: Relay, relay_logs: list[str]) -> None:
    """The start-up log line says `compiled` true exactly when the mypyc build runs."""
    started = [json.loads(line) for line in relay_logs if '"relay listening"' in line]
    assert len(started) == 1
    assert started[0]["compiled"] is EXPECT_COMPILED


async def test_a_relay_process_runs_the_same_build(tmp_path: Path) -> None:
    """`python -m relay` started from this pass (as the e2e and drain tests start it) says so."""
    log = tmp_path / "relay.log"
    env = environ_for_subprocess(
        PORT="0",
        RELAY_HOST="127.0.0.1",
        OPENAI_REALTIME_URL="ws://127.0.0.1:9/v1/realtime",
        OPENAI_API_KEY="sk-test-not-used",
        RELAY_TOKEN_SECRET=SECRET,
    )
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "relay", env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    try:
        async with asyncio.timeout(3 * TIMEOUT):
            while '"relay listening"' not in log.read_text():
                assert proc.returncode is None, log.read_text()[-2000:]
                await asyncio.sleep(0.05)
        [line] = [json.loads(x) for x in log.read_text().splitlines() if '"relay listening"' in x]
        assert line["compiled"] is EXPECT_COMPILED
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(TIMEOUT):
                await proc.wait()
    assert proc.returncode == 0
