"""relay.session_features, sans I/O: what the meeting, turn gate, bill, timings and tool
events make of the model's recorded events, through the collaborator's public methods."""

from __future__ import annotations

import json

from relay import wire
from relay.bill import Bill
from relay.effects import Deadlines, Effect, Happened, LeaveCall, Timer, ToolEvent, Write
from relay.events import RESPONSE_DONE, TRANSCRIPTION_COMPLETED
from relay.meeting_events import Kind, MeetingEvent, Participant
from relay.record_items import ConnectionRecord
from relay.recorder import NullRecorder
from relay.session_features import BILL, SessionFeatures
from relay.turn_gate import ANSWER_EVENT, TurnGate
from relay.upstream_leg import UpstreamLeg
from relay.usage_meter import Spent, UsageMeter


def features(*, open_: bool = True) -> tuple[SessionFeatures, UpstreamLeg, list[Effect], Deadlines]:
    up = UpstreamLeg(1, 1 << 20)
    if open_:
        up.opened()
    fx: list[Effect] = []
    deadlines = Deadlines()
    return SessionFeatures(up, fx, deadlines), up, fx, deadlines


def record() -> ConnectionRecord:
    return NullRecorder().connection_started(
        session_id="s", connection_id="c", model="m", history=()
    )


def transcript(text: str) -> bytes:
    return json.dumps(
        {"type": TRANSCRIPTION_COMPLETED, "item_id": "item_1", "transcript": text}
    ).encode()


def sent(fx: list[Effect]) -> list[bytes]:
    """The events written upstream, unmasked."""
    out: list[bytes] = []
    for effect in fx:
        if isinstance(effect, Write):
            frames, _ = wire.FrameReader(masked=True, max_size=1 << 20).feed(effect.data)
            out.extend(payload for _, _, payload in frames)
    return out


def test_the_gate_asks_for_an_answer_only_for_a_turn_meant_for_the_agent() -> None:
    feats, _, fx, _ = features()
    feats.configure(
        watch_tools=False,
        gate=TurnGate(wake_phrases=["Ava"], follow_ups=False),
        meter=None,
        meeting=None,
    )
    rec = record()
    feats.recorded(TRANSCRIPTION_COMPLETED, transcript("lunch at noon"), rec, 1.0)
    assert sent(fx) == []
    feats.recorded(TRANSCRIPTION_COMPLETED, transcript("Ava, the agenda?"), rec, 2.0)
    assert sent(fx) == [ANSWER_EVENT]
    assert any(isinstance(e, Happened) and e.what == "turn answered" for e in fx)
    assert [turn.text for turn in rec.conversation.turns()] == ["lunch at noon", "Ava, the agenda?"]


def test_no_answer_is_asked_of_a_model_that_is_not_open() -> None:
    feats, _, fx, _ = features(open_=False)
    feats.configure(
        watch_tools=False,
        gate=TurnGate(wake_phrases=["Ava"], follow_ups=False),
        meter=None,
        meeting=None,
    )
    feats.recorded(TRANSCRIPTION_COMPLETED, transcript("Ava, the agenda?"), record(), 2.0)
    assert fx == []


def test_the_bill_arms_its_deadline_warns_then_leaves() -> None:
    feats, _, fx, deadlines = features()
    bill = Bill(max_minutes=10, warn_minutes_before=1, goodbye_linger_seconds=2)
    meter = UsageMeter(bill, "gpt-realtime-2.1", spent=Spent(), now=0.0)
    feats.configure(watch_tools=False, gate=None, meter=meter, meeting=None)
    assert deadlines.get(BILL) == 540.0
    rec = record()
    feats.due(BILL, rec, 540.0)  # the warning
    assert len(sent(fx)) == 1
    assert any(isinstance(e, Timer) and e.at == 600.0 for e in fx)
    fx.clear()
    feats.due(BILL, rec, 600.0)  # the goodbye
    assert json.loads(sent(fx)[0])["type"] == "response.create"
    assert any(isinstance(e, Happened) and e.what == "bill limit reached" for e in fx)
    fx.clear()
    done = {"type": RESPONSE_DONE, "response": {"status": "completed", "usage": {}}}
    feats.recorded(RESPONSE_DONE, json.dumps(done).encode(), rec, 601.0)
    feats.due(BILL, rec, 700.0)
    assert [e for e in fx if isinstance(e, LeaveCall)] == [LeaveCall("max_minutes")]


def test_tool_events_reach_the_runner_only_when_the_session_runs_tools() -> None:
    done = json.dumps({"type": RESPONSE_DONE, "response": {"status": "completed"}}).encode()
    for watch in (False, True):
        feats, _, fx, _ = features()
        feats.configure(watch_tools=watch, gate=None, meter=None, meeting=None)
        feats.recorded(RESPONSE_DONE, done, record(), 1.0)
        assert [e for e in fx if isinstance(e, ToolEvent)] == (
            [ToolEvent(RESPONSE_DONE, done)] if watch else []
        )


def test_a_chat_line_is_told_to_the_model_and_answered_when_the_turn_taking_would() -> None:
    def event(kind: Kind, ident: int, name: str, text: str = "") -> MeetingEvent:
        who = Participant(id=str(ident), name=name)
        return MeetingEvent(
            kind=kind, session_id="s", bot_id="b", participant=who, bot_name="Ava", text=text
        )

    # Two people in the meeting: a gated agent answers only a line meant for it.
    for gate, answered in ((None, True), (TurnGate(wake_phrases=["Ava"], follow_ups=False), False)):
        feats, _, fx, _ = features()
        feats.configure(watch_tools=False, gate=gate, meter=None, meeting=None)
        rec = record()
        feats.meeting_event(event("join", 1, "Grace"), rec, 0.0)
        feats.meeting_event(event("join", 2, "Linus"), rec, 0.0)
        send = feats.meeting_event(event("chat", 1, "Grace", "hi all"), rec, 1.0)
        assert fx == []  # the core sends them (held while the model connects)
        assert (ANSWER_EVENT in send) is answered
        assert b"hi all" in send[0]
        assert [turn.text for turn in rec.conversation.turns()][-1:] == ["hi all"]
