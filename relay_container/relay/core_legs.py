"""The two legs of a session core: how they close, fail and stay alive.

``LegCore`` is the part of ``relay.core.SessionCore`` that knows how each leg opens,
stays alive and ends (RFC 6455 §5.5.2 pings, asking each leg's ``Keepalive``; §7 closing
handshakes; the mapping of faults to close codes: 1008 policy, 1009 too big, 1011
upstream failure, 1001 going away), and when the session is finished. Each leg's state is
its own object (``relay.client_leg.ClientLeg``, ``relay.upstream_leg.UpstreamLeg``).
``SessionCore`` adds what moves between the legs (forwarding, re-attach, rollover,
leaving). Sans I/O, like the rest of the core: its outputs are effects
(``relay.effects``) collected per input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from websockets.frames import CloseCode

from relay import wire
from relay.client_events import ClientEvents
from relay.client_leg import C_CLOSED, C_CLOSING, C_DETACHED, C_OPEN, ClientLeg
from relay.conversation import Turn
from relay.effects import CLIENT, Abort, Close, Deadlines, Effect, Finished, Happened, Timer, Write
from relay.errors import ClientAbuseError, MessageTooBigError, RelayError, UpstreamError
from relay.events import error_event
from relay.keepalive import DEAD, PING
from relay.reattach import HoldBuffer
from relay.record_items import ConnectionRecord
from relay.resume import SeedAcks
from relay.rollover_legs import RolloverLegs
from relay.session_features import SessionFeatures
from relay.upstream_leg import UpstreamLeg

if TYPE_CHECKING:  # the core reads the settings it is given; it never loads them
    from relay.config import RelayConfig

#: A record factory: the turns known so far → the record of a new client connection.
RecordFactory = Callable[[Sequence[Turn]], ConnectionRecord]


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
        self.record = new_record(())
        self._deadlines = Deadlines()
        self._fx: list[Effect] = []
        self._now = 0.0
        self.finished = False
        self.leaving = False
        #: False once the relay drains or leaves: a vanished client then ends the session.
        self.holdable = config.reattach_seconds > 0
        self.client = ClientLeg(config.max_frame_bytes, ping_payload)
        # Upstream legs: the current one, a standby (rollover), retiring ones.
        self.up = UpstreamLeg(1, config.max_upstream_frame_bytes)
        self._seeds = SeedAcks()
        self._hold = HoldBuffer(config.reattach_buffer_bytes)
        self._moves = RolloverLegs(config, self.up, self._fx, self._deadlines)
        # The meeting, turn gate, bill, timings and tool events (``configure``).
        self.features = SessionFeatures(self.up, self._fx, self._deadlines)
        self.meeting = self.features.meeting
        self.timings = self.features.timings  # read on the fast path: one lookup
        #: Hand the tool runner the events it follows (also read on the fast path).
        self.watch_tools = False
        # Outcome and counters.
        self.close_code: int | None = None
        self.close_reason = ""
        self.detached_at = 0.0
        self.frames_up = self.frames_down = self.bytes_up = self.bytes_down = 0
        self.reattached = 0

    # Outputs

    def _take(self) -> list[Effect]:
        """This input's effects, with the timer re-armed when the earliest deadline moved."""
        earliest = self._deadlines.earliest()
        if earliest != self._deadlines.armed:
            self._deadlines.armed = earliest
            self._fx.append(Timer(earliest))
        fx = self._fx.copy()  # the list itself is shared with the rollover legs
        self._fx.clear()
        return fx

    def _note(self, what: str, **fields: Any) -> None:
        self._fx.append(Happened(what, fields))

    def _to_client(self, data: bytes) -> None:
        """Relay bytes for the client, bounded while the client does not read."""
        if not self.client.bounds.room_for(len(data)):
            self._cut_client("the client does not read what it is sent")
            return
        self._fx.append(Write(CLIENT, data))

    def _client_event(self, event: bytes) -> None:
        """An event of the relay's own for the client; never inside a model message."""
        if self.client.state is not C_OPEN:
            return
        frame = wire.encode(wire.TEXT, event, mask=False)
        if self.client.in_fragment:
            self.client.deferred.append(frame)
            if len(self.client.deferred) > 64:
                self._cut_client("too many relay events waiting for the client")
        else:
            self._to_client(frame)

    def _invalid_event(self, error_frame: bytes) -> None:
        """Answer an invalid event; a client that keeps sending them is cut."""
        if self.client.bounds.answer_invalid(self._now):
            self._client_event(error_frame)
        else:
            self._note("client cut", reason="invalid events")
            self._fail(ClientAbuseError("too many invalid events: the relay closes the session"))

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
        self.client.bounds.blocked = False  # what follows is not queued: the socket is dropped
        if self.client.state is C_OPEN:
            self.client.state = C_CLOSING
            self.close_code, self.close_reason = CloseCode.POLICY_VIOLATION, reason
        self.client.reader = None
        self._fx.append(Abort(CLIENT))
        self._note("client cut", reason=reason)
        self._close_upstream(CloseCode.NORMAL_CLOSURE, "client session ended")

    def _fail_framing(self, code: int, reason: str) -> None:
        """The client broke framing or sent too much (RFC 6455 §7.1.7: fail the connection).

        A too-big message still gets an error event saying so. Then the close frame, and
        the socket is closed at once: what follows in the stream is not read any more.
        """
        self.client.reader = None
        if code == CloseCode.MESSAGE_TOO_BIG:
            self._fail(MessageTooBigError(reason))
        else:
            self._close_client(code, reason)
            self._close_upstream(CloseCode.NORMAL_CLOSURE, "client session ended")
        self._fx.append(Close(CLIENT))

    def _close_client(self, code: int, reason: str) -> None:
        if self.client.state is not C_OPEN:
            return
        self.client.state = C_CLOSING
        self.close_code, self.close_reason = code, reason
        self.client.deferred.clear()
        self._to_client(wire.encode(wire.CLOSE, wire.close_payload(code, reason), mask=False))
        self._deadlines.set("client_close", self._now + self.config.close_timeout)

    def _client_close_received(self, payload: bytes) -> None:
        try:
            code, reason = wire.parse_close(payload)
        except wire.FrameError as exc:
            self._fail_framing(exc.close_code, str(exc))
            return
        if self.client.state is C_OPEN:
            self.client.state = C_CLOSING
            self.close_code, self.close_reason = code, reason
            self._fx.append(Write(CLIENT, wire.encode(wire.CLOSE, payload, mask=False)))
        # A server closes the TCP connection once both close frames are exchanged (§7.1.1).
        self.client.reader = None
        self._fx.append(Close(CLIENT))
        self._close_upstream(
            CloseCode.NORMAL_CLOSURE if code == CloseCode.NO_STATUS_RCVD else code, reason
        )

    def _close_upstream(self, code: int, reason: str) -> None:
        up = self.up
        if up.is_dialing:
            up.lost()
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
        if self.client.state is not C_CLOSED and self.client.state is not C_DETACHED:
            return
        self.finished = True
        self.client.state = C_CLOSED
        self._deadlines.clear_all()
        self.client.deferred.clear()
        self._hold.clear()
        self._moves.finish()
        self.record.connection_ended(
            close_code=self.close_code,
            close_reason=self.close_reason,
            upstream_close_code=self.up.close_code,
        )
        self._fx.append(Finished())

    # Keepalive

    def _keepalive_client(self, now: float) -> None:
        """Ping every interval; no pong within the timeout = dead peer."""
        state = self.client.state
        if state is not C_OPEN and state is not C_CLOSING:
            return  # detached or gone: re-attach re-arms it
        due = self.client.keepalive.due(
            now,
            self.config.ping_timeout,
            reads_paused=self.client.reads_paused,
            may_ping=state is C_OPEN,
        )
        if due == DEAD:
            self._fx.append(Abort(CLIENT))
            return
        if due == PING:
            self._to_client(wire.encode(wire.PING, self.client.keepalive.payload, mask=False))
        self._deadlines.set("ping_client", now + self.config.ping_interval)

    def _keepalive_upstream(self, now: float) -> None:
        """Same keepalive upstream; a dead model is an upstream fault."""
        up = self.up
        if not up.is_open:
            return
        due = up.keepalive.due(
            now, self.config.ping_timeout, reads_paused=up.reads_paused, may_ping=True
        )
        if due == DEAD:
            self._upstream_failed(UpstreamError("the model stopped answering pings"))
            return
        if due == PING:
            self._fx.append(Write(up.leg, wire.encode(wire.PING, up.keepalive.payload, mask=True)))
        self._deadlines.set("ping_up", now + self.config.ping_interval)
