"""The collaborators the session core asks, each through its public methods: keepalive,
client bounds, message reassembly, the turn gate's hook, and the rollover's legs.

The same behaviour end to end (a core fed bytes and time) is in test_core.py; these pin
each seam, so a change inside one shows up here first.
"""

from __future__ import annotations

import json

import pytest
from websockets.frames import CloseCode

from relay import wire
from relay.client_bounds import (
    INVALID_EVENT_BURST,
    INVALID_EVENTS_PER_SECOND,
    MAX_BLOCKED_CLIENT_BYTES,
    ClientBounds,
)
from relay.config import RelayConfig
from relay.conversation import Turn
from relay.effects import CLIENT, Abort, Close, Deadlines, Dial, Effect, Promote, Reading, Write
from relay.events import OUTPUT_AUDIO_TRANSCRIPT_DONE, TRANSCRIPTION_COMPLETED
from relay.keepalive import DEAD, PING, WAIT, Keepalive
from relay.rollover_legs import FORCED, NO_SWITCH, SWITCHED, RolloverLegs
from relay.turn_gate import TurnGate
from relay.upstream_leg import UpstreamLeg

# Keepalive


def test_keepalive_pings_then_declares_a_silent_peer_dead() -> None:
    alive = Keepalive(b"nonce")
    assert alive.due(0.0, 5.0, reads_paused=False, may_ping=True) == PING
    assert alive.due(4.9, 5.0, reads_paused=False, may_ping=True) == WAIT
    assert alive.due(5.0, 5.0, reads_paused=False, may_ping=True) == DEAD


def test_only_a_pong_with_our_payload_answers_the_ping() -> None:
    alive = Keepalive(b"nonce")
    alive.due(0.0, 5.0, reads_paused=False, may_ping=True)
    alive.pong(b"forged")
    assert alive.due(9.0, 5.0, reads_paused=False, may_ping=True) == DEAD
    alive.pong(b"nonce")
    assert alive.due(9.0, 5.0, reads_paused=False, may_ping=True) == PING


def test_a_leg_not_read_or_closing_is_not_judged_or_pinged() -> None:
    alive = Keepalive(b"nonce")
    alive.due(0.0, 5.0, reads_paused=False, may_ping=True)
    # Back-pressure: its pong may be unread in our socket; judged only after reading resumes.
    assert alive.due(99.0, 5.0, reads_paused=True, may_ping=True) == WAIT
    assert alive.due(100.0, 5.0, reads_paused=False, may_ping=False) == WAIT
    assert alive.sent is None


# Client bounds


def test_relay_bytes_for_a_blocked_client_are_bounded() -> None:
    bounds = ClientBounds()
    assert bounds.room_for(10 * MAX_BLOCKED_CLIENT_BYTES)  # a writable client: no bound
    bounds.writable(False)
    assert bounds.room_for(MAX_BLOCKED_CLIENT_BYTES)
    assert not bounds.room_for(1)
    bounds.writable(True)
    bounds.writable(False)
    assert bounds.room_for(MAX_BLOCKED_CLIENT_BYTES)  # drained: the count starts again


def test_invalid_events_get_a_burst_then_a_rate() -> None:
    bounds = ClientBounds()
    burst = int(INVALID_EVENT_BURST)
    assert all(bounds.answer_invalid(0.0) for _ in range(burst))
    assert not bounds.answer_invalid(0.0)
    # The bucket refills at the rate, not back to a whole burst at once.
    later = 1.0 / INVALID_EVENTS_PER_SECOND
    fresh = ClientBounds()
    for _ in range(burst):
        fresh.answer_invalid(0.0)
    assert fresh.answer_invalid(later)
    assert not fresh.answer_invalid(later)


def test_a_reattached_client_starts_writable_but_keeps_its_invalid_budget() -> None:
    bounds = ClientBounds()
    for _ in range(int(INVALID_EVENT_BURST)):
        bounds.answer_invalid(0.0)
    bounds.writable(False)
    bounds.reconnected()
    assert not bounds.blocked
    assert not bounds.answer_invalid(0.0)


# Message reassembly


def test_fragments_become_one_message_with_the_first_frames_opcode() -> None:
    parts = wire.Reassembly(max_size=10)
    assert parts.add(wire.TEXT, True, b"whole") == (wire.TEXT, b"whole")
    assert parts.add(wire.BINARY, False, b"ab") is None
    assert parts.active
    assert parts.add(wire.CONT, False, b"cd") is None
    assert parts.add(wire.CONT, True, b"ef") == (wire.BINARY, b"abcdef")
    assert not parts.active


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([(wire.CONT, True, b"x")], CloseCode.PROTOCOL_ERROR),
        ([(wire.TEXT, False, b"x"), (wire.TEXT, True, b"y")], CloseCode.PROTOCOL_ERROR),
        ([(wire.TEXT, False, b"x" * 6), (wire.CONT, True, b"y" * 5)], CloseCode.MESSAGE_TOO_BIG),
    ],
    ids=["stray continuation", "new message mid-message", "too big in all"],
)
def test_broken_fragmentation_is_a_framing_error(
    frames: list[tuple[int, bool, bytes]], code: int
) -> None:
    parts = wire.Reassembly(max_size=10)
    *leading, (opcode, fin, payload) = frames
    for frame in leading:
        assert parts.add(*frame) is None
    with pytest.raises(wire.FrameError) as caught:
        parts.add(opcode, fin, payload)
    assert caught.value.close_code == code


