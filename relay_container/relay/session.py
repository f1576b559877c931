"""RelaySession: one client's Realtime session, from the 101 to both sockets closed.

The session is the client socket's asyncio protocol and the upstream socket's listener.
Frames move inside ``data_received`` callbacks, with no task or coroutine per message:
client frames are unmasked, checked (UTF-8, a JSON event with a ``type``, found without
decoding audio), passed through the session policy when they are one of the two event
types it rewrites, re-masked and written to the upstream socket; upstream frames are
written to the client unchanged (a whole chunk of complete data frames is forwarded as
the same bytes). Until the upstream is open, client frames wait in a queue bounded by
bytes; overflowing it is an error event and a close, never a silent drop.

It owns: the upstream dial task, keepalive pings on both legs (RFC 6455 §5.5.2),
the session length limit, both closing handshakes, back-pressure between the legs (a full
socket buffer on one leg pauses reads on the other), and the mapping of faults to close
codes: 1008 policy, 1009 too big, 1011 upstream failure, 1001 drain.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from websockets.frames import CloseCode

from relay import wire
from relay.admission import Ticket
from relay.errors import (
    InvalidEventError,
    MessageTooBigError,
    QueueOverflowError,
    RelayError,
    SessionTooLongError,
    UpstreamError,
)
from relay.events import (
    FILTERED_TYPES,
    INPUT_AUDIO_APPEND,
    TYPE_KEY,
    error_event,
    peek_type,
)
from relay.metrics import Metrics
from relay.policy import SessionPolicy
from relay.tokens import Claims
from relay.upstream import UpstreamConnection, open_upstream

logger = logging.getLogger(__name__)

perf_counter = time.perf_counter

DRAIN_REASON: Final = "relay draining: reconnect"
#: Socket write-buffer marks: beyond HIGH the other leg stops being read.
WRITE_HIGH: Final = 256 * 1024
WRITE_LOW: Final = 64 * 1024

_TEXT = wire.TEXT
_BINARY = wire.BINARY
_CONT = wire.CONT
_PING = wire.PING
_PONG = wire.PONG
_encode = wire.encode
#: How the openai SDKs and JSON.stringify begin an append (``type`` first, then its end quote).
_APPEND_HEADS: Final = (
    b'{"type":"input_audio_buffer.append"',
    b'{"type": "input_audio_buffer.append"',
)


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What every session of a process shares."""

    upstream_url: str
    api_key: str
    metrics: Metrics
    policy: SessionPolicy
    #: The serialized agent session.update sent first on every upstream.
    agent_update: bytes
    max_frame_bytes: int
    max_upstream_frame_bytes: int
    pre_upstream_queue_bytes: int
    ping_interval: float
    ping_timeout: float
    open_timeout: float
    close_timeout: float
    max_session_seconds: float


# Upstream leg states.
_DIALING, _OPEN, _CLOSED = range(3)


