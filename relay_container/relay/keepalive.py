"""Keepalive: one leg's pings (RFC 6455 §5.5.2); no pong within the timeout means a dead peer.

The session core asks it at every ping interval what is due and carries that out: send a
ping, give up on the peer, or wait. While the relay does not read the leg (back-pressure)
the peer's pong may sit unread in our socket, so the leg is judged only after reading
resumes. Sans I/O: no clock, no socket.
"""

from __future__ import annotations

from typing import Final

#: What :meth:`Keepalive.due` asks of the core (plain ints: it runs compiled).
WAIT: Final = 0
PING: Final = 1
DEAD: Final = 2


class Keepalive:
    """Whether a ping is outstanding on one leg, and since when."""

    __slots__ = ("payload", "sent")

    def __init__(self, payload: bytes) -> None:
        """Ping with ``payload`` (a client's pong must carry it back)."""
        self.payload = payload
        #: When the outstanding ping went out; None when none is.
        self.sent: float | None = None

    def due(self, now: float, timeout: float, *, reads_paused: bool, may_ping: bool) -> int:
        """The ping interval came round: ``PING`` (send one now), ``DEAD`` (no pong within
        ``timeout`` seconds) or ``WAIT``; ``may_ping`` is False on a closing leg."""
        if reads_paused:
            self.sent = None
            return WAIT
        if self.sent is not None:
            return DEAD if now - self.sent >= timeout else WAIT
        if not may_ping:
            return WAIT
        self.sent = now
        return PING

    def pong(self, payload: bytes) -> None:
        """A pong came: it answers our ping only if it carries our payload."""
        if payload == self.payload:
            self.sent = None

    def reset(self) -> None:
        """Forget the outstanding ping (a new connection, or a peer we trust to answer)."""
        self.sent = None
