"""Cost of forwarding a meeting event to the relay task that holds its session.

Two paths, both over real loopback sockets, in one process:

- ``local``: ``MeetingRouter.deliver`` for a session held by this process (the common case
  with one task, and on the owner): the router's own overhead per event;
- ``forwarded``: ``MeetingRouter.deliver`` on a router whose session lives behind another
  process's ``InternalListener`` (the owner is known: one link, one event in flight per
  session, an answer per event). Measured from ``deliver`` to the owner's delivery
  callback, with events paced (one every 20 ms, a busy meeting's rate) and as a burst
  (how many per second one session's route can carry, stop-and-wait).

The owner lookup (one DynamoDB ``GetItem`` per session, not per event) is not included:
the registry here is an in-memory stand-in that always names the listener.

Run: ``.venv/bin/python -m bench.meeting_routing [--events 2000]``. Prints p50/p99 in ms
and the burst rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from relay.internal_listener import InternalListener
from relay.meeting_router import MeetingRouter

SECRET = "bench-secret-" + "x" * 40
EVENT = json.dumps(
    {
        "event": "transcript.data",
        "data": {"data": {"words": [{"text": "hello there"}], "participant": {"id": 7}}},
    }
).encode()


class FixedRegistry:
    """An owner registry that always names one address."""

    def __init__(self, address: str | None) -> None:
        self.address_of_owner = address
        self.address: str | None = "127.0.0.1:1"

    def claim(self, session_id: str) -> None:
        pass

    def release(self, session_id: str) -> None:
        pass

    async def lookup(self, session_id: str) -> str | None:
        return self.address_of_owner


class Arrivals:
    """A delivery callback recording when each event arrived; wakes a waiter at a count."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._target = 0
        self._reached = asyncio.Event()

    def __call__(self, session_id: str, payload: bytes) -> bool:
        self.times.append(time.perf_counter())
        if len(self.times) >= self._target:
            self._reached.set()
        return True

    async def wait_for(self, count: int) -> None:
        """Until ``count`` events have arrived in all (10 s at most)."""
        self._target = count
        self._reached.clear()
        if len(self.times) < count:
            async with asyncio.timeout(10):
                await self._reached.wait()


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 100 else max(values)


async def main(events: int) -> None:
    arrived = Arrivals()
    listener = InternalListener("127.0.0.1", 0, SECRET, arrived, max_event_bytes=2**20)
    await listener.start()
    owner = f"127.0.0.1:{listener.port}"
    local_seen = Arrivals()
    local_router = MeetingRouter(
        local_seen,
        FixedRegistry(None),
        SECRET,
        max_event_bytes=2**20,
    )
    remote_router = MeetingRouter(
        lambda _sid, _payload: False, FixedRegistry(owner), SECRET, max_event_bytes=2**20
    )
    try:
        # Local: deliver → callback, synchronous.
        local_ms = []
        for _ in range(events):
            start = time.perf_counter()
            local_router.deliver("s-local", EVENT)
            local_ms.append((local_seen.times[-1] - start) * 1000)

        # Forwarded, paced: one event every 20 ms; the first opens the link.
        remote_router.deliver("s-remote", EVENT)
        await arrived.wait_for(1)
        forwarded_ms = []
        for _ in range(min(events, 500)):
            before = len(arrived.times)
            start = time.perf_counter()
            remote_router.deliver("s-remote", EVENT)
            await arrived.wait_for(before + 1)
            forwarded_ms.append((arrived.times[-1] - start) * 1000)
            await asyncio.sleep(0.02)

        # Forwarded, burst: how fast one session's route drains (bursts of 200, inside
        # the route's 256-event backlog: a larger burst would be trimmed, by design).
        sent, start = 0, time.perf_counter()
        while sent < events:
            before = len(arrived.times)
            for _ in range(200):
                remote_router.deliver("s-burst", EVENT)
            sent += 200
            await arrived.wait_for(before + 200)
        burst_rate = sent / (time.perf_counter() - start)
    finally:
        await local_router.aclose()
        await remote_router.aclose()
        await listener.aclose()

    print(f"event size: {len(EVENT)} bytes")
    print(
        f"local      deliver→session  p50 {statistics.median(local_ms) * 1000:.1f} µs  "
        f"p99 {pct(local_ms, 99) * 1000:.1f} µs  (n={len(local_ms)})"
    )
    print(
        f"forwarded  deliver→owner    p50 {statistics.median(forwarded_ms):.3f} ms  "
        f"p99 {pct(forwarded_ms, 99):.3f} ms  (n={len(forwarded_ms)}, paced 20 ms)"
    )
    print(f"forwarded  burst, one session: {burst_rate:,.0f} events/s (stop-and-wait)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    asyncio.run(main(parser.parse_args().events))
