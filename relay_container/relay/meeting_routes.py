"""SessionRoute: the sans-I/O decisions that carry one session's meeting events to its owner.

A relay task that received a meeting event for a session it does not hold keeps the
event in that session's route and asks the route what to do next (:meth:`next_action`):
look the owner up, send the oldest event to the owner, sleep until a retry, or nothing
(the backlog is empty). The asyncio shell (``relay.meeting_router``) performs the action
and reports the outcome (:meth:`looked_up`, :meth:`taken`, :meth:`refused`). One event is
in flight at a time, so events reach the session in the order they arrived.

Bounds, all in :class:`RouteLimits`:

- the backlog keeps the newest ``max_events`` events (and at most ``max_bytes``); older
  ones are dropped and counted (:attr:`RouteCounters.overflowed`);
- an event waits at most ``max_wait_seconds`` for an owner that takes it (no owner yet:
  the page's session has not started; or the recorded owner is unreachable or says the
  session is not there); then it is dropped and counted (:attr:`RouteCounters.expired`);
- between two failed attempts the route waits with exponential backoff and jitter,
  from ``backoff_base`` up to ``backoff_cap`` seconds.

Every failure (owner unknown, unreachable, closed the link, or answered "not here")
forgets the owner, so the next attempt reads the registry again: that is how a route
follows a session that moved to another task. The clock and the randomness are
arguments; nothing here touches a socket.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class RouteState(StrEnum):
    """Where a route stands."""

    #: Nothing to do (empty backlog).
    IDLE = "idle"
    #: Events wait and no owner is known: look it up now.
    RESOLVE = "resolve"
    #: A lookup is in flight.
    RESOLVING = "resolving"
    #: An owner is known: send the next event.
    READY = "ready"
    #: The oldest event is in flight to the owner.
    SENDING = "sending"
    #: The last attempt failed: look the owner up again at ``retry_at``.
    BACKOFF = "backoff"


@dataclass(frozen=True, slots=True)
class RouteLimits:
    """The bounds of one route."""

    max_events: int = 256
    max_bytes: int = 2**20
    max_wait_seconds: float = 60.0
    backoff_base: float = 0.05
    backoff_cap: float = 2.0


@dataclass(slots=True)
class RouteCounters:
    """What happened to a route's events."""

    forwarded: int = 0
    delivered_here: int = 0
    overflowed: int = 0
    expired: int = 0
    failed_attempts: int = 0


@dataclass(frozen=True, slots=True)
class Lookup:
    """Read the session's owner from the registry, then call :meth:`SessionRoute.looked_up`."""


@dataclass(frozen=True, slots=True)
class Send:
    """Forward ``payload`` to ``owner``, then call ``taken`` or ``refused``."""

    owner: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Sleep:
    """Nothing to do before ``until`` (or before something wakes the route)."""

    until: float


@dataclass(frozen=True, slots=True)
class Done:
    """The backlog is empty: the route can be forgotten."""


Action = Lookup | Send | Sleep | Done


