"""SessionFeatures: what a session's features make of the model's recorded events.

A session core (``relay.core``) forwards the model's events and records them; the features
a session may have react to some of them, each through its own collaborator: the meeting
(``relay.meeting``: who spoke a committed turn; participant, speech and chat events), the
turn gate (``relay.turn_gate``: in ``addressed`` mode, whether a finished turn is for the
agent), the bill (``relay.usage_meter``: each ``response.done`` and its deadline), the turn
timings (``relay.turn_timing``) and the relay's tools (``ToolEvent`` for the tool runner).
The core asks this object once per recorded event, per meeting event and when the bill's
deadline is due; audio never comes here (the core's fast path skips it).

Sans I/O like the core: it writes its effects and the bill's deadline into the core's own
(shared at construction, as ``relay.rollover_legs`` does) and is told the time.
"""

from __future__ import annotations

from typing import Any, Final

from relay import wire
from relay.effects import Deadlines, Effect, Happened, LeaveCall, Timer, ToolEvent, Write
from relay.events import INPUT_COMMITTED, RESPONSE_DONE, TOOL_EVENT_TYPES
from relay.meeting import Meeting, MeetingPolicy
from relay.meeting_events import MeetingEvent
from relay.record_items import ConnectionRecord
from relay.turn_gate import ANSWER_EVENT, GATED_TYPES, TurnGate
from relay.turn_timing import TIMED_TYPES, TurnTimings
from relay.upstream_leg import UpstreamLeg
from relay.usage_meter import Step, UsageMeter

#: The deadline name of the bill (the core hands it back to :meth:`SessionFeatures.due`).
BILL: Final = "bill"


class SessionFeatures:
    """One session's meeting, turn gate, bill, turn timings and tool events."""

    def __init__(self, up: UpstreamLeg, fx: list[Effect], deadlines: Deadlines) -> None:
        """Work on the core's current leg ``up``, effects ``fx`` and ``deadlines``."""
        self._up = up
        self._fx = fx
        self._deadlines = deadlines
        #: Hand the tool runner the events it follows (:meth:`configure`).
        self.watch_tools = False
        #: Who decides when the agent answers: None, the model; else this gate.
        self.gate: TurnGate | None = None
        #: The session's bill; None: no limits.
        self.meter: UsageMeter | None = None
        #: The meeting's roster and speakers, from Recall's real-time events.
        self.meeting = Meeting()
        #: When each user turn's answer arrived (asked for with ``relay.latency.get``).
        self.timings = TurnTimings()

    def configure(
        self,
        *,
        watch_tools: bool,
        gate: TurnGate | None,
        meter: UsageMeter | None,
        meeting: MeetingPolicy | None,
    ) -> None:
        """The session's setup (see ``SessionCore.configure``); arms the bill's deadline."""
        self.watch_tools = watch_tools
        self.gate = gate
        self.meter = meter
        if meter is not None:
            self._deadlines.set(BILL, meter.deadline)
        if meeting is not None:
            self.meeting.policy = meeting

    def recorded(self, kind: str, payload: bytes, record: ConnectionRecord, now: float) -> None:
        """A recorded model event of type ``kind``: recorded on ``record``, then reacted to."""
        if kind == INPUT_COMMITTED:  # who spoke the turn
            record.speaker_hint = self.meeting.turn_speaker(now)
        record.on_upstream_event(kind, payload)
        if kind in TIMED_TYPES:
            self.timings.observe(kind, payload, now)
        gate = self.gate
        if (
            gate is not None
            and kind in GATED_TYPES
            and gate.finished_turn(
                kind, record.conversation.newest(), hinted=self.meeting.humans == 1
            )
            and not record.turn_taking.responses_in_progress
            and self._up.is_open
        ):
            # The turn is for the agent and no answer is coming: ask for one.
            self._send(ANSWER_EVENT)
            self.timings.answer_requested(now)
            self._note("turn answered", turns_heard=gate.heard)
        if self.meter is not None and kind == RESPONSE_DONE:
            self._bill(self.meter.response_done(payload, now, busy=self._busy(record)), now)
        if self.watch_tools and kind in TOOL_EVENT_TYPES:
            self._fx.append(ToolEvent(kind, payload))

    def meeting_event(
        self, event: MeetingEvent, record: ConnectionRecord, now: float
    ) -> list[bytes]:
        """A participant, speech or chat event of the session's meeting: the events for the
        model (what ``relay.meeting`` says it hears, and an answer to a chat line when the
        turn taking would answer it said aloud)."""
        reaction = self.meeting.on_event(event, now)
        send = list(reaction.items)
        chat = reaction.chat
        if chat is not None:
            record.chat_turn(chat.sender, chat.text)
            hinted = chat.direct or self.meeting.humans == 1
            answer = self.gate is None or self.gate.user_said(chat.text, hinted=hinted)
            if answer and not record.turn_taking.responses_in_progress:
                send.append(ANSWER_EVENT)
        return send

    def due(self, name: str, record: ConnectionRecord, now: float) -> None:
        """Deadline ``name`` of this object's came (only :data:`BILL`)."""
        if name == BILL and self.meter is not None:
            self._bill(self.meter.tick(now, busy=self._busy(record)), now)

    # Internals

    def _busy(self, record: ConnectionRecord) -> bool:
        return not self._up.is_open or record.turn_taking.responses_in_progress > 0

    def _bill(self, step: Step, now: float) -> None:
        """Carry out the meter's step (relay.usage_meter): its event, the leave, its timer."""
        assert self.meter is not None
        if step.send is not None and self._up.is_open:
            self._send(step.send)
        if step.reached is not None:
            self._note("bill limit reached", limit=step.reached.value)
        if step.leave is not None:
            self._fx.append(LeaveCall(step.leave.value))
        self._deadlines.set(BILL, at := self.meter.deadline)
        if at < self._deadlines.armed:  # the fast path calls no _take: arm it here
            self._deadlines.armed = at
            self._fx.append(Timer(at))

    def _send(self, event: bytes) -> None:
        self._fx.append(Write(self._up.leg, wire.encode(wire.TEXT, event, mask=True)))

    def _note(self, what: str, **fields: Any) -> None:
        self._fx.append(Happened(what, fields))
