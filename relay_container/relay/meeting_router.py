"""MeetingRouter: gets each meeting event to the relay process that holds its session.

Recall's real-time events WebSocket lands on any relay task; the page's session lives on
one (ALB stickiness is by cookie, which Recall's socket does not carry). The endpoint that
receives Recall's events calls :meth:`MeetingRouter.deliver` with each verified message:

- a live session of that subject on this process takes it at once (the local delivery);
- otherwise the event joins that session's route (``relay.meeting_routes``: bounded
  backlog, one event in flight, backoff, give-up), whose pump task looks the owner up in
  the registry (``relay.owner_registry``; remembered afterwards in a bounded cache, so a
  session's later events need no lookup) and forwards the events, in order, over the one
  link to that owner's internal listener (``relay.owner_link``). A route follows a session
  that moves: "not here", a closed link or no answer make it forget the owner and look it
  up again.

:meth:`deliver` never blocks and never raises: a missing owner cannot stall the Recall
connection. Routes are bounded in number (``max_routes``; beyond it a new session's event
is dropped and counted), links too (``max_links``; the least recently used is closed).

The server tells the router when the first session of a subject starts on this process
and when the last one ends (:meth:`session_started`, :meth:`session_ended`): the router
claims or releases the owner item and delivers whatever waited here for that session.

Every task here is owned by the router and ended by :meth:`aclose`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

from relay.internal_listener import LocalDelivery
from relay.meeting_routes import (
    Done,
    Lookup,
    OwnerCache,
    RouteCounters,
    RouteLimits,
    Send,
    SessionRoute,
    Sleep,
)
from relay.owner_link import LinkError, OwnerLink
from relay.owner_registry import OwnerDirectory

logger = logging.getLogger(__name__)

#: ``count(metric_name, n)``: the relay's metrics counter.
Count = Callable[[str, int], None]


@dataclass(frozen=True, slots=True)
class RouterLimits:
    """Bounds of the router as a whole (one route's are in ``route``)."""

    route: RouteLimits = field(default_factory=RouteLimits)
    max_routes: int = 1000
    max_links: int = 64
    open_timeout: float = 3.0
    answer_timeout: float = 5.0
    #: Sessions whose owner is remembered between routes, and for how long.
    cached_owners: int = 4096
    owner_ttl_seconds: float = 300.0


@dataclass(slots=True)
class RouterStats:
    """Counts over the router's life (live routes included)."""

    delivered_here: int = 0
    forwarded: int = 0
    overflowed: int = 0
    expired: int = 0
    refused_routes: int = 0
    failed_attempts: int = 0
    lookups: int = 0


_DROP_METRIC: Final = "MeetingEventsDropped"
_FORWARD_METRIC: Final = "MeetingEventsForwarded"


class MeetingRouter:
    """Routes meeting events to the local session or the task that holds it."""

    def __init__(
        self,
        deliver_local: LocalDelivery,
        registry: OwnerDirectory,
        secret: str,
        *,
        max_event_bytes: int,
        limits: RouterLimits | None = None,
        count: Count | None = None,
    ) -> None:
        """``deliver_local`` hands an event to a live session here (True: it took it)."""
        self._deliver_local = deliver_local
        self.registry = registry
        self._secret = secret
        self._max_event_bytes = max_event_bytes
        self.limits = limits or RouterLimits()
        self._count = count or (lambda _name, _n: None)
        self._routes: dict[str, SessionRoute] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._links: dict[str, OwnerLink] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._totals = RouterStats()
        self._owners = OwnerCache(self.limits.cached_owners, self.limits.owner_ttl_seconds)
        self._closed = False

    # Input (the events endpoint, the server)

    def deliver(self, session_id: str, payload: bytes) -> None:
        """Deliver one verified meeting event of ``session_id``; never blocks or raises."""
        if self._closed:
            return
        route = self._routes.get(session_id)
        if route is None:
            if self._deliver_local(session_id, payload):
                self._totals.delivered_here += 1
                return
            if len(self._routes) >= self.limits.max_routes:
                self._totals.refused_routes += 1
                self._count(_DROP_METRIC, 1)
                if self._totals.refused_routes & (self._totals.refused_routes - 1) == 0:
                    logger.warning(
                        "meeting event dropped: too many sessions waiting",
                        extra={"session_id": session_id, "dropped": self._totals.refused_routes},
                    )
                return
            now = asyncio.get_running_loop().time()
            route = SessionRoute(session_id, self.limits.route, random.random)
            if (owner := self._owners.get(session_id, now)) is not None:
                route.know_owner(owner)
            self._routes[session_id] = route
            self._wakeups[session_id] = asyncio.Event()
            route.offer(payload, now)
            self._spawn(self._pump(route))
            return
        route.offer(payload, asyncio.get_running_loop().time())

    def session_started(self, session_id: str) -> None:
        """The first live session of ``session_id`` on this process started (or resumed)."""
        self.registry.claim(session_id)
        route = self._routes.get(session_id)
        if route is not None:
            route.wake()
            self._wakeups[session_id].set()

    def session_ended(self, session_id: str) -> None:
        """The last live session of ``session_id`` on this process ended."""
        self.registry.release(session_id)

    # Lifecycle

    async def aclose(self) -> None:
        """Stop every route (their events are dropped and counted) and close the links."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.limits.open_timeout + 1)
        for link in list(self._links.values()):
            await link.aclose()
        self._links.clear()

    def stats(self) -> RouterStats:
        """Counters so far, the live routes' included."""
        total = RouterStats(**{f: getattr(self._totals, f) for f in RouterStats.__slots__})
        for route in self._routes.values():
            _add(total, route.counters)
        return total

    @property
    def waiting_events(self) -> int:
        """Events held in routes (not yet delivered anywhere)."""
        return sum(route.pending for route in self._routes.values())

    # Routes

    async def _pump(self, route: SessionRoute) -> None:
        session_id = route.session_id
        loop = asyncio.get_running_loop()
        wakeup = self._wakeups[session_id]
        reported = RouteCounters()
        try:
            while True:
                while (head := route.head()) is not None and self._deliver_local(session_id, head):
                    route.delivered_here()
                action = route.next_action(loop.time())
                reported = self._report(route, reported)
                if isinstance(action, Done):
                    return
                if isinstance(action, Lookup):
                    self._totals.lookups += 1
                    owner = await self.registry.lookup(session_id)
                    if owner is not None and owner == self.registry.address:
                        owner = None  # recorded here, yet no session here took it: stale
                    if owner is not None:
                        self._owners.put(session_id, owner, loop.time())
                    route.looked_up(owner, loop.time())
                elif isinstance(action, Send):
                    try:
                        taken = await self._link(action.owner).forward(session_id, action.payload)
                    except LinkError as exc:
                        # Once per route at INFO; the retries (backoff) only at DEBUG.
                        first = route.counters.failed_attempts == 0
                        if first or logger.isEnabledFor(logging.DEBUG):
                            logger.log(
                                logging.INFO if first else logging.DEBUG,
                                "meeting event not forwarded",
                                extra={
                                    "session_id": session_id,
                                    "owner": action.owner,
                                    "reason": str(exc),
                                },
                            )
                        taken = False
                    if taken:
                        route.taken()
                    else:
                        self._owners.forget(session_id)
                        route.refused(loop.time())
                elif isinstance(action, Sleep):
                    wakeup.clear()
                    try:
                        async with asyncio.timeout_at(action.until):
                            await wakeup.wait()
                    except TimeoutError:
                        pass
        finally:
            if self._routes.get(session_id) is route:
                del self._routes[session_id]
                del self._wakeups[session_id]
            self._report(route, reported)
            _add(self._totals, route.counters)
            lost = route.counters.overflowed + route.counters.expired + route.pending
            if lost:
                logger.warning(
                    "meeting events dropped",
                    extra={
                        "session_id": session_id,
                        "overflowed": route.counters.overflowed,
                        "expired": route.counters.expired,
                        "unsent_at_close": route.pending,
                    },
                )

    def _report(self, route: SessionRoute, reported: RouteCounters) -> RouteCounters:
        """Add what the route did since ``reported`` to the metrics; return the new mark."""
        now = route.counters
        dropped = now.overflowed + now.expired - reported.overflowed - reported.expired
        if dropped:
            self._count(_DROP_METRIC, dropped)
        if now.forwarded > reported.forwarded:
            self._count(_FORWARD_METRIC, now.forwarded - reported.forwarded)
        return RouteCounters(**{f: getattr(now, f) for f in RouteCounters.__slots__})

    # Links

    def _link(self, address: str) -> OwnerLink:
        link = self._links.get(address)
        if link is None:
            if len(self._links) >= self.limits.max_links:
                oldest = min(self._links.values(), key=lambda item: item.last_used)
                del self._links[oldest.address]
                self._spawn(oldest.aclose())
            link = OwnerLink(
                address,
                self._secret,
                open_timeout=self.limits.open_timeout,
                answer_timeout=self.limits.answer_timeout,
                max_frame_bytes=64,
            )
            self._links[address] = link
        return link

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _add(total: RouterStats, counters: RouteCounters) -> None:
    total.delivered_here += counters.delivered_here
    total.forwarded += counters.forwarded
    total.overflowed += counters.overflowed
    total.expired += counters.expired
    total.failed_attempts += counters.failed_attempts
