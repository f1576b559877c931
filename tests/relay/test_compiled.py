"""Which build of the relay runs: the checkout's sources, or the image's mypyc extensions.

``make test`` runs the relay's tests twice: on the sources, then with ``build/native`` (made
by ``relay_container/build_native.py``) first on ``PYTHONPATH`` and
``RELAY_EXPECT_COMPILED=1``. These tests make sure each pass ran the build it claims.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType

import pytest

from relay import metrics, session, wire
from relay.server import Relay

EXPECT_COMPILED = os.environ.get("RELAY_EXPECT_COMPILED") == "1"


@pytest.mark.parametrize("module", [wire, session, metrics], ids=lambda m: m.__name__)
def test_the_per_message_modules_are_the_build_this_pass_expects(module: ModuleType) -> None:
    """Each module build_native compiles is an extension exactly when this pass expects it."""
    suffix = Path(module.__file__ or "").suffix
    assert (suffix == ".so") is EXPECT_COMPILED, f"{module.__name__} loaded from {module.__file__}"


async def test_the_relay_reports_the_build_it_runs(relay: Relay, relay_logs: list[str]) -> None:
    """The start-up log line says `compiled` true exactly when the mypyc build runs."""
    started = [json.loads(line) for line in relay_logs if '"relay listening"' in line]
    assert len(started) == 1
    assert started[0]["compiled"] is EXPECT_COMPILED
