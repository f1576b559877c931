"""Rollover legs: the fresh upstream being prepared, and the old one being retired.

A rollover (``RelaySession``) replaces a long-lived upstream session with a fresh one
before OpenAI's maximum session length. This module owns the two upstream connections
that are not the session's current one while that happens:

- ``StandbyUpstream``: the fresh session. It is sent the set-up events (agent
  ``session.update``, the client's own updates, the conversation as seeds) and swallows
  everything it answers until every acknowledgement has arrived (``session.created``, one
  ``session.updated`` per update, ``conversation.item.added`` and ``.done`` per seed, or
  an ``error`` in place of one), so the client never sees a second ``session.created``.
  Then it is *ready* and the session may switch to it.
- ``RetiringUpstream``: the replaced session after the switch, closed with 1000; what it
  still sends is dropped, its pings answered, its close handshake completed (bounded).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from relay import wire
from relay.events import server_event_type
from relay.upstream import UpstreamConnection

logger = logging.getLogger(__name__)

#: Events that acknowledge one set-up event each (see the module docstring).
ACK_TYPES: Final = frozenset(
    {
        "session.created",
        "session.updated",
        "conversation.item.added",
        "conversation.item.done",
    }
)


class StandbyUpstream:
    """A fresh upstream connection that swallows its answers until it is ready."""

    def __init__(
        self,
        connection: UpstreamConnection,
        *,
        expected_acks: int,
        max_size: int,
        on_ready: Callable[[], None],
        on_lost: Callable[[str], None],
    ) -> None:
        assert connection.transport is not None
        self.connection = connection
        self.transport: asyncio.Transport = connection.transport
        #: Taken over by the session at the switch (it may hold a partial frame).
        self.reader = wire.FrameReader(masked=False, max_size=max_size)
        self.expected_acks = expected_acks
        self.ready = False
        self.refusals = 0
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._lost = False

    def start(self, events: list[bytes]) -> None:
        """Route the connection's bytes here and send the set-up events."""
        leftover = self.connection.attach(self)
        self.transport.write(b"".join(wire.encode(wire.TEXT, e, mask=True) for e in events))
        if leftover:
            self.upstream_data_received(leftover)

    def abort(self) -> None:
        """Drop the connection (the rollover was abandoned)."""
        self._lost = True
        self.transport.abort()

    # UpstreamListener

    def upstream_data_received(self, data: bytes) -> None:
        """Count acknowledgements; answer pings; a close or broken framing loses it."""
        if self._lost:
            return
        try:
            frames, _ = self.reader.feed(data)
        except wire.FrameError as exc:
            self._lose(f"the model broke WebSocket framing: {exc}")
            return
        for opcode, fin, payload in frames:
            if opcode == wire.TEXT and fin:
                kind = server_event_type(payload)
                if kind in ACK_TYPES:
                    self.expected_acks -= 1
                elif kind == "error":
                    # A refused seed costs its two acknowledgements, anything else one.
                    self.refusals += 1
                    self.expected_acks -= 2 if b'"relay_seed_' in payload else 1
                    logger.warning(
                        "the fresh upstream refused a set-up event",
                        extra={"event": payload[:300].decode("utf-8", "replace")},
                    )
            elif opcode == wire.PING:
                self.transport.write(wire.encode(wire.PONG, payload, mask=True))
            elif opcode == wire.CLOSE:
                self._lose("the model closed the fresh session")
                return
        if not self.ready and self.expected_acks <= 0:
            self.ready = True
            self._on_ready()

    def upstream_connection_lost(self, exc: Exception | None) -> None:
        """The fresh connection died before the switch."""
        if not self._lost:
            self._lose("lost the connection to the fresh session")

    def upstream_pause_writing(self) -> None:
        """Nothing but the set-up events is written here."""

    def upstream_resume_writing(self) -> None:
        """Nothing but the set-up events is written here."""

    def _lose(self, reason: str) -> None:
        self._lost = True
        self.transport.abort()
        self._on_lost(reason)


class RetiringUpstream:
    """The upstream a rollover replaced: closed with 1000, its remaining events dropped."""

    def __init__(
        self, connection: UpstreamConnection, reader: wire.FrameReader, close_timeout: float
    ) -> None:
        assert connection.transport is not None
        self.transport: asyncio.Transport = connection.transport
        self._reader = reader
        self._close_timeout = close_timeout
        self._timer: asyncio.TimerHandle | None = None
        connection.attach(self)

    def close(self, reason: str) -> None:
        """Send close 1000; abort if the model does not answer within the close timeout."""
        self.transport.write(wire.encode(wire.CLOSE, wire.close_payload(1000, reason), mask=True))
        self._timer = asyncio.get_running_loop().call_later(
            self._close_timeout, self.transport.abort
        )

    def upstream_data_received(self, data: bytes) -> None:
        """Drop events; answer pings; the model's close ends the TCP connection."""
        try:
            frames, _ = self._reader.feed(data)
        except wire.FrameError:
            self.transport.abort()
            return
        for opcode, _fin, payload in frames:
            if opcode == wire.PING:
                self.transport.write(wire.encode(wire.PONG, payload, mask=True))
            elif opcode == wire.CLOSE:
                self.transport.close()
                return

    def upstream_connection_lost(self, exc: Exception | None) -> None:
        """Gone: nothing left to time out."""
        if self._timer is not None:
            self._timer.cancel()

    def upstream_pause_writing(self) -> None:
        """Only a close frame is written here."""

    def upstream_resume_writing(self) -> None:
        """Only a close frame is written here."""
