"""Recall's real-time events websocket (``/recall/events/``): verified, bounded, delivered.

Recall opens one websocket per bot to the real-time endpoint ``voicebot bot create``
registered (docs/recall-realtime.md). :func:`accept_meeting_socket` answers the upgrade:
the relay must have the workspace verification secret (403 without, or with the stack's
placeholder), and the request must
carry Recall's signature over it (401 otherwise, :mod:`relay.recall_signature`), not seen
before (a replayed upgrade is refused). Then :class:`MeetingSocket` reads messages with
websockets' sans-I/O protocol and hands each to ``MeetingEndpoint.route_meeting_event``.

What one connection may do, and what it may not:

- each message is one event, at most ``MAX_EVENT_BYTES`` (larger, malformed or unknown
  ones are refused with a log line and a count; the connection continues). Frames beyond
  ``MAX_FRAME_BYTES`` end it (1009): nothing larger is ever buffered;
- it feeds one session: the first event's ``bot.metadata.session_id`` pins it, and events
  naming another session are refused (a bot has one session; anything else is forged or
  a bug);
- a token bucket bounds the rate (``MESSAGES_PER_SECOND`` after a ``BURST``); messages over
  it are dropped and counted, and a connection that keeps flooding (``MAX_DROPPED``) is cut
  with 1008. The session it fed keeps working;
- it is pinged every ``PING_SECONDS`` (Recall's advice, so no idle timeout closes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Final, Protocol

from websockets.exceptions import InvalidState
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from relay.errors import AuthError, ForbiddenError
from relay.handshake import peer_name, write_response
from relay.meeting_events import (
    MAX_EVENT_BYTES,
    MeetingEventError,
    parse_meeting_event,
)
from relay.metrics import Metrics
from relay.recall_signature import SeenIds, verification_keys, verify_upgrade

logger = logging.getLogger("relay.meeting_events")
_quiet = logging.getLogger("relay.meeting_events.protocol")
_quiet.setLevel(logging.WARNING)

#: Largest frame read at all; between MAX_EVENT_BYTES and this, a clear refusal and go on.
MAX_FRAME_BYTES: Final = 1024 * 1024
MESSAGES_PER_SECOND: Final = 50.0
BURST: Final = 200.0
MAX_DROPPED: Final = 1000
PING_SECONDS: Final = 30.0
CLOSE_SECONDS: Final = 5.0


class MeetingEventSink(Protocol):
    """What a meeting socket needs of the relay."""

    metrics: Metrics

    def route_meeting_event(self, session_id: str, payload: bytes) -> None:
        """Send one verified event on to the session ``session_id`` (on whichever task)."""

    def meeting_socket_ended(self, socket: MeetingSocket) -> None:
        """The socket closed."""


def accept_meeting_socket(
    sink: MeetingEventSink,
    request: Request,
    transport: asyncio.Transport,
    leftover: bytes,
    *,
    secret: str | None,
    seen: SeenIds,
) -> MeetingSocket | None:
    """Verify Recall's upgrade and take the socket over (or answer with a refusal).

    Raises:
        ForbiddenError: the relay has no verification secret.
        AuthError: no valid, fresh, first-seen signature.
    """
    keys = verification_keys(secret)
    if not keys:
        raise ForbiddenError("meeting events are not configured on this relay")
    headers = {k.lower(): v for k, v in request.headers.raw_items()}
    msg_id = verify_upgrade(headers, keys, time.time())
    if not seen.first_time(msg_id):
        raise AuthError("a replayed Recall upgrade")
    response = ServerProtocol(logger=_quiet).accept(request)
    if response.status_code != 101:
        write_response(transport, response)
        return None
    transport.write(response.serialize())
    # A protocol that starts OPEN reads frames at once (the request was parsed already).
    protocol = ServerProtocol(state=State.OPEN, max_size=MAX_FRAME_BYTES, logger=_quiet)
    socket = MeetingSocket(sink, protocol, transport)
    transport.set_protocol(socket)
    if leftover:
        socket.data_received(leftover)
    return socket


class MeetingSocket(asyncio.Protocol):
    """One Recall events connection after its 101 (see the module docstring)."""

    def __init__(
        self, sink: MeetingEventSink, protocol: ServerProtocol, transport: asyncio.Transport
    ) -> None:
        self._sink = sink
        self._protocol = protocol
        self._transport: asyncio.Transport | None = transport
        self._peer = peer_name(transport)
        self._loop = asyncio.get_running_loop()
        self._tokens = BURST
        self._refilled = self._loop.time()
        self._fragments: list[bytes] | None = None
        self._fragment_bytes = 0
        self._ping = self._loop.call_later(PING_SECONDS, self._send_ping)
        #: The session this connection feeds (pinned by its first event).
        self.session_id: str | None = None
        self.received = self.delivered = self.refused = self.dropped = 0

    def data_received(self, data: bytes) -> None:
        """Frames in: each complete message is one event."""
        self._protocol.receive_data(data)
        for frame in self._protocol.events_received():
            if isinstance(frame, Frame):
                self._frame(frame)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        """Recall (or we) closed it."""
        self._transport = None
        self._ping.cancel()
        logger.info(
            "meeting events connection closed",
            extra={
                "session_id": self.session_id,
                "received": self.received,
                "delivered": self.delivered,
                "refused": self.refused,
                "dropped": self.dropped,
            },
        )
        self._sink.meeting_socket_ended(self)

    def close(self, code: int = CloseCode.GOING_AWAY, reason: str = "relay closing") -> None:
        """Close the connection (drain, flood); a peer that does not answer the close
        frame within ``CLOSE_SECONDS`` is cut."""
        with contextlib.suppress(InvalidState):
            self._protocol.send_close(code, reason)
        self.flush()
        self._loop.call_later(CLOSE_SECONDS, self._abort)

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def flush(self) -> None:
        """Write what the protocol has to send; its end of data closes the socket."""
        transport = self._transport
        if transport is None:
            return
        for data in self._protocol.data_to_send():
            if data:
                transport.write(data)
            else:
                transport.close()

    # Internals

    def _frame(self, frame: Frame) -> None:
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            self._fragments, self._fragment_bytes = [], 0
        elif frame.opcode is not Opcode.CONT or self._fragments is None:
            return  # control frames: the protocol answers them
        assert self._fragments is not None
        self._fragment_bytes += len(frame.data)
        if self._fragment_bytes <= MAX_EVENT_BYTES:
            self._fragments.append(bytes(frame.data))
        if not frame.fin:
            return
        payload = b"".join(self._fragments)
        size = self._fragment_bytes
        self._fragments = None
        self._message(payload if size <= MAX_EVENT_BYTES else b"", size)

    def _message(self, payload: bytes, size: int) -> None:
        self.received += 1
        self._sink.metrics.count("MeetingEvents")
        if not self._spend():
            self.dropped += 1
            self._sink.metrics.count("MeetingEventsDropped")
            if self.dropped == 1 or self.dropped % 100 == 0:
                logger.warning(
                    "meeting events over the rate limit dropped",
                    extra={"session_id": self.session_id, "dropped": self.dropped},
                )
            if self.dropped >= MAX_DROPPED:
                self.close(CloseCode.POLICY_VIOLATION, "event flood")
            return
        if size > MAX_EVENT_BYTES:
            return self._refuse(f"event larger than {MAX_EVENT_BYTES} bytes")
        try:
            event = parse_meeting_event(payload)
        except MeetingEventError as error:
            return self._refuse(str(error))
        if self.session_id is None:
            self.session_id = event.session_id
        elif event.session_id != self.session_id:
            return self._refuse("event for another session than this connection feeds")
        self._sink.route_meeting_event(event.session_id, payload)
        self.delivered += 1

    def _refuse(self, reason: str) -> None:
        self.refused += 1
        self._sink.metrics.count("MeetingEventsRefused")
        logger.warning(
            "meeting event refused",
            extra={"session_id": self.session_id, "reason": reason, "peer": self._peer},
        )

    def _spend(self) -> bool:
        now = self._loop.time()
        self._tokens = min(BURST, self._tokens + (now - self._refilled) * MESSAGES_PER_SECOND)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _send_ping(self) -> None:
        if self._transport is None:
            return
        try:
            self._protocol.send_ping(b"relay")
        except InvalidState:
            return
        self.flush()
        self._ping = self._loop.call_later(PING_SECONDS, self._send_ping)
