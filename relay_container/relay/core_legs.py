"""The two legs of a session core: their states, closing handshakes, faults and keepalive.

``LegCore`` is the part of ``relay.core.SessionCore`` that knows how each leg opens,
stays alive and ends (RFC 6455 §5.5.2 pings, §7 closing handshakes, the mapping of
faults to close codes: 1008 policy, 1009 too big, 1011 upstream failure, 1001 going
away), and when the session is finished. ``SessionCore`` adds what moves between the
legs (forwarding, re-attach, rollover, leaving). Sans I/O, like the rest of the core:
its outputs are effects (``relay.effects``) collected per input.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from websockets.frames import CloseCode

from relay import wire
from relay.client_events import ClientEvents
from relay.conversation import Turn
from relay.effects import (
    CLIENT,
    Abort,
    Close,
    Deadlines,
    Effect,
    Finished,
    Happened,
    Timer,
    Write,
)
from relay.errors import ClientAbuseError, MessageTooBigError, RelayError, UpstreamError
from relay.events import error_event
from relay.reattach import HoldBuffer
from relay.record_items import ConnectionRecord
from relay.resume import SeedAcks
from relay.rollover import RetiringLeg, Rollover
from relay.turn_gate import TurnGate
from relay.turn_timing import TurnTimings
from relay.upstream_leg import UpstreamLeg

if TYPE_CHECKING:  # the core reads the settings it is given; it never loads them
    from relay.config import RelayConfig

#: A record factory: the turns known so far → the record of a new client connection.
RecordFactory = Callable[[Sequence[Turn]], ConnectionRecord]

#: Bytes of its own (error events, pongs, deferred events) the relay queues for a client
#: whose socket buffer is full before it cuts that client.
MAX_BLOCKED_CLIENT_BYTES: Final = 64 * 1024
#: Invalid client events answered in a burst, and per second after it; beyond, 1008.
INVALID_EVENT_BURST: Final = 20.0
INVALID_EVENTS_PER_SECOND: Final = 2.0


class ClientState(enum.Enum):
    """The client leg: ``OPEN`` → ``CLOSING`` (a close frame sent or received) → ``CLOSED``;
    ``DETACHED`` while a vanished client may re-attach."""

    OPEN = "open"
    CLOSING = "closing"
    DETACHED = "detached"
    CLOSED = "closed"


C_OPEN: Final = ClientState.OPEN
C_CLOSING: Final = ClientState.CLOSING
C_DETACHED: Final = ClientState.DETACHED
C_CLOSED: Final = ClientState.CLOSED


class LegCore:
    """State of both legs and how they end (see the module docstring)."""

    def __init__(
        self,
        config: RelayConfig,
        events: ClientEvents,
        *,
        agent_update: bytes,
        new_record: RecordFactory,
        resume: bool = False,
        ping_payload: bytes = b"relay",
    ) -> None:
        self.config = config
        self._events = events
        self._agent_update = agent_update
        self._new_record = new_record
        self._resume = resume
        self._ping_payload = ping_payload
        self.record = new_record(())
        self._deadlines = Deadlines()
        self._fx: list[Effect] = []
        self._now = 0.0
        self.finished = False
        self.leaving = False
        #: Hand the tool runner the events it follows (``configure``).
        self.watch_tools = False
        #: Who decides when the agent answers: None, the model; else this gate.
        self.gate: TurnGate | None = None
        #: When each user turn's answer arrived (asked for with ``relay.latency.get``).
        self.timings = TurnTimings()
        #: False once the relay drains or leaves: a vanished client then ends the session.
        self.holdable = config.reattach_seconds > 0
        # Client leg.
        self.client_state = C_OPEN
        self._reader: wire.FrameReader | None = self._client_reader()
        self._fragments: list[bytes] | None = None
        self._fragment_opcode = wire.TEXT
        self._fragment_size = 0
        self._ping_sent: float | None = None
        self._client_reads_paused = False
        self._client_blocked = False
        self._blocked_bytes = 0
        self._invalid_budget = INVALID_EVENT_BURST
        self._invalid_at = 0.0
        #: Relay events for the client held while the model's fragmented message goes out.
        self._deferred: list[bytes] = []
        self._in_fragment = False
        # Upstream legs: the current one, a standby (rollover), retiring ones.
        self.up = UpstreamLeg(1, config.max_upstream_frame_bytes)
        self._next_leg = 2
        self._queue: list[bytes] = []
        self._queue_bytes = 0
        self._seeds = SeedAcks()
        self._hold = HoldBuffer(config.reattach_buffer_bytes)
        self._rollover = Rollover(replay_seconds=config.rollover_replay_seconds)
        self._retiring: dict[int, RetiringLeg] = {}
        #: Appends kept for a rollover's replay; the switch is being forced; truncates of
        #: the replaced session's items are dropped until the fresh one answers.
        self._replaying = False
        self._forced = False
        self._drop_truncates = False
        # Outcome and counters.
        self.close_code: int | None = None
        self.close_reason = ""
        self.detached_at = 0.0
        self.frames_up = self.frames_down = self.bytes_up = self.bytes_down = 0
        self.reattached = self.rollovers = 0

    # Outputs

    def _take(self) -> list[Effect]:
        """This input's effects, with the timer re-armed when the earliest deadline moved."""
        earliest = self._deadlines.earliest()
        if earliest != self._deadlines.armed:
            self._deadlines.armed = earliest
            self._fx.append(Timer(earliest))
        fx, self._fx = self._fx, []
        return fx

    def _note(self, what: str, **fields: Any) -> None:
        self._fx.append(Happened(what, fields))

    def _to_client(self, data: bytes) -> None:
        """Relay bytes for the client, bounded while the client does not read."""
        if self._client_blocked:
            self._blocked_bytes += len(data)
            if self._blocked_bytes > MAX_BLOCKED_CLIENT_BYTES:
                self._cut_client("the client does not read what it is sent")
                return
        self._fx.append(Write(CLIENT, data))

    def _client_event(self, event: bytes) -> None:
        """An event of the relay's own for the client; never inside a model message."""
        if self.client_state is not C_OPEN:
            return
        frame = wire.encode(wire.TEXT, event, mask=False)
        if self._in_fragment:
            self._deferred.append(frame)
            if len(self._deferred) > 64:
                self._cut_client("too many relay events waiting for the client")
        else:
            self._to_client(frame)

    def _client_reader(self) -> wire.FrameReader:
        return wire.FrameReader(masked=True, max_size=self.config.max_frame_bytes)

    def _invalid_event(self, error_frame: bytes) -> None:
        """Answer an invalid event; a client that keeps sending them is cut."""
        budget = self._invalid_budget + (self._now - self._invalid_at) * INVALID_EVENTS_PER_SECOND
        self._invalid_at = self._now
        self._invalid_budget = min(INVALID_EVENT_BURST, budget) - 1.0
        if self._invalid_budget < 0:
            self._note("client cut", reason="invalid events")
            self._fail(ClientAbuseError("too many invalid events: the relay closes the session"))
        else:
            self._client_event(error_frame)

    # Faults and closing handshakes (RFC 6455 §7)

    def _fail(self, error: RelayError, *, upstream: bool = True) -> None:
        """Tell the client why with an error event, then close it with the error's code."""
        self._client_event(
            error_event(str(error), error_type=error.error_type, code=error.error_code)
        )
        self._close_client(error.close_code, str(error))
        if upstream:
            self._close_upstream(CloseCode.NORMAL_CLOSURE, "client session ended")

    def _cut_client(self, reason: str) -> None:
        """A client that does not read: no more bytes for it, its socket dropped."""
        self._client_blocked = False  # what follows is not queued: the socket is dropped
        if self.client_state is C_OPEN:
            self.client_state = C_CLOSING
            self.close_code, self.close_reason = CloseCode.POLICY_VIOLATION, reason
        self._reader = None
        self._fx.append(Abort(CLIENT))
        self._note("client cut", reason=reason)
        self._close_upstream(CloseCode.NORMAL_CLOSURE, "client session ended")

    def _fail_framing(self, code: int, reason: str) -> None:
        """The client broke framing or sent too much (RFC 6455 §7.1.7: fail the connection).

        A too-big message still gets an error event saying so. Then the close frame, and
        the socket is closed at once: what follows in the stream is not read any more.
        """
        self._reader = None
        if code == CloseCode.MESSAGE_TOO_BIG:
            self._fail(MessageTooBigError(reason))
        else:
            self._close_client(code, reason)
            self._close_upstream(CloseCode.NORMAL_CLOSURE, "client session ended")
        self._fx.append(Close(CLIENT))

    def _close_client(self, code: int, reason: str) -> None:
        if self.client_state is not C_OPEN:
            return
        self.client_state = C_CLOSING
        self.close_code, self.close_reason = code, reason
        self._deferred.clear()
        self._to_client(wire.encode(wire.CLOSE, wire.close_payload(code, reason), mask=False))
        self._deadlines.set("client_close", self._now + self.config.close_timeout)

    def _client_close_received(self, payload: bytes) -> None:
        try:
            code, reason = wire.parse_close(payload)
        except wire.FrameError as exc:
            self._fail_framing(exc.close_code, str(exc))
            return
        if self.client_state is C_OPEN:
            self.client_state = C_CLOSING
            self.close_code, self.close_reason = code, reason
            self._fx.append(Write(CLIENT, wire.encode(wire.CLOSE, payload, mask=False)))
        # A server closes the TCP connection once both close frames are exchanged (§7.1.1).
        self._reader = None
        self._fx.append(Close(CLIENT))
        self._close_upstream(
            CloseCode.NORMAL_CLOSURE if code == CloseCode.NO_STATUS_RCVD else code, reason
        )

    def _close_upstream(self, code: int, reason: str) -> None:
        up = self.up
        if up.is_dialing:
            up.lost()
            self._queue, self._queue_bytes = [], 0
            self._fx.append(Abort(up.leg))  # the shell cancels the dial
        elif up.is_open:
            up.closing()
            self._fx.append(
                Write(up.leg, wire.encode(wire.CLOSE, wire.close_payload(code, reason), mask=True))
            )
            self._deadlines.set(f"abort:{up.leg}", self._now + self.config.close_timeout)

    def _upstream_close_received(self, payload: bytes) -> None:
        up = self.up
        try:
            code, reason = wire.parse_close(payload)
        except wire.FrameError:
            code, reason = CloseCode.PROTOCOL_ERROR, "invalid close frame from the model"
        up.close_code = code
        if up.is_open:
            up.closing()
            self._fx.append(Write(up.leg, wire.encode(wire.CLOSE, payload, mask=True)))
            self._deadlines.set(f"abort:{up.leg}", self._now + self.config.close_timeout)
        if code in (CloseCode.NORMAL_CLOSURE, CloseCode.NO_STATUS_RCVD):
            self._close_client(CloseCode.NORMAL_CLOSURE, reason)
        elif code == CloseCode.GOING_AWAY:
            # OpenAI's 60-minute cap: 1001 with its reason; clients treat 1001 as retryable.
            self._close_client(CloseCode.GOING_AWAY, reason or "the model ended the session")
        else:
            self._note("upstream failed", error=f"closed with {code}")
            suffix = f": {reason}" if reason else ""
            self._fail(
                UpstreamError(f"the model closed the session ({code}{suffix})"), upstream=False
            )

    def _upstream_failed(self, error: UpstreamError) -> None:
        up = self.up
        if up.is_closed:
            return
        self._note("upstream failed", error=str(error))
        self._fx.append(Abort(up.leg))
        up.lost()
        self._deadlines.clear("ping_up")
        self._fail(error, upstream=False)
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.finished or not self.up.is_closed:
            return
        if self.client_state is not C_CLOSED and self.client_state is not C_DETACHED:
            return
        self.finished = True
        self.client_state = C_CLOSED
        self._deadlines.clear_all()
        self._queue, self._deferred = [], []
        self._hold.clear()
        if self._rollover.active:
            self._fx.append(Abort(self._rollover.leg))
            self._rollover.reset()
        for leg in self._retiring:
            self._fx.append(Abort(leg))
        self._retiring.clear()
        self.record.connection_ended(
            close_code=self.close_code,
            close_reason=self.close_reason,
            upstream_close_code=self.up.close_code,
        )
        self._fx.append(Finished())

    # Keepalive

    def _keepalive_client(self, now: float) -> None:
        """Ping every interval; no pong within the timeout = dead peer."""
        if self.client_state is not C_OPEN and self.client_state is not C_CLOSING:
            return  # detached or gone: re-attach re-arms it
        if self._client_reads_paused:
            # Back-pressure: its pong may be unread in our socket; judge after resuming.
            self._ping_sent = None
        elif self._ping_sent is not None:
            if now - self._ping_sent >= self.config.ping_timeout:
                self._fx.append(Abort(CLIENT))
                return
        elif self.client_state is C_OPEN:
            self._ping_sent = now
            self._to_client(wire.encode(wire.PING, self._ping_payload, mask=False))
        self._deadlines.set("ping_client", now + self.config.ping_interval)

    def _keepalive_upstream(self, now: float) -> None:
        """Same keepalive upstream; a dead model is an upstream fault."""
        up = self.up
        if not up.is_open:
            return
        if up.reads_paused:
            up.ping_sent = None
        elif up.ping_sent is not None:
            if now - up.ping_sent >= self.config.ping_timeout:
                self._upstream_failed(UpstreamError("the model stopped answering pings"))
                return
        else:
            up.ping_sent = now
            self._fx.append(Write(up.leg, wire.encode(wire.PING, b"relay", mask=True)))
        self._deadlines.set("ping_up", now + self.config.ping_interval)
