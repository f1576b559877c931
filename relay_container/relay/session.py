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

Sessions that outlive a connection (issue 7):

- Records: each client connection gets a ``ConnectionRecord``; upstream text frames whose
  type ``records.recorded_type`` recognises (a bounded prefix look, never audio deltas)
  are handed to it; its writes are queued off the audio path.
- Resume: a session for a subject with no live session on this task loads the stored
  conversation while the upstream connects and replays it (``conversation.seed_events``)
  after the agent's ``session.update`` and before the client's queued frames. The model's
  acknowledgements of the seeds (``conversation.item.added`` / ``.done``, or an ``error``
  naming a ``relay_seed_`` event) are not forwarded: the client never sent those events.
- Re-attach: a client that vanishes without a close frame (TCP reset, ping timeout)
  *detaches*: the upstream stays open for ``reattach_seconds`` and its data frames are
  buffered (bounded by bytes; overflow ends the session). ``reattach()`` gives the session
  a new client socket, which first receives the buffered frames in order.
- Rollover: after ``rollover_seconds`` a standby upstream is opened with the same agent
  configuration, the client's own session updates and the conversation as seeds
  (``relay.handover``); once it has acknowledged them, the session switches to it between
  turns (or at a hard deadline) and closes the old one with 1000. The client's socket is
  untouched and sees none of the standby's set-up events.
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
from relay.conversation import RESPONSE_CREATED, TurnTaking, seed_events
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
    SESSION_UPDATE,
    TYPE_KEY,
    error_event,
    peek_type,
    server_event_type,
)
from relay.handover import RetiringUpstream, StandbyUpstream
from relay.metrics import Metrics
from relay.policy import SessionPolicy
from relay.records import ConnectionRecord, Recorder, recorded_type
from relay.tokens import Claims
from relay.upstream import UpstreamConnection, open_upstream

logger = logging.getLogger(__name__)

perf_counter: Final = time.perf_counter

DRAIN_REASON: Final = "relay draining: reconnect"
#: Bound of a resume's conversation load (it flushes first, so at most twice this). A
#: DynamoDB query takes milliseconds; during a storage outage this is how long a new
#: session waits (its audio queued) before it starts without history.
HISTORY_LOAD_SECONDS: Final = 1.0
#: Client session.update events replayed on a rollover's standby upstream, newest kept.
MAX_REPLAYED_UPDATES: Final = 8
#: A rollover waits at most this long for a pause between turns, then switches anyway.
ROLLOVER_MAX_WAIT_SECONDS: Final = 120.0
#: Acknowledgements of the relay's own events that a client never sees.
_SEED_ACK_TYPES: Final = frozenset({"conversation.item.added", "conversation.item.done"})
_TRUNCATE: Final = "conversation.item.truncate"
#: The model's most frequent events, never recorded: skipped before ``recorded_type``.
_UNRECORDED_HEADS: Final = (
    b'{"type":"response.output_audio.delta"',
    b'{"type":"response.output_audio_transcript.delta"',
)
#: Socket write-buffer marks: beyond HIGH the other leg stops being read.
WRITE_HIGH: Final = 256 * 1024
WRITE_LOW: Final = 64 * 1024

# Final: the mypyc build reads these as constants instead of looking them up per message.
_TEXT: Final = wire.TEXT
_BINARY: Final = wire.BINARY
_CONT: Final = wire.CONT
_PING: Final = wire.PING
_PONG: Final = wire.PONG
_encode: Final = wire.encode
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
    recorder: Recorder
    #: Grace period of a detached session; 0 = a vanished client ends it at once.
    reattach_seconds: float = 0.0
    reattach_buffer_bytes: int = 4 * 2**20
    #: Seconds after which a fresh upstream replaces the current one; 0 = never.
    rollover_seconds: float = 0.0


