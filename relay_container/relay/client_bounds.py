"""ClientBounds: how much a client may make the relay hold or answer before it is cut.

Two bounds of the client leg, both answered with a cut rather than a wait, so a hostile
or broken client costs the relay a bounded amount of memory and work:

- bytes of the relay's own (error events, pongs, deferred events) queued for a client
  whose socket buffer is full: at most :data:`MAX_BLOCKED_CLIENT_BYTES`;
- invalid client events answered: a burst of :data:`INVALID_EVENT_BURST`, then
  :data:`INVALID_EVENTS_PER_SECOND` (a token bucket); beyond, the session is closed 1008.

Sans I/O: the core passes the time in.
"""

from __future__ import annotations

from typing import Final

MAX_BLOCKED_CLIENT_BYTES: Final = 64 * 1024
INVALID_EVENT_BURST: Final = 20.0
INVALID_EVENTS_PER_SECOND: Final = 2.0


class ClientBounds:
    """The client leg's two budgets (see the module docstring)."""

    __slots__ = ("_blocked_bytes", "_invalid_at", "_invalid_budget", "blocked")

    def __init__(self) -> None:
        """A fresh client connection: writable, with a full burst of invalid events."""
        #: The client's socket buffer is full.
        self.blocked = False
        self._blocked_bytes = 0
        self._invalid_budget = INVALID_EVENT_BURST
        self._invalid_at = 0.0

    def writable(self, writable: bool) -> None:
        """The client's socket buffer filled (False) or drained (True)."""
        self.blocked = not writable
        if writable:
            self._blocked_bytes = 0

    def room_for(self, size: int) -> bool:
        """Whether ``size`` more bytes of the relay's own may be queued for the client."""
        if not self.blocked:
            return True
        self._blocked_bytes += size
        return self._blocked_bytes <= MAX_BLOCKED_CLIENT_BYTES

    def answer_invalid(self, now: float) -> bool:
        """An invalid event at ``now``: True to answer it, False when the client is to be cut."""
        budget = self._invalid_budget + (now - self._invalid_at) * INVALID_EVENTS_PER_SECOND
        self._invalid_at = now
        self._invalid_budget = min(INVALID_EVENT_BURST, budget) - 1.0
        return self._invalid_budget >= 0

    def reconnected(self) -> None:
        """A re-attached socket starts writable; the invalid-event budget carries over."""
        self.blocked = False
        self._blocked_bytes = 0
