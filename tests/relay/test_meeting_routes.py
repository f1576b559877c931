"""SessionRoute decisions (sans-I/O) and the router's memory bounds under a flood."""

from __future__ import annotations

import pytest

from relay.meeting_router import MeetingRouter, RouterLimits
from relay.meeting_routes import (
    Done,
    Lookup,
    OwnerCache,
    RouteLimits,
    RouteState,
    Send,
    SessionRoute,
    Sleep,
)


def route(**limits: float) -> SessionRoute:
    return SessionRoute("s-1", RouteLimits(**limits), lambda: 0.5)  # type: ignore[arg-type]


def test_events_go_one_at_a_time_in_arrival_order() -> None:
    """The owner is looked up once, then events leave one by one, oldest first."""
    r = route()
    for n in range(3):
        r.offer(b"%d" % n, now=0.0)
    assert r.next_action(0.0) == Lookup()
    r.looked_up("10.0.0.2:8081", 0.0)
    sent = []
    while isinstance(action := r.next_action(0.0), Send):
        sent.append(action.payload)
        assert action.owner == "10.0.0.2:8081"
        r.taken()
    assert action == Done()
    assert sent == [b"0", b"1", b"2"]
    assert r.counters.forwarded == 3
    assert r.state is RouteState.IDLE


def test_a_refused_event_is_resent_first_after_a_new_lookup() -> None:
    """'Not here' puts the event back in front, forgets the owner and backs off."""
    r = route(backoff_base=1.0)
    r.offer(b"a", 0.0)
    r.offer(b"b", 0.0)
    r.next_action(0.0)
    r.looked_up("old:1", 0.0)
    assert r.next_action(0.0) == Send("old:1", b"a")
    r.refused(0.0)
    assert r.owner is None
    assert isinstance(sleep := r.next_action(0.1), Sleep)
    assert sleep.until == pytest.approx(0.75)  # base 1 s, jitter 0.5 + 0.5 * 0.5
    assert r.next_action(sleep.until) == Lookup()
    r.looked_up("new:2", 0.8)
    assert r.next_action(0.8) == Send("new:2", b"a")


def test_backoff_grows_to_its_cap() -> None:
    """Each failure doubles the wait, up to the cap."""
    r = route(backoff_base=0.1, backoff_cap=1.0, max_wait_seconds=1000)
    r.offer(b"a", 0.0)
    now, waits = 0.0, []
    for _ in range(8):
        assert r.next_action(now) == Lookup()
        r.looked_up(None, now)
        sleep = r.next_action(now)
        assert isinstance(sleep, Sleep)
        waits.append(round(sleep.until - now, 4))
        now = sleep.until
    assert waits == [0.075, 0.15, 0.3, 0.6, 0.75, 0.75, 0.75, 0.75]


def test_wake_cuts_the_backoff_short() -> None:
    """A session that starts here ends the wait at once."""
    r = route(backoff_base=10.0)
    r.offer(b"a", 0.0)
    r.next_action(0.0)
    r.looked_up(None, 0.0)
    assert isinstance(r.next_action(0.0), Sleep)
    r.wake()
    assert r.next_action(0.0) == Lookup()


def test_the_backlog_keeps_the_newest_events() -> None:
    """Beyond max_events the oldest are dropped and counted."""
    r = route(max_events=3)
    for n in range(10):
        r.offer(b"%d" % n, 0.0)
    assert r.pending == 3
    assert r.counters.overflowed == 7
    assert r.head() == b"7"


def test_the_backlog_is_bounded_in_bytes() -> None:
    """Beyond max_bytes the oldest are dropped too."""
    r = route(max_bytes=100)
    for _ in range(10):
        r.offer(b"x" * 40, 0.0)
    assert r.pending == 2
    assert r.counters.overflowed == 8


def test_events_that_waited_too_long_are_dropped() -> None:
    """An event no session took within max_wait_seconds is dropped and counted."""
    r = route(max_wait_seconds=5.0)
    r.offer(b"old", 0.0)
    r.offer(b"new", 4.0)
    assert r.next_action(5.5) == Lookup()
    assert r.counters.expired == 1
    r.looked_up(None, 5.5)
    assert r.next_action(20.0) == Done()
    assert r.counters.expired == 2
    assert r.pending == 0


def test_local_delivery_takes_the_head() -> None:
    """Events taken by a session here leave the backlog in order."""
    r = route()
    r.offer(b"a", 0.0)
    r.offer(b"b", 0.0)
    r.delivered_here()
    assert r.head() == b"b"
    r.delivered_here()
    assert r.next_action(0.0) == Done()
    assert r.counters.delivered_here == 2


def test_a_remembered_owner_needs_no_lookup() -> None:
    """A route started with a remembered owner sends at once."""
    r = route()
    r.know_owner("10.0.0.2:8081")
    r.offer(b"a", 0.0)
    assert r.next_action(0.0) == Send("10.0.0.2:8081", b"a")


def test_owner_cache_is_bounded_and_expires() -> None:
    """Owners are remembered for a while, for a bounded number of sessions."""
    cache = OwnerCache(size=2, ttl=10.0)
    cache.put("a", "h:1", now=0.0)
    cache.put("b", "h:2", now=0.0)
    assert cache.get("a", now=1.0) == "h:1"  # a is now the most recently used
    cache.put("c", "h:3", now=1.0)
    assert cache.get("b", now=1.0) is None  # the least recently used went out
    assert cache.get("a", now=10.0) is None  # expired
    cache.forget("c")
    assert cache.get("c", now=1.0) is None


class NowhereRegistry:
    """No owner is ever recorded."""

    address: str | None = "127.0.0.1:1"

    def claim(self, session_id: str) -> None:
        pass

    def release(self, session_id: str) -> None:
        pass

    async def lookup(self, session_id: str) -> str | None:
        return None


async def test_a_flood_to_unknown_sessions_is_bounded_in_memory() -> None:
    """Events for sessions nobody holds: at most max_routes x max_events are kept, the rest
    dropped and counted, and deliver() never blocks."""
    counted: dict[str, int] = {}
    router = MeetingRouter(
        lambda _sid, _payload: False,
        NowhereRegistry(),
        "s" * 40,
        max_event_bytes=1024,
        limits=RouterLimits(route=RouteLimits(max_events=8), max_routes=50),
        count=lambda name, n: counted.__setitem__(name, counted.get(name, 0) + n),
    )
    try:
        for n in range(20_000):
            router.deliver(f"unknown-{n % 200}", b"{}")
        assert router.waiting_events <= 50 * 8
        stats = router.stats()
        assert stats.refused_routes == 150 * 100  # 150 sessions beyond the bound, 100 each
        assert stats.overflowed >= 50 * (100 - 8) - 50  # one each may be in flight
    finally:
        await router.aclose()
    assert counted["MeetingEventsDropped"] >= stats.refused_routes
