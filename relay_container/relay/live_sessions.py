"""LiveSessions: the relay's sessions in this process, the one a client re-attaches to, and
how they end in a drain.

A drain, in order: nobody can re-attach any more (detached sessions end at once, and a
client that vanishes from now on ends its own); live sessions are handed over at their
next turn boundary (records flushed, then 1001 "relay draining: reconnect"; the page
reconnects through the load balancer and resumes on another task) or end by themselves;
at the deadline the rest are closed with 1001.
"""

from __future__ import annotations

import asyncio
import logging

from relay.session import DRAIN_REASON, RelaySession

logger = logging.getLogger("relay.server")


class LiveSessions:
    """The set of live sessions and an event that is set while it is empty."""

    def __init__(self) -> None:
        """No session yet."""
        #: The sessions themselves (tests and the drain read it; only this class changes it).
        self.sessions: set[RelaySession] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, session: RelaySession) -> None:
        """A session started (its 101 is written)."""
        self.sessions.add(session)
        self._idle.clear()

    def finished(self, session: RelaySession) -> None:
        """A session ended (its ``on_finished`` callback)."""
        self.sessions.discard(session)
        if not self.sessions:
            self._idle.set()

    def detached_session(self, sub: str) -> RelaySession | None:
        """The most recently detached session of ``sub`` still held here, if any."""
        found: RelaySession | None = None
        for session in self.sessions:
            if (
                session.detached
                and not session.finished
                and session.claims.sub == sub
                and (found is None or session.core.detached_at > found.core.detached_at)
            ):
                found = session
        return found

    def shutdown(self) -> None:
        """Close every session with 1001 and the drain reason, now."""
        for session in list(self.sessions):
            session.shutdown(1001, DRAIN_REASON)

    async def drain(self, deadline: float, handover: float, close_timeout: float) -> int:
        """Hand over or end every session within ``deadline`` seconds; how many were cut.

        ``handover`` is the longest a session waits for a turn boundary before it is handed
        over anyway; ``close_timeout`` bounds the closing handshakes of the ones cut.
        """
        for session in list(self.sessions):
            session.stop_holding()
        for session in list(self.sessions):
            if not session.finished:
                session.leave(handover)
        try:
            async with asyncio.timeout(deadline):
                await self._idle.wait()
        except TimeoutError:
            pass
        remaining = len(self.sessions)
        self.shutdown()
        if remaining:
            try:
                async with asyncio.timeout(close_timeout + 1):
                    await self._idle.wait()
            except TimeoutError:
                logger.warning(
                    "sessions still open after drain", extra={"live_sessions": len(self.sessions)}
                )
        return remaining