# Upstream leg states.
_DIALING: Final = 0
_OPEN: Final = 1
_CLOSED: Final = 2


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
        resume: bool = False,
    ) -> None:
        self.context = context
        self.claims = claims
        self.model = model
        self.id = uuid.uuid4().hex[:16]
        #: This client connection (a re-attach starts a new one).
        self.connection_id = self.id
        self._resume = resume
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
        self._upstream_connection: UpstreamConnection | None = None
        self._upstream_reader = wire.FrameReader(
            masked=False, max_size=context.max_upstream_frame_bytes
        )
        self._upstream_close_sent = False
        self._upstream_ping_sent: float | None = None
        self._upstream_reads_paused = False
        self._queue: list[tuple[bytes, float]] = []
        self._queue_bytes = 0
        #: Upstream acknowledgements of seeds still to swallow (resume).
        self._seed_acks = 0
        # Re-attach.
        #: False once the relay drains: a vanished client then ends the session.
        self.holdable = context.reattach_seconds > 0
        self.detached = False
        self.detached_at = 0.0
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._drop_continuation = False
        self._hold_timer: asyncio.TimerHandle | None = None
        self.reattached = 0
        # Rollover.
        self._client_updates: list[bytes] = []
        self._standby: StandbyUpstream | None = None
        self._standby_task: asyncio.Task[None] | None = None
        self._rollover_started = 0.0
        self._rollover_forced = False
        self._rollover_deadline: asyncio.TimerHandle | None = None
        self._drop_truncates = False
        self.rollovers = 0
        self.record: ConnectionRecord = context.recorder.connection_started(
            session_id=claims.sub, connection_id=self.connection_id, model=model
        )
        # Outcome.
        self.close_code: int | None = None
        self.close_reason = ""
        self.upstream_close_code: int | None = None
        self.frames_up = self.frames_down = self.bytes_up = self.bytes_down = 0
        # Timers.
        self._timers: list[asyncio.TimerHandle] = []
        self._keepalive_armed = False

    # Lifecycle

    def start(self, transport: asyncio.Transport, leftover: bytes) -> None:
        """Take over the client socket after the 101 and start dialling the model."""
        self._client = transport
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        self._dial_task = self._loop.create_task(self._dial())
        self._dial_task.add_done_callback(self._dial_done)
        self._timers.append(self._loop.call_later(self.context.max_session_seconds, self._expire))
        self._arm_keepalive()
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
        """Close both legs (drain deadline): the client gets ``code`` and ``reason``.

        A detached session has no client: its upstream is closed and it ends.
        """
        self.holdable = False
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
        self._held.clear()
        self._drop_standby()
        self._ticket.release()
        self.record.connection_ended(
            close_code=self.close_code,
            close_reason=self.close_reason,
            upstream_close_code=self.upstream_close_code,
        )
        stats = self.context.recorder.stats()
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
                "reattached": self.reattached,
                "rollovers": self.rollovers,
                "turns": len(self.record.conversation),
                "records_written": stats.written,
                "records_dropped": stats.dropped,
                "record_write_failures": stats.failed_attempts,
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
        """The client socket is gone: hold the upstream for a re-attach, or end it too."""
        self._client_closed = True
        if self.close_code is None:
            self.close_code = CloseCode.ABNORMAL_CLOSURE
            self.close_reason = "client disconnected"
            if self.holdable and self._upstream_state != _CLOSED and not self.finished:
                self._detach()
                return
        self._close_upstream(CloseCode.GOING_AWAY, "client went away")
        self._maybe_finish()

    # Re-attach

    def _detach(self) -> None:
        """No close frame from the client: keep the model for the grace period."""
        self.detached = True
        self.detached_at = self._loop.time()
        self._client = None
        self._fragments = None
        self._drop_continuation = self._downstream_in_fragment
        self._downstream_in_fragment = False
        self._deferred.clear()
        self.record.connection_ended(
            close_code=self.close_code,
            close_reason=self.close_reason,
            upstream_close_code=self.upstream_close_code,
        )
        self._hold_timer = self._loop.call_later(self.context.reattach_seconds, self._hold_expired)
        self._timers.append(self._hold_timer)
        if self._upstream_reads_paused and self._upstream is not None:
            self._upstream_reads_paused = False
            self._upstream.resume_reading()
        logger.info(
            "client detached",
            extra={
                "session_id": self.id,
                "sub": self.claims.sub,
                "reattach_seconds": self.context.reattach_seconds,
            },
        )

    def _hold_expired(self, reason: str = "no re-attach within the grace period") -> None:
        if not self.detached or self.finished:
            return
        logger.info(
            "detached session ended",
            extra={"session_id": self.id, "sub": self.claims.sub, "reason": reason},
        )
        self.holdable = False
        self.detached = False
        self._held.clear()
        self._held_bytes = 0
        self._close_upstream(CloseCode.NORMAL_CLOSURE, "client session ended")
        self._maybe_finish()

    def _hold_frame(self, frame: bytes) -> None:
        self._held.append(frame)
        self._held_bytes += len(frame)
        if self._held_bytes > self.context.reattach_buffer_bytes:
            self._metrics.count("ReattachOverflows")
            self._hold_expired("buffered more than the re-attach bound")

    def reattach(self, transport: asyncio.Transport, leftover: bytes) -> None:
        """A new client socket for this detached session: buffered frames first, then live."""
        assert self.detached
        assert not self.finished
        self.detached = False
        self.reattached += 1
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        # The client keepalive stops with the old socket unless its timer is still due.
        if not self._keepalive_armed:
            self._arm_keepalive()
        # A fresh client leg.
        self._client = transport
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        self._client_reader = wire.FrameReader(masked=True, max_size=self.context.max_frame_bytes)
        self._fragments = None
        self._discard_client = False
        self._client_close_sent = False
        self._client_closed = False
        self._client_ping_sent = None
        self.close_code = None
        self.close_reason = ""
        if self._client_reads_paused:
            transport.pause_reading()
        old = self.record
        self.connection_id = uuid.uuid4().hex[:16]
        self.record = self.context.recorder.connection_started(
            session_id=self.claims.sub,
            connection_id=self.connection_id,
            model=self.model,
            history=old.conversation.turns(),
        )
        self.record.turn_taking = old.turn_taking
        held, self._held, self._held_bytes = self._held, [], 0
        if held:
            transport.write(b"".join(held))
            self.frames_down += len(held)
        logger.info(
            "client reattached",
            extra={
                "session_id": self.id,
                "sub": self.claims.sub,
                "connection_id": self.connection_id,
                "buffered_frames": len(held),
                "detached_ms": round((self._loop.time() - self.detached_at) * 1000),
            },
        )
        if leftover:
            self.data_received(leftover)

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
        if self._drop_truncates and kind == _TRUNCATE:
            return  # it names an item of the upstream session replaced by a rollover
        if kind in FILTERED_TYPES:
            verdict = self._policy.apply(kind, payload, model=self.model, session_id=self.id)
            if verdict.reply is not None:
                self._send_client_event(verdict.reply)
            if verdict.forward is None:
                return
            payload = verdict.forward
            if kind == SESSION_UPDATE and self.context.rollover_seconds > 0:
                # Replayed on a rollover's fresh upstream (rare events, a few kept).
                self._client_updates.append(payload)
                del self._client_updates[:-MAX_REPLAYED_UPDATES]
                if self._standby is not None or self._standby_task is not None:
                    # The fresh session was set up without it: prepare it again.
                    self._drop_standby()
                    self._arm_rollover(0.0)
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
        # Resume: the stored conversation loads while the model connects (bounded, never
        # raises: a storage failure resumes without history).
        history_task = (
            self._loop.create_task(
                self.context.recorder.load_turns(self.claims.sub, timeout=HISTORY_LOAD_SECONDS)
            )
            if self._resume
            else None
        )
        try:
            try:
                async with asyncio.timeout(self.context.open_timeout):
                    connection = await open_upstream(
                        url=self.context.upstream_url,
                        model=self.model,
                        api_key=self.context.api_key,
                    )
            except TimeoutError:
                self._upstream_failed(UpstreamError("the model did not answer in time"))
                return
            except OSError as exc:
                self._upstream_failed(
                    UpstreamError(f"cannot reach the model: {exc.strerror or exc}")
                )
                return
            except UpstreamError as exc:
                self._upstream_failed(exc)
                return
            history = await history_task if history_task is not None else []
        finally:
            if history_task is not None and not history_task.done():
                history_task.cancel()
        if self._upstream_state != _DIALING or connection.transport is None:
            if connection.transport is not None:
                connection.transport.abort()
            return
        seeds: list[str] = []
        if history:
            self.record.conversation.extend(history)
            seeds = seed_events(history)
            self._metrics.count("SessionsResumed")
        logger.info(
            "upstream connected",
            extra={
                "session_id": self.id,
                "sub": self.claims.sub,
                "connect_ms": round((self._loop.time() - started) * 1000),
                "seeded_turns": len(seeds),
            },
        )
        self._upstream_opened(connection, seeds)

    def _dial_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.error(
                "upstream dial failed unexpectedly", exc_info=exc, extra={"session_id": self.id}
            )
            self._upstream_failed(UpstreamError("internal error while reaching the model"))

    def _upstream_opened(self, connection: UpstreamConnection, seeds: list[str]) -> None:
        assert connection.transport is not None
        transport = connection.transport
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        self._upstream = transport
        self._upstream_state = _OPEN
        self._dial_task = None
        self._upstream_connection = connection
        self._timers.append(self._loop.call_later(self.context.ping_interval, self._keepalive_up))
        self._arm_rollover()
        leftover = connection.attach(self)
        # 1. Our agent configuration first, so the client's own updates apply on top.
        transport.write(_encode(_TEXT, self.context.agent_update, mask=True))
        # 2. The conversation so far (resume); its acknowledgements are not forwarded.
        if seeds:
            transport.write(b"".join(_encode(_TEXT, e.encode(), mask=True) for e in seeds))
            self._seed_acks = 2 * len(seeds)
        # 3. Then what the client sent meanwhile, in order.
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
        """Model bytes: recorded when they matter, forwarded to the client unchanged."""
        started = perf_counter()
        try:
            frames, clean = self._upstream_reader.feed(data)
        except wire.FrameError as exc:
            self._upstream_failed(UpstreamError(f"the model broke WebSocket framing: {exc}"))
            return
        if not frames:
            return
        record = self.record
        for opcode, fin, payload in frames:
            # A bounded look at the first bytes; audio deltas are never parsed.
            if (
                opcode == _TEXT
                and fin
                and not payload.startswith(_UNRECORDED_HEADS)
                and (kind := recorded_type(payload)) is not None
            ):
                record.on_upstream_event(kind, payload)
                if kind == RESPONSE_CREATED:
                    self._drop_truncates = False
                elif self._standby is not None:
                    self._maybe_switch()
        client = self._client
        if client is None or self._client_close_sent or self._seed_acks:
            self._upstream_frames_held_back(frames)
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

    def _upstream_frames_held_back(self, frames: list[wire.Frame]) -> None:
        """The slow path: no client to write to (detached, closing), or acks to swallow."""
        out: list[bytes] = []
        for opcode, fin, payload in frames:
            if opcode <= _BINARY:
                if self._seed_acks and opcode == _TEXT and fin and self._is_seed_ack(payload):
                    continue
                if self.detached:
                    if opcode == _CONT and self._drop_continuation:
                        self._drop_continuation = not fin
                        continue
                    self._hold_frame(_encode(opcode, payload, mask=False, fin=fin))
                    if not self.detached:  # the bound was passed: the session ended
                        return
                elif self._client is not None and not self._client_close_sent:
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
                if out and self._client is not None:
                    self._client.write(b"".join(out))
                    out = []
                self._upstream_close_received(payload)
                return
        if out and self._client is not None:
            self._client.write(b"".join(out))

    def _is_seed_ack(self, payload: bytes) -> bool:
        """Whether an upstream event answers one of our seeds (and is swallowed)."""
        kind = server_event_type(payload)
        if kind in _SEED_ACK_TYPES:
            self._seed_acks -= 1
            return True
        if kind == "error" and b'"relay_seed_' in payload:
            self._seed_acks = max(0, self._seed_acks - 2)
            logger.warning(
                "the model refused a conversation seed",
                extra={
                    "session_id": self.id,
                    "sub": self.claims.sub,
                    "event": payload[:300].decode("utf-8", "replace"),
                },
            )
            return True
        return False

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

    # Rollover

    @property
    def _rollover_wait(self) -> float:
        """How long a prepared rollover waits for a pause between turns."""
        return min(ROLLOVER_MAX_WAIT_SECONDS, self.context.rollover_seconds / 4)

    def _arm_rollover(self, after: float | None = None) -> None:
        if self.context.rollover_seconds > 0:
            delay = self.context.rollover_seconds if after is None else after
            self._timers.append(self._loop.call_later(delay, self._start_rollover))

    def _start_rollover(self) -> None:
        """Time for a fresh upstream: dial it; the switch waits for a pause between turns."""
        if self.finished or self._upstream_state != _OPEN or self._upstream_close_sent:
            return
        if self._standby is not None or self._standby_task is not None:
            return
        self._rollover_started = self._loop.time()
        self._rollover_forced = False
        self._standby_task = self._loop.create_task(self._dial_standby())
        self._standby_task.add_done_callback(self._standby_dial_done)
        self._rollover_deadline = self._loop.call_later(
            self._rollover_wait + self.context.open_timeout, self._force_rollover
        )
        self._timers.append(self._rollover_deadline)

    async def _dial_standby(self) -> None:
        try:
            async with asyncio.timeout(self.context.open_timeout):
                connection = await open_upstream(
                    url=self.context.upstream_url, model=self.model, api_key=self.context.api_key
                )
        except (TimeoutError, OSError, UpstreamError) as exc:
            self._standby_lost(f"cannot open the fresh session: {exc}")
            return
        self._standby_task = None
        if self.finished or connection.transport is None:
            if connection.transport is not None:
                connection.transport.abort()
            return
        seeds = seed_events(self.record.conversation.turns())
        events = [self.context.agent_update, *self._client_updates, *(e.encode() for e in seeds)]
        standby = StandbyUpstream(
            connection,
            expected_acks=1 + 1 + len(self._client_updates) + 2 * len(seeds),
            max_size=self.context.max_upstream_frame_bytes,
            on_ready=self._maybe_switch,
            on_lost=self._standby_lost,
        )
        self._standby = standby
        logger.info(
            "rollover: fresh upstream connected",
            extra={"session_id": self.id, "sub": self.claims.sub, "seeded_turns": len(seeds)},
        )
        standby.start(events)

    def _standby_dial_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.error("rollover dial failed unexpectedly", exc_info=exc)
            self._standby_lost("internal error while opening the fresh session")

    def _standby_lost(self, reason: str) -> None:
        """The fresh session failed: keep the current one, try again a little later."""
        logger.warning(
            "rollover failed",
            extra={"session_id": self.id, "sub": self.claims.sub, "error": reason},
        )
        self._metrics.count("UpstreamErrors")
        self._drop_standby()
        if not self.finished:
            self._arm_rollover(self._rollover_wait)

    def _drop_standby(self) -> None:
        if self._standby_task is not None:
            self._standby_task.cancel()
            self._standby_task = None
        if self._standby is not None:
            self._standby.abort()
            self._standby = None
        if self._rollover_deadline is not None:
            self._rollover_deadline.cancel()
            self._rollover_deadline = None

    def _force_rollover(self) -> None:
        """No pause between turns came: switch at the next message boundary anyway."""
        self._rollover_deadline = None
        self._rollover_forced = True
        self._maybe_switch()

    def _maybe_switch(self) -> None:
        standby = self._standby
        if standby is None or not standby.ready or self._downstream_in_fragment:
            return
        if not (self._rollover_forced or self.record.turn_taking.between_turns):
            return
        old = self._upstream_connection
        if self._upstream_state != _OPEN or self._upstream_close_sent or old is None:
            self._drop_standby()
            return
        # The old session is retired with what its reader holds; the fresh one takes over.
        RetiringUpstream(old, self._upstream_reader, self.context.close_timeout).close(
            "session rolled over"
        )
        self._standby = None
        if self._rollover_deadline is not None:
            self._rollover_deadline.cancel()
            self._rollover_deadline = None
        transport = standby.transport
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        self._upstream_connection = standby.connection
        self._upstream = transport
        self._upstream_reader = standby.reader
        self._upstream_ping_sent = None
        standby.connection.attach(self)
        if self._upstream_reads_paused:
            transport.pause_reading()
        if self._client_reads_paused and self._client is not None and not self._client_closed:
            self._client_reads_paused = False  # it was the old session that was slow
            self._client.resume_reading()
        if self._rollover_forced:
            # Whatever was in progress ended with the old session.
            self.record.turn_taking = TurnTaking()
        self._drop_truncates = True
        self.rollovers += 1
        self._metrics.count("Rollovers")
        logger.info(
            "rollover: switched to the fresh upstream",
            extra={
                "session_id": self.id,
                "sub": self.claims.sub,
                "forced": self._rollover_forced,
                "waited_ms": round((self._loop.time() - self._rollover_started) * 1000),
                "refused_setup_events": standby.refusals,
            },
        )
        self._rollover_forced = False
        self._arm_rollover()

    # Timers

    def _arm_keepalive(self) -> None:
        self._keepalive_armed = True
        self._timers.append(self._loop.call_later(self.context.ping_interval, self._keepalive))

    def _keepalive(self) -> None:
        """Client leg: ping every interval; no pong within the timeout = dead peer."""
        self._keepalive_armed = False
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
        self._arm_keepalive()
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
