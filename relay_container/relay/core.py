"""SessionCore: one relayed Realtime session as a state machine, sans I/O.

Bytes and time in; bytes for each leg and effects out (``relay.effects``). The core owns
both WebSocket legs after their opening handshakes. ``relay.core_legs.LegCore`` holds the
legs' states (one enum per leg), closing handshakes, faults and keepalive; this module adds
what moves between them: forwarding (client events checked by ``ClientEvents``, model
events passed through unchanged and recorded by the connection's ``ConnectionRecord``),
the bounded queue before the model is ready (held on its ``UpstreamLeg``), and the
collaborators it asks: ``SeedAcks`` (resume), ``HoldBuffer`` (re-attach),
``RolloverLegs`` (rollover), ``SessionFeatures`` (what the meeting, the turn gate, the bill,
the turn timings and the tool runner make of each recorded model event).

The shell (``relay.session``) calls an input for every socket event and timer and carries
out what it returns; an input that cannot happen in the current state raises
``TransitionError``. The core never reads a clock, logs or touches a socket. On the
per-message path an input returns plain bytes (no effect object, no JSON decode).

Leaving (migration): :meth:`SessionCore.leave` asks the session to move to another task
at its next turn boundary (a :class:`~relay.effects.Handover`), or at a deadline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from websockets.frames import CloseCode

from relay import wire
from relay.client_leg import C_CLOSING, C_DETACHED, C_OPEN, ClientState
from relay.conversation import Turn, seed_events
from relay.core_client import ClientCore
from relay.effects import (
    CLIENT,
    Abort,
    Dial,
    Effect,
    Reading,
    ToolEvent,
    Write,
)
from relay.errors import SessionTooLongError, TransitionError, UpstreamError
from relay.events import (
    AUDIO_DELTA_HEADS,
    RESPONSE_CREATED,
    UNRECORDED_HEADS,
    recorded_type,
    tool_event_type,
)
from relay.meeting import MeetingPolicy
from relay.meeting_events import MeetingEvent
from relay.rollover_legs import DEADLINES as ROLLOVER_DEADLINES
from relay.session_features import BILL
from relay.turn_gate import TurnGate
from relay.usage_meter import UsageMeter

_TEXT: Final = wire.TEXT
_BINARY: Final = wire.BINARY
_PING: Final = wire.PING
_PONG: Final = wire.PONG
_encode: Final = wire.encode


class SessionCore(ClientCore):
    """One session's two legs and what happens between them."""

    # Read-only views

    @property
    def detached(self) -> bool:
        """The client vanished and may re-attach."""
        return self.client.state is C_DETACHED

    @property
    def client_state(self) -> ClientState:
        """Where the client leg is."""
        return self.client.state

    @property
    def held_frames(self) -> int:
        """Model frames held for a detached client."""
        return self._hold.frames

    @property
    def rollovers(self) -> int:
        """Switches to a fresh model session so far."""
        return self._moves.rollovers

    @property
    def upstream_close_code(self) -> int | None:
        """The close code the current model session ended with, if it ended."""
        return self.up.close_code

    # Inputs: lifecycle

    def start(self, now: float) -> list[Effect]:
        """The 101 went out: dial the model, arm the session's timers."""
        self._now = now
        self._deadlines.set("expire", now + self.config.max_session_seconds)
        self._deadlines.set("ping_client", now + self.config.ping_interval)
        self._fx.append(Dial(self.up.leg, load_history=self._resume))
        return self._take()

    def shutdown(self, code: int, reason: str, now: float) -> list[Effect]:
        """Close both legs; the client gets ``code`` and ``reason`` (a detached one, nothing)."""
        self._now = now
        self.holdable = False
        if self.client.state is C_DETACHED:
            self._hold.clear()
        self._close_client(code, reason)
        self._close_upstream(CloseCode.NORMAL_CLOSURE, "client session ended")
        self._maybe_finish()
        return self._take()

    def stop_holding(self, now: float) -> list[Effect]:
        """Drain: nobody may re-attach any more; a detached session ends now."""
        self._now = now
        self.holdable = False
        if self.client.state is C_DETACHED:
            self._hold_expired("the relay is draining")
        return self._take()

    def leave(self, now: float, within: float) -> list[Effect]:
        """This task is leaving: hand the session over at its next turn boundary, or at
        ``now + within`` at the latest."""
        self._now = now
        self.holdable = False
        self.leaving = True
        if self.client.state is C_DETACHED:
            self._hold_expired("the relay is leaving")
        elif self.client.state is C_OPEN:
            self._deadlines.set("leave", now + within)
            self._maybe_hand_over()
        return self._take()

    def configure(
        self,
        agent_update: bytes,
        *,
        watch_tools: bool,
        gate: TurnGate | None = None,
        meter: UsageMeter | None = None,
        meeting: MeetingPolicy | None = None,
    ) -> None:
        """The session's own agent (a bot's persona merged in), whether it runs relay tools,
        who decides when it answers (``gate``: the relay, per finished turn; None: the
        model), its bill (``meter``) and its meeting policy; taken before the model is ready,
        used by every upstream leg after (``relay.session_features``)."""
        if not self.up.is_dialing:
            raise TransitionError("the agent is configured before the model is ready")
        self._agent_update = agent_update
        self.watch_tools = watch_tools
        self.features.configure(watch_tools=watch_tools, gate=gate, meter=meter, meeting=meeting)

    def meeting_event(self, event: MeetingEvent, now: float) -> list[Effect]:
        """A participant, speech or chat event of this session's meeting: what
        ``relay.meeting`` says the model hears, and an answer to a chat line when the turn
        taking would answer it said aloud."""
        sends = self.features.meeting_event(event, self.record, now)
        return [fx for item in sends for fx in self.send_upstream(item, now)]

    def send_upstream(self, event: bytes, now: float) -> list[Effect]:
        """An event of the relay's own for the model (a tool's output, a greeting): after
        what the client queued while the model connects, dropped once the model is gone."""
        self._now = now
        frame = _encode(_TEXT, event, mask=True)
        if self.up.is_open:
            self._fx.append(Write(self.up.leg, frame))
        elif self.up.is_dialing:
            self.up.hold([frame])
        return self._take()

    def tick(self, now: float) -> list[Effect]:
        """The timer fired: do what is due."""
        self._now = now
        self._deadlines.armed = math.inf
        for name in self._deadlines.pop_due(now):
            if self.finished:
                break
            self._due(name, now)
        return self._take()

    # Inputs: the upstream legs

    def upstream_opened(
        self, leg: int, history: Sequence[Turn], now: float, extra_seeds: Sequence[bytes] = ()
    ) -> list[Effect]:
        """Upstream leg ``leg`` finished its handshake (``history``: a resume's turns;
        ``extra_seeds``: more conversation items to replay after them, e.g. tool calls)."""
        self._now = now
        if self._moves.is_standby(leg):
            self._moves.opened(self._agent_update, seed_events(self.record.conversation.turns()))
            return self._take()
        if leg != self.up.leg or not self.up.is_dialing:
            self._fx.append(Abort(leg))  # a leg nobody waits for any more
            return self._take()
        self.up.opened()
        self._deadlines.set("ping_up", now + self.config.ping_interval)
        self._moves.arm(now)
        seeds: list[str] = []
        if history:
            self.record.conversation.extend(history)
            seeds = seed_events(history)
            self._note("session resumed", seeded_turns=len(seeds))
        # 1. Our agent configuration first, so the client's own updates apply on top.
        frames = [_encode(_TEXT, self._agent_update, mask=True)]
        # 2. The conversation so far (resume); its acknowledgements are not forwarded.
        frames.extend(_encode(_TEXT, seed.encode(), mask=True) for seed in seeds)
        frames.extend(_encode(_TEXT, seed, mask=True) for seed in extra_seeds)
        self._seeds.expect(len(seeds) + len(extra_seeds))
        # 3. Then what the client sent meanwhile, in order.
        frames.extend(self.up.take_pending())
        self._fx.append(Write(leg, b"".join(frames)))
        return self._take()

    def dial_failed(self, leg: int, error: UpstreamError, now: float) -> list[Effect]:
        """Dialling upstream leg ``leg`` failed."""
        self._now = now
        if self._moves.is_standby(leg):
            self._moves.lost(str(error), now)
        elif leg == self.up.leg and self.up.is_dialing:
            self._upstream_failed(error)
        return self._take()

    def upstream_data(self, data: bytes, now: float) -> bytes | list[Effect]:
        """Bytes from the current model session. Returns the client's bytes when that is all."""
        self._now = now
        up = self.up
        try:
            frames, clean = up.reader.feed(data)
        except wire.FrameError as exc:
            self._upstream_failed(UpstreamError(f"the model broke WebSocket framing: {exc}"))
            return self._take()
        if not frames:
            return b""
        record = self.record
        for opcode, fin, payload in frames:
            # A bounded look at the first bytes; audio deltas are never parsed.
            if (
                opcode == _TEXT
                and fin
                and not payload.startswith(UNRECORDED_HEADS)
                and (kind := recorded_type(payload)) is not None
            ):
                self.features.recorded(kind, payload, record, now)  # recorded, then reacted to
                if kind == RESPONSE_CREATED:
                    self._moves.drop_truncates = False
                elif self._moves.standby.ready or self.leaving:
                    self._maybe_switch()
                    self._maybe_hand_over()
            elif (
                self.timings.awaiting_audio
                and opcode == _TEXT
                and payload.startswith(AUDIO_DELTA_HEADS)
            ):
                self.timings.audio_started(now)  # once a turn: its answer's first audio
            elif (
                self.watch_tools
                and opcode == _TEXT
                and (kind := tool_event_type(payload)) is not None
            ):
                self._fx.append(ToolEvent(kind, payload))
        if (
            clean
            and self.client.state is C_OPEN
            and not self._seeds.pending
            and not self.client.deferred
            and not self._fx
        ):
            # Exactly complete data frames: the same bytes are valid for the client (both
            # directions from a server are unmasked).
            self.client.in_fragment = not frames[-1][1]
            self.frames_down += len(frames)
            self.bytes_down += len(data)
            return data
        self._upstream_frames(frames)
        return self._take()

    def leg_data(self, leg: int, data: bytes, now: float) -> list[Effect]:
        """Bytes from an upstream leg that is not the current one (standby or retiring)."""
        self._now = now
        if self._moves.leg_data(leg, data, now):
            self._maybe_switch()
        return self._take()

    def upstream_lost(self, leg: int, now: float) -> list[Effect]:
        """Upstream leg ``leg``'s TCP connection ended."""
        self._now = now
        if leg == self.up.leg:
            if self.up.is_open and not self.up.close_sent and self.up.close_code is None:
                self.up.close_code = CloseCode.ABNORMAL_CLOSURE
                self._note("upstream failed", error="lost the connection to the model")
                self._fail(UpstreamError("lost the connection to the model"), upstream=False)
            self.up.lost()
            self._deadlines.clear("ping_up")
            self._deadlines.clear(f"abort:{leg}")
            self._maybe_finish()
        else:
            self._moves.leg_lost(leg, now)
        return self._take()

    def upstream_writable(self, writable: bool, now: float) -> list[Effect]:
        """The model's socket buffer filled (False) or drained (True): pace the client."""
        self._now = now
        self.client.reads_paused = not writable
        if self.client.state is C_OPEN or self.client.state is C_CLOSING:
            self._fx.append(Reading(CLIENT, writable))
        return self._take()

    # Internals

    def _upstream_frames(self, frames: list[wire.Frame]) -> None:
        """The model's frames the slow way: control frames, acks to swallow, a client that is
        detached, closing or not to be interleaved with."""
        out: list[bytes] = []
        for opcode, fin, payload in frames:
            if opcode <= _BINARY:
                if opcode == _TEXT and fin and self._seeds.swallow(payload):
                    continue
                if self.client.state is C_DETACHED:
                    if not self._hold.hold(opcode, fin, payload):
                        self._note("re-attach buffer overflow")
                        self._hold_expired("buffered more than the re-attach bound")
                        return
                elif self.client.state is C_OPEN:
                    out.append(_encode(opcode, payload, mask=False, fin=fin))
                    self.frames_down += 1
                    self.bytes_down += len(payload)
                    self.client.in_fragment = not fin
                    if fin and self.client.deferred:
                        out.extend(self.client.deferred)
                        self.client.deferred.clear()
            elif opcode == _PING:
                if self.up.is_open:
                    self._fx.append(Write(self.up.leg, _encode(_PONG, payload, mask=True)))
            elif opcode == _PONG:
                self.up.keepalive.reset()  # any pong: the model is alive
            else:
                if out:
                    self._fx.append(Write(CLIENT, b"".join(out)))
                    out = []
                self._upstream_close_received(payload)
                break
        if out:
            self._fx.append(Write(CLIENT, b"".join(out)))

    def _due(self, name: str, now: float) -> None:
        if name == "ping_client":
            self._keepalive_client(now)
        elif name == "ping_up":
            self._keepalive_upstream(now)
        elif name == "expire":
            limit = self.config.max_session_seconds
            self._fail(SessionTooLongError(f"the session reached the relay's limit of {limit:g} s"))
        elif name == "client_close":
            self._fx.append(Abort(CLIENT))
        elif name == "client_stalled":
            self._cut_client("the client stopped reading")
        elif name == "hold":
            self._hold_expired("no re-attach within the grace period")
        elif name in ROLLOVER_DEADLINES:
            if self._moves.due(name, now, leaving=self.leaving):
                self._maybe_switch()
        elif name == "leave":
            self._hand_over()
        elif name == BILL:
            self.features.due(name, self.record, now)
        elif name.startswith("abort:"):
            self._fx.append(Abort(int(name[6:])))

    # Leaving