class SessionRoute:
    """The backlog of one session's meeting events and where they go next."""

    def __init__(self, session_id: str, limits: RouteLimits, random: Callable[[], float]) -> None:
        """``random`` returns a float in [0, 1) (backoff jitter)."""
        self.session_id = session_id
        self.limits = limits
        self._random = random
        self.state = RouteState.IDLE
        self.owner: str | None = None
        self.counters = RouteCounters()
        self.retry_at = 0.0
        self._attempts = 0
        #: (arrival time, payload), oldest first; the event in flight is not in it.
        self._backlog: deque[tuple[float, bytes]] = deque()
        self._bytes = 0
        self._in_flight: tuple[float, bytes] | None = None

    # Input

    def know_owner(self, owner: str) -> None:
        """Start from an owner remembered from an earlier route (no lookup needed)."""
        if self.state in (RouteState.IDLE, RouteState.RESOLVE) and self.owner is None:
            self.owner = owner
            if self.state is RouteState.RESOLVE:
                self.state = RouteState.READY

    def offer(self, payload: bytes, now: float) -> None:
        """Queue one event, dropping the oldest ones beyond the bounds."""
        self._backlog.append((now, payload))
        self._bytes += len(payload)
        self._trim()
        if self.state is RouteState.IDLE:
            self.state = RouteState.RESOLVE if self.owner is None else RouteState.READY

    def wake(self) -> None:
        """Something changed (the session started here): retry at once."""
        if self.state is RouteState.BACKOFF:
            self.retry_at = 0.0

    # Decisions

    @property
    def pending(self) -> int:
        """Events held, the one in flight included."""
        return len(self._backlog) + (self._in_flight is not None)

    def head(self) -> bytes | None:
        """The oldest queued event (not in flight), if any."""
        return self._backlog[0][1] if self._backlog and self._in_flight is None else None

    def delivered_here(self) -> None:
        """The oldest queued event was taken by a session on this process."""
        _, payload = self._backlog.popleft()
        self._bytes -= len(payload)
        self.counters.delivered_here += 1
        self._attempts = 0
        if not self._backlog:
            self.state = RouteState.IDLE

    def next_action(self, now: float) -> Action:
        """What the shell should do now."""
        assert self._in_flight is None, "an event is in flight"
        assert self.state is not RouteState.RESOLVING, "a lookup is in flight"
        self._expire(now)
        if not self._backlog:
            self.state = RouteState.IDLE
            return Done()
        if self.state is RouteState.BACKOFF:
            if now < self.retry_at:
                return Sleep(self.retry_at)
            self.state = RouteState.RESOLVE
        if self.owner is None:
            self.state = RouteState.RESOLVING
            return Lookup()
        self._in_flight = self._backlog.popleft()
        self._bytes -= len(self._in_flight[1])
        self.state = RouteState.SENDING
        return Send(self.owner, self._in_flight[1])

    # Outcomes

    def looked_up(self, owner: str | None, now: float) -> None:
        """The registry named ``owner`` (None: no owner recorded, or the lookup failed)."""
        assert self.state is RouteState.RESOLVING
        if owner is None:
            self._back_off(now)
        else:
            self.owner = owner
            self.state = RouteState.READY

    def taken(self) -> None:
        """The owner's session took the event in flight."""
        assert self._in_flight is not None
        self._in_flight = None
        self.counters.forwarded += 1
        self._attempts = 0
        self.state = RouteState.READY if self._backlog else RouteState.IDLE

    def refused(self, now: float) -> None:
        """The event in flight did not reach a session: the owner is unreachable, closed
        the link, or has no live session of this subject any more. It goes back to the
        front of the backlog and the owner is looked up again after a backoff."""
        assert self._in_flight is not None
        self._backlog.appendleft(self._in_flight)
        self._bytes += len(self._in_flight[1])
        self._in_flight = None
        self._trim()
        self._back_off(now)

    # Private

    def _back_off(self, now: float) -> None:
        self.owner = None
        self.counters.failed_attempts += 1
        delay = min(self.limits.backoff_cap, self.limits.backoff_base * 2**self._attempts)
        self._attempts = min(self._attempts + 1, 32)
        self.retry_at = now + delay * (0.5 + 0.5 * self._random())
        self.state = RouteState.BACKOFF

    def _trim(self) -> None:
        limits = self.limits
        while self._backlog and (
            len(self._backlog) + (self._in_flight is not None) > limits.max_events
            or self._bytes > limits.max_bytes
        ):
            _, payload = self._backlog.popleft()
            self._bytes -= len(payload)
            self.counters.overflowed += 1

    def _expire(self, now: float) -> None:
        oldest_kept = now - self.limits.max_wait_seconds
        while self._backlog and self._backlog[0][0] < oldest_kept:
            _, payload = self._backlog.popleft()
            self._bytes -= len(payload)
            self.counters.expired += 1


class OwnerCache:
    """Owners found for recent sessions, so a session's next event needs no lookup.

    A route ends when its backlog empties (most events find it empty: forwarding takes
    well under a millisecond, events come tens of milliseconds apart), so the owner it
    found is kept here for ``ttl`` seconds, at most ``size`` sessions (least recently used
    out first). An entry is dropped as soon as that owner fails a forward.
    """

    def __init__(self, size: int = 4096, ttl: float = 300.0) -> None:
        """Keep at most ``size`` owners, each for ``ttl`` seconds."""
        self.size, self.ttl = size, ttl
        self._owners: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def get(self, session_id: str, now: float) -> str | None:
        """The owner remembered for ``session_id``, if fresh."""
        entry = self._owners.get(session_id)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._owners[session_id]
            return None
        self._owners.move_to_end(session_id)
        return entry[0]

    def put(self, session_id: str, owner: str, now: float) -> None:
        """Remember ``owner`` for ``session_id``."""
        self._owners[session_id] = (owner, now + self.ttl)
        self._owners.move_to_end(session_id)
        while len(self._owners) > self.size:
            self._owners.popitem(last=False)

    def forget(self, session_id: str) -> None:
        """The owner failed: look it up next time."""
        self._owners.pop(session_id, None)