# The turn gate's hook


def test_the_gate_answers_a_participant_who_names_the_agent_or_follows_its_question() -> None:
    gate = TurnGate(wake_phrases=["Ava"], follow_ups=True)
    assert not gate.finished_turn(TRANSCRIPTION_COMPLETED, Turn("user", "lunch at noon"))
    assert gate.finished_turn(TRANSCRIPTION_COMPLETED, Turn("user", "ava, the agenda?"))
    assert not gate.finished_turn(OUTPUT_AUDIO_TRANSCRIPT_DONE, Turn("assistant", "Which one?"))
    assert gate.finished_turn(TRANSCRIPTION_COMPLETED, Turn("user", "the second"))
    assert (gate.heard, gate.answered) == (3, 2)


def test_the_gate_ignores_mismatched_or_missing_turns() -> None:
    gate = TurnGate(wake_phrases=["Ava"], follow_ups=False)
    assert not gate.finished_turn(TRANSCRIPTION_COMPLETED, None)
    assert not gate.finished_turn(TRANSCRIPTION_COMPLETED, Turn("assistant", "Ava"))
    assert gate.heard == 0


# Rollover legs


def rollover_legs() -> tuple[RolloverLegs, UpstreamLeg, list[Effect], Deadlines]:
    config = RelayConfig(token_secret="t" * 32, rollover_seconds=400, rollover_replay_seconds=0.5)
    up = UpstreamLeg(1, 1 << 20)
    up.opened()
    fx: list[Effect] = []
    deadlines = Deadlines()
    return RolloverLegs(config, up, fx, deadlines), up, fx, deadlines


def ready_standby(legs: RolloverLegs, fx: list[Effect], now: float) -> int:
    """Start a rollover at ``now`` and answer every set-up event of its standby."""
    assert not legs.due("rollover", now, leaving=False)
    (dial,) = [e for e in fx if isinstance(e, Dial)]
    assert legs.is_standby(dial.leg)
    legs.opened(b'{"type":"session.update"}', [])
    answers = [{"type": "session.created"}, {"type": "session.updated"}]
    data = b"".join(wire.encode(wire.TEXT, json.dumps(a).encode(), mask=False) for a in answers)
    assert legs.leg_data(dial.leg, data, now)
    fx.clear()
    return dial.leg


def test_a_rollover_is_armed_with_its_replay_window() -> None:
    legs, _, _, deadlines = rollover_legs()
    legs.arm(100.0)
    assert deadlines.get("rollover") == 500.0
    assert deadlines.get("replay") == 499.5


def test_a_ready_standby_waits_for_a_pause_then_takes_over() -> None:
    legs, up, fx, deadlines = rollover_legs()
    new = ready_standby(legs, fx, now=10.0)
    assert legs.switch(11.0, between_turns=False, resume_client=False) == NO_SWITCH
    assert fx == []
    assert legs.switch(12.0, between_turns=True, resume_client=True) == SWITCHED
    assert up.leg == new
    assert Promote(new) in fx
    assert Reading(CLIENT, True) in fx
    assert [e.leg for e in fx if isinstance(e, Write)] == [1]  # the old leg's close frame
    assert deadlines.get("abort:1") is not None
    assert legs.rollovers == 1
    assert legs.drop_truncates


def test_at_its_deadline_a_rollover_is_forced_mid_turn() -> None:
    legs, _, fx, _ = rollover_legs()
    ready_standby(legs, fx, now=0.0)
    assert legs.due("rollover_force", 200.0, leaving=False)
    assert legs.switch(200.0, between_turns=False, resume_client=False) == FORCED
    assert not legs.forced


def test_the_retired_leg_is_closed_once_the_model_closes_it() -> None:
    legs, _, fx, deadlines = rollover_legs()
    ready_standby(legs, fx, now=0.0)
    legs.switch(1.0, between_turns=True, resume_client=False)
    fx.clear()
    close = wire.encode(wire.CLOSE, wire.close_payload(1000, ""), mask=False)
    assert not legs.leg_data(1, close, 2.0)
    assert fx == [Close(1)]
    legs.leg_lost(1, 2.5)
    assert deadlines.get("abort:1") is None


def test_a_failed_standby_is_dropped_and_retried_later_and_no_rollover_while_leaving() -> None:
    legs, _, fx, deadlines = rollover_legs()
    legs.due("rollover", 0.0, leaving=True)
    assert fx == []
    new = ready_standby(legs, fx, now=1.0)
    legs.leg_lost(new, 2.0)
    assert Abort(new) in fx
    assert not legs.standby.active
    assert deadlines.get("rollover") == 2.0 + legs.wait


# What a dialling upstream leg holds


def test_frames_for_a_dialling_leg_are_held_in_order_and_dropped_if_it_is_lost() -> None:
    leg = UpstreamLeg(1, 1 << 20)
    assert leg.hold([b"ab", b"c"]) == 3
    assert leg.hold([b"d"]) == 4
    assert leg.take_pending() == [b"ab", b"c", b"d"]
    assert leg.pending_bytes == 0
    leg.hold([b"late"])
    leg.lost()
    assert leg.take_pending() == []
