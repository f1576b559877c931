"""Waiting with a deadline: how every test waits for something to happen (no sleep-and-hope).

Each helper polls a check until it holds and fails, naming what did not happen, once its
deadline (a multiple of ``TIMEOUT``, scaled by ``TEST_TIMEOUT_FACTOR``) has passed. The
interval between polls only sets how soon a success is seen, never whether a test passes.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tests.conftest import TIMEOUT

T = TypeVar("T")


def poll(
    check: Callable[[], T | None], what: str, timeout: float = 3 * TIMEOUT, interval: float = 0.05
) -> T:
    """Call ``check`` until it returns something truthy, and return that.

    Raises:
        AssertionError: ``timed out waiting for: <what>`` at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(interval)


async def eventually(
    check: Callable[[], bool], within: float = TIMEOUT, interval: float = 0.005
) -> None:
    """In a coroutine: poll ``check`` until it holds (``TimeoutError`` after ``within`` s)."""
    async with asyncio.timeout(within):
        for _ in itertools.count():  # a poll, not a wait on an event: the check is all we have
            if check():
                return
            await asyncio.sleep(interval)


async def eventually_async(
    probe: Callable[[], Awaitable[Any]],
    expected: Any,
    within: float = TIMEOUT,
    interval: float = 0.02,
) -> None:
    """Await ``probe()`` until it returns ``expected`` (``TimeoutError`` after ``within`` s)."""
    async with asyncio.timeout(within):
        for _ in itertools.count():
            if await probe() == expected:
                return
            await asyncio.sleep(interval)