class RelaySession(asyncio.Protocol):
    """One relayed session: the client's protocol and the upstream's listener."""

    def __init__(
        self,
        context: SessionContext,
        *,
        claims: Claims,
        ticket: Ticket,
        model: str,
        on_finished: Callable[[RelaySession], None],
    ) -> None:
        self.context = context
        self.claims = claims
        self.model = model
        self.id = uuid.uuid4().hex[:16]
        self._ticket = ticket
        self._on_finished = on_finished
        self._loop = asyncio.get_running_loop()
        self._metrics = context.metrics
        self._policy = context.policy
        self._started = self._loop.time()
        self.finished = False
        # Client leg.
        self._client: asyncio.Transport | None = None
        self._client_reader = wire.FrameReader(masked=True, max_size=context.max_frame_bytes)
        self._fragments: list[bytes] | None = None
        self._fragment_opcode = _TEXT
        self._fragment_size = 0
        #: Set once the client broke framing: nothing more is read from it.
        self._discard_client = False
        self._client_close_sent = False
        self._client_closed = False
        self._client_ping_sent: float | None = None
        self._client_reads_paused = False
        self._deferred: list[bytes] = []
        self._downstream_in_fragment = False
        # Upstream leg.
        self._upstream_state = _DIALING
        self._upstream: asyncio.Transport | None = None
        self._dial_task: asyncio.Task[None] | None = None
        self._upstream_reader = wire.FrameReader(
            masked=False, max_size=context.max_upstream_frame_bytes
        )
        self._upstream_close_sent = False
        self._upstream_ping_sent: float | None = None
        self._upstream_reads_paused = False
        self._queue: list[tuple[bytes, float]] = []
        self._queue_bytes = 0
        # Outcome.
        self.close_code: int | None = None
        self.close_reason = ""
        self.upstream_close_code: int | None = None
        self.frames_up = self.frames_down = self.bytes_up = self.bytes_down = 0
        # Timers.
        self._timers: list[asyncio.TimerHandle] = []

    # Lifecycle

    def start(self, transport: asyncio.Transport, leftover: bytes) -> None:
        """Take over the client socket after the 101 and start dialling the model."""
        self._client = transport
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        self._dial_task = self._loop.create_task(self._dial())
        self._dial_task.add_done_callback(self._dial_done)
        self._timers.append(self._loop.call_later(self.context.max_session_seconds, self._expire))
        self._timers.append(self._loop.call_later(self.context.ping_interval, self._keepalive))
        logger.info(
            "session opened",
            extra={
                "session_id": self.id,
                "sub": self.claims.sub,
                "jti": self.claims.jti,
                "model": self.model,
            },
        )
        if leftover:
            self.data_received(leftover)

    def shutdown(self, code: int = CloseCode.GOING_AWAY, reason: str = DRAIN_REASON) -> None:
        """Close both legs (drain deadline): the client gets ``code`` and ``reason``."""
        self._close_client(code, reason)
        self._close_upstream(CloseCode.NORMAL_CLOSURE, "client session ended")

    @property
    def duration(self) -> float:
        """Seconds since the 101."""
        return self._loop.time() - self._started

    def _maybe_finish(self) -> None:
        if self.finished or not self._client_closed or self._upstream_state != _CLOSED:
            return
        self.finished = True
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._queue.clear()
        self._ticket.release()
        logger.info(
            "session closed",
            extra={
                "session_id": self.id,
                "sub": self.claims.sub,
                "jti": self.claims.jti,
                "model": self.model,
                "close_code": self.close_code,
                "close_reason": self.close_reason,
                "upstream_close_code": self.upstream_close_code,
                "duration_ms": round(self.duration * 1000),
                "frames_up": self.frames_up,
                "frames_down": self.frames_down,
                "bytes_up": self.bytes_up,
                "bytes_down": self.bytes_down,
            },
        )
        self._on_finished(self)

    # Client leg: asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Unused: the server hands the transport over with ``start()``."""

    def data_received(self, data: bytes) -> None:
        """Client bytes: check each message and forward it to the model."""
        if self._discard_client:
            return
        started = perf_counter()
        try:
            frames, _ = self._client_reader.feed(data)
        except wire.FrameError as exc:
            self._fail_framing(exc.close_code, str(exc))
            return
        out: list[bytes] = []
        for opcode, fin, payload in frames:
            if opcode in (_TEXT, _BINARY):
                if self._fragments is not None:
                    self._fail_framing(CloseCode.PROTOCOL_ERROR, "expected a continuation frame")
                    return
                if fin:
                    self._client_message(opcode, payload, out)
                else:
                    self._fragments = [payload]
                    self._fragment_opcode = opcode
                    self._fragment_size = len(payload)
            elif opcode == _CONT:
                if self._fragments is None:
                    self._fail_framing(CloseCode.PROTOCOL_ERROR, "unexpected continuation frame")
                    return
                self._fragment_size += len(payload)
                if self._fragment_size > self.context.max_frame_bytes:
                    self._fail_framing(
                        CloseCode.MESSAGE_TOO_BIG,
                        f"message over the relay's limit of {self.context.max_frame_bytes} bytes",
                    )
                    return
                self._fragments.append(payload)
                if fin:
                    message = b"".join(self._fragments)
                    self._fragments = None
                    self._client_message(self._fragment_opcode, message, out)
            elif opcode == _PING:
                if not self._client_close_sent and self._client is not None:
                    self._client.write(_encode(_PONG, payload, mask=False))
            elif opcode == _PONG:
                self._client_ping_sent = None
            else:
                if out:
                    self._send_upstream(out, started)
                    out = []
                self._client_close_received(payload)
                return
        if out:
            self._send_upstream(out, started)

    def connection_lost(self, exc: Exception | None) -> None:
        """The client socket is gone: end the upstream too."""
        self._client_closed = True
        if self.close_code is None:
            self.close_code = CloseCode.ABNORMAL_CLOSURE
            self.close_reason = "client disconnected"
        self._close_upstream(CloseCode.GOING_AWAY, "client went away")
        self._maybe_finish()

    def pause_writing(self) -> None:
        """The client reads slower than the model talks: stop reading the model."""
        self._upstream_reads_paused = True
        if self._upstream is not None:
            self._upstream.pause_reading()

    def resume_writing(self) -> None:
        """The client caught up."""
        self._upstream_reads_paused = False
        if self._upstream is not None and self._upstream_state == _OPEN:
            self._upstream.resume_reading()

    def eof_received(self) -> bool | None:
        """The client half-closed: close our side too."""
        return None

    # Client messages

    def _client_message(self, opcode: int, payload: bytes, out: list[bytes]) -> None:
        if self._client_close_sent:
            return
        if opcode == _BINARY:
            self._reject(
                InvalidEventError(
                    "binary frames are not part of the Realtime protocol: send JSON text events",
                    code="binary_not_supported",
                )
            )
            return
        if not payload.isascii():
            try:
                payload.decode()
            except UnicodeDecodeError:
                self._reject(
                    InvalidEventError("the text frame is not valid UTF-8", code="invalid_utf8")
                )
                return
        if (
            payload.startswith(_APPEND_HEADS)
            and payload.endswith(b"}")
            and payload.find(TYPE_KEY, 8) < 0
            and payload.find(b"\\") < 0
        ):
            # Audio, nearly every frame: its type is known from its first bytes and the
            # policy never rewrites it (one literal "type" and no escapes, so no second
            # type key can hide in it; see events.peek_type).
            kind: str | None = INPUT_AUDIO_APPEND
        else:
            kind = peek_type(payload)
        if kind is None:
            self._reject(
                InvalidEventError(
                    "expected a JSON object with one string `type` field and no duplicate keys",
                    code="invalid_json",
                )
            )
            return
        if kind in FILTERED_TYPES:
            try:
                payload, removed, event_id = self._policy.apply(kind, payload)
            except ValueError:
                self._reject(InvalidEventError("the event is not valid JSON", code="invalid_json"))
                return
            if removed:
                self._send_client_event(
                    error_event(
                        "the relay ignored session fields the server controls: "
                        + ", ".join(removed),
                        code="relay_locked_fields",
                        param=removed[0],
                        event_id=event_id,
                    )
                )
        self.frames_up += 1
        self.bytes_up += len(payload)
        out.append(_encode(_TEXT, payload, mask=True))

    def _send_upstream(self, frames: list[bytes], started: float) -> None:
        if self._upstream_state == _OPEN:
            assert self._upstream is not None
            self._upstream.write(frames[0] if len(frames) == 1 else b"".join(frames))
            self._metrics.delay.observe(perf_counter() - started, len(frames))
        elif self._upstream_state == _DIALING:
            for frame in frames:
                self._queue.append((frame, started))
                self._queue_bytes += len(frame)
            if self._queue_bytes > self.context.pre_upstream_queue_bytes:
                self._metrics.count("QueueOverflows")
                self._fail(
                    QueueOverflowError(
                        f"more than {self.context.pre_upstream_queue_bytes} bytes arrived before "
                        "the model was ready; wait for session.created before streaming audio"
                    )
                )

    def _reject(self, error: InvalidEventError) -> None:
        self._send_client_event(
            error_event(str(error), error_type=error.error_type, code=error.code)
        )

    def _send_client_event(self, event: bytes) -> None:
        if self._client is None or self._client_close_sent:
            return
        frame = _encode(_TEXT, event, mask=False)
        if self._downstream_in_fragment:
            self._deferred.append(frame)  # never inside the model's fragmented message
        else:
            self._client.write(frame)

    # Upstream leg

    async def _dial(self) -> None:
        started = self._loop.time()
        try:
            async with asyncio.timeout(self.context.open_timeout):
                connection = await open_upstream(
                    url=self.context.upstream_url, model=self.model, api_key=self.context.api_key
                )
        except TimeoutError:
            self._upstream_failed(UpstreamError("the model did not answer in time"))
            return
        except OSError as exc:
            self._upstream_failed(UpstreamError(f"cannot reach the model: {exc.strerror or exc}"))
            return
        except UpstreamError as exc:
            self._upstream_failed(exc)
            return
        if self._upstream_state != _DIALING or connection.transport is None:
            if connection.transport is not None:
                connection.transport.abort()
            return
        logger.info(
            "upstream connected",
            extra={
                "session_id": self.id,
                "sub": self.claims.sub,
                "connect_ms": round((self._loop.time() - started) * 1000),
            },
        )
        self._upstream_opened(connection)

    def _dial_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.error(
                "upstream dial failed unexpectedly", exc_info=exc, extra={"session_id": self.id}
            )
            self._upstream_failed(UpstreamError("internal error while reaching the model"))

    def _upstream_opened(self, connection: UpstreamConnection) -> None:
        assert connection.transport is not None
        transport = connection.transport
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        self._upstream = transport
        self._upstream_state = _OPEN
        self._dial_task = None
        self._timers.append(self._loop.call_later(self.context.ping_interval, self._keepalive_up))
        leftover = connection.attach(self)
        # 1. Our agent configuration first, so the client's own updates apply on top.
        transport.write(_encode(_TEXT, self.context.agent_update, mask=True))
        # 2. Then what the client sent meanwhile, in order.
        if self._queue:
            now = perf_counter()
            transport.write(b"".join(frame for frame, _ in self._queue))
            for _, queued_at in self._queue:
                self._metrics.delay.observe(now - queued_at)
            self._queue.clear()
            self._queue_bytes = 0
        if leftover:
            self.upstream_data_received(leftover)

    def upstream_data_received(self, data: bytes) -> None:
        """Model bytes: forwarded to the client unchanged."""
        started = perf_counter()
        try:
            frames, clean = self._upstream_reader.feed(data)
        except wire.FrameError as exc:
            self._upstream_failed(UpstreamError(f"the model broke WebSocket framing: {exc}"))
            return
        client = self._client
        if client is None or self._client_close_sent or not frames:
            return
        if clean and not self._deferred:
            # The chunk is exactly complete data frames: the same bytes are valid for the
            # client (both directions from a server are unmasked).
            client.write(data)
            self._downstream_in_fragment = not frames[-1][1]
            self.frames_down += len(frames)
            self.bytes_down += len(data)
            self._metrics.delay.observe(perf_counter() - started, len(frames))
            return
        out: list[bytes] = []
        for opcode, fin, payload in frames:
            if opcode <= _BINARY:
                out.append(_encode(opcode, payload, mask=False, fin=fin))
                self.frames_down += 1
                self.bytes_down += len(payload)
                self._downstream_in_fragment = not fin
                if fin and self._deferred:
                    out.extend(self._deferred)
                    self._deferred.clear()
            elif opcode == _PING:
                if self._upstream is not None and not self._upstream_close_sent:
                    self._upstream.write(_encode(_PONG, payload, mask=True))
            elif opcode == _PONG:
                self._upstream_ping_sent = None
            else:
                if out:
                    client.write(b"".join(out))
                    out = []
                self._upstream_close_received(payload)
                break
        if out:
            client.write(b"".join(out))
            self._metrics.delay.observe(perf_counter() - started, len(out))

    def upstream_connection_lost(self, exc: Exception | None) -> None:
        """The model's socket is gone; if it did not close cleanly, that is a fault."""
        was_open = self._upstream_state == _OPEN
        self._upstream_state = _CLOSED
        self._upstream = None
        if was_open and self.upstream_close_code is None and not self._upstream_close_sent:
            self.upstream_close_code = CloseCode.ABNORMAL_CLOSURE
            self._metrics.count("UpstreamErrors")
            self._fail(UpstreamError("lost the connection to the model"), upstream=False)
        self._maybe_finish()

    def upstream_pause_writing(self) -> None:
        """The model reads slower than the client sends: stop reading the client."""
        self._client_reads_paused = True
        if self._client is not None:
            self._client.pause_reading()

    def upstream_resume_writing(self) -> None:
        """The model caught up."""
        self._client_reads_paused = False
        if self._client is not None and not self._client_closed:
            self._client.resume_reading()

    def _upstream_failed(self, error: UpstreamError) -> None:
        if self._upstream_state == _CLOSED:
            return
        logger.warning(
            "upstream failed",
            extra={"session_id": self.id, "sub": self.claims.sub, "error": str(error)},
        )
        self._metrics.count("UpstreamErrors")
        if self._upstream is not None:
            self._upstream.abort()
        self._upstream_state = _CLOSED
        self._upstream = None
        self._fail(error, upstream=False)
        self._maybe_finish()

    # Closing handshakes (RFC 6455 §7)

    def _fail(self, error: RelayError, *, upstream: bool = True) -> None:
        """Tell the client why with an error event, then close it with the error's code."""
        self._send_client_event(
            error_event(str(error), error_type=error.error_type, code=error.error_code)
        )
        self._close_client(error.close_code, str(error))
        if upstream:
            self._close_upstream(CloseCode.NORMAL_CLOSURE, "client session ended")

    def _fail_framing(self, code: int, reason: str) -> None:
        """The client broke framing or sent too much (RFC 6455 §7.1.7: fail the connection).

        A too-big message still gets an error event saying so. Then the close frame, and
        the socket is closed at once: what follows in the stream is not read any more.
        """
        self._discard_client = True
        if code == CloseCode.MESSAGE_TOO_BIG:
            self._fail(MessageTooBigError(reason))
        else:
            self._close_client(code, reason)
            self._close_upstream(CloseCode.NORMAL_CLOSURE, "client session ended")
        if self._client is not None:
            self._client.close()

    def _close_client(self, code: int, reason: str) -> None:
        if self._client_close_sent or self._client_closed or self._client is None:
            return
        self._client_close_sent = True
        self.close_code = code
        self.close_reason = reason
        self._deferred.clear()
        self._client.write(_encode(wire.CLOSE, wire.close_payload(code, reason), mask=False))
        self._timers.append(self._loop.call_later(self.context.close_timeout, self._client.abort))

    def _client_close_received(self, payload: bytes) -> None:
        assert self._client is not None
        try:
            code, reason = wire.parse_close(payload)
        except wire.FrameError as exc:
            self._fail_framing(exc.close_code, str(exc))
            return
        if not self._client_close_sent:
            self._client_close_sent = True
            self.close_code, self.close_reason = code, reason
            self._client.write(_encode(wire.CLOSE, payload, mask=False))
        # A server closes the TCP connection once both close frames are exchanged (§7.1.1).
        self._client.close()
        upstream_code = CloseCode.NORMAL_CLOSURE if code == CloseCode.NO_STATUS_RCVD else code
        self._close_upstream(upstream_code, reason)

    def _close_upstream(self, code: int, reason: str) -> None:
        if self._upstream_state == _DIALING:
            self._upstream_state = _CLOSED
            if self._dial_task is not None:
                self._dial_task.cancel()
            self._queue.clear()
            self._maybe_finish()
        elif self._upstream_state == _OPEN and not self._upstream_close_sent:
            assert self._upstream is not None
            self._upstream_close_sent = True
            self._upstream.write(_encode(wire.CLOSE, wire.close_payload(code, reason), mask=True))
            self._timers.append(
                self._loop.call_later(self.context.close_timeout, self._upstream.abort)
            )

    def _upstream_close_received(self, payload: bytes) -> None:
        assert self._upstream is not None
        try:
            code, reason = wire.parse_close(payload)
        except wire.FrameError:
            code, reason = CloseCode.PROTOCOL_ERROR, "invalid close frame from the model"
        self.upstream_close_code = code
        if not self._upstream_close_sent:
            self._upstream_close_sent = True
            self._upstream.write(_encode(wire.CLOSE, payload, mask=True))
            self._timers.append(
                self._loop.call_later(self.context.close_timeout, self._upstream.abort)
            )
        if code in (CloseCode.NORMAL_CLOSURE, CloseCode.NO_STATUS_RCVD):
            self._close_client(CloseCode.NORMAL_CLOSURE, reason)
        elif code == CloseCode.GOING_AWAY:
            # OpenAI's 60-minute cap: 1001 with its reason; clients treat 1001 as retryable.
            self._close_client(CloseCode.GOING_AWAY, reason or "the model ended the session")
        else:
            self._metrics.count("UpstreamErrors")
            suffix = f": {reason}" if reason else ""
            self._fail(
                UpstreamError(f"the model closed the session ({code}{suffix})"), upstream=False
            )

    # Timers

    def _keepalive(self) -> None:
        """Client leg: ping every interval; no pong within the timeout = dead peer."""
        if self._client is None or self._client_closed:
            return
        now = self._loop.time()
        if self._client_reads_paused:
            # Back-pressure: its pong may be unread in our socket; judge after resuming.
            self._client_ping_sent = None
        elif self._client_ping_sent is not None:
            if now - self._client_ping_sent >= self.context.ping_timeout:
                self._client.abort()
                return
        elif not self._client_close_sent:
            self._client_ping_sent = now
            self._client.write(_encode(_PING, b"relay", mask=False))
        self._timers.append(self._loop.call_later(self.context.ping_interval, self._keepalive))
        self._prune_timers()

    def _keepalive_up(self) -> None:
        """Upstream leg: same keepalive; a dead model is an upstream fault."""
        if self._upstream is None or self._upstream_state != _OPEN:
            return
        now = self._loop.time()
        if self._upstream_reads_paused:
            self._upstream_ping_sent = None
        elif self._upstream_ping_sent is not None:
            if now - self._upstream_ping_sent >= self.context.ping_timeout:
                self._upstream_failed(UpstreamError("the model stopped answering pings"))
                return
        elif not self._upstream_close_sent:
            self._upstream_ping_sent = now
            self._upstream.write(_encode(_PING, b"relay", mask=True))
        self._timers.append(self._loop.call_later(self.context.ping_interval, self._keepalive_up))

    def _expire(self) -> None:
        self._fail(
            SessionTooLongError(
                f"the session reached the relay's limit of {self.context.max_session_seconds:g} s"
            )
        )

    def _prune_timers(self) -> None:
        if len(self._timers) > 8:
            self._timers = [
                t for t in self._timers if not t.cancelled() and t.when() > self._loop.time()
            ]
