"""The session core's collaborators, each on its own: hold buffer, seed acks, rollover, legs."""

from __future__ import annotations

import json

import pytest

from relay import wire
from relay.client_events import ClientEvents, is_plain_append
from relay.effects import Deadlines
from relay.errors import TransitionError
from relay.policy import SessionPolicy
from relay.reattach import HoldBuffer
from relay.resume import SeedAcks
from relay.rollover import RetiringLeg, Rollover, StandbyState
from relay.upstream_leg import UpstreamLeg, UpstreamState


def server(event: dict[str, str]) -> bytes:
    return wire.encode(wire.TEXT, json.dumps(event).encode(), mask=False)


# HoldBuffer


def test_the_hold_buffer_keeps_frames_in_order_within_its_bound() -> None:
    hold = HoldBuffer(limit=100)
    hold.start(mid_message=False)
    assert hold.hold(wire.TEXT, True, b"a" * 40)
    assert hold.hold(wire.TEXT, True, b"b" * 40)
    assert not hold.hold(wire.TEXT, True, b"c" * 40)  # past the bound: the session must end
    frames = hold.release()
    assert [wire.FrameReader(masked=False, max_size=999).feed(f)[0][0][2][:1] for f in frames] == [
        b"a",
        b"b",
        b"c",
    ]
    assert hold.frames == 0
    assert hold.size == 0


def test_the_rest_of_a_half_sent_message_is_dropped() -> None:
    hold = HoldBuffer(limit=1000)
    hold.start(mid_message=True)
    assert hold.hold(wire.CONT, False, b"middle")
    assert hold.hold(wire.CONT, True, b"end")
    assert hold.frames == 0
    hold.hold(wire.TEXT, True, b"next")
    assert hold.frames == 1


# SeedAcks


def test_seed_acks_are_swallowed_and_nothing_else() -> None:
    acks = SeedAcks()
    acks.expect(1)
    added = json.dumps({"type": "conversation.item.added"}).encode()
    assert acks.swallow(added)
    assert acks.swallow(added)
    assert not acks.swallow(added)  # the client's own items from now on
    assert acks.pending == 0


def test_a_refused_seed_costs_both_acknowledgements() -> None:
    acks = SeedAcks()
    acks.expect(2)
    refusal = json.dumps({"type": "error", "error": {"event_id": "relay_seed_0"}}).encode()
    other = json.dumps({"type": "error", "error": {"event_id": "evt_client"}}).encode()
    assert not acks.swallow(other)  # the client's error reaches the client
    assert acks.swallow(refusal)
    assert (acks.pending, acks.refused) == (2, 1)


# Rollover


def test_a_standby_is_ready_once_every_setup_event_is_answered() -> None:
    rollover = Rollover(replay_seconds=0.5)
    rollover.note_client_update(b'{"type":"session.update","session":{}}')
    rollover.begin(2, now=10.0)
    frames = rollover.setup(
        b'{"type":"session.update"}', ['{"type":"conversation.item.create"}'], 1 << 20
    )
    assert len(wire.FrameReader(masked=True, max_size=1 << 20).feed(frames)[0]) == 3
    answers = [
        {"type": "session.created"},
        {"type": "session.updated"},
        {"type": "session.updated"},
        {"type": "conversation.item.added"},
    ]
    assert rollover.standby_data(b"".join(server(a) for a in answers)) == (b"", None)
    assert rollover.state is StandbyState.SEEDING
    rollover.standby_data(server({"type": "conversation.item.done"}))
    assert rollover.ready


def test_a_standby_answers_pings_and_is_lost_on_close() -> None:
    rollover = Rollover(replay_seconds=0.5)
    rollover.begin(2, now=0.0)
    rollover.setup(b"{}", [], 1 << 20)
    pongs, lost = rollover.standby_data(wire.encode(wire.PING, b"p", mask=False))
    assert wire.FrameReader(masked=True, max_size=9).feed(pongs)[0] == [(wire.PONG, True, b"p")]
    assert lost is None
    _, lost = rollover.standby_data(wire.encode(wire.CLOSE, b"\x03\xe8", mask=False))
    assert lost == "the model closed the fresh session"


def test_the_replay_holds_only_the_latest_audio() -> None:
    rollover = Rollover(replay_seconds=0.3)
    rollover.begin(2, now=0.0)
    for i in range(10):
        rollover.keep_append(f"a{i}".encode(), now=i * 0.1)
    frames = wire.FrameReader(masked=True, max_size=99).feed(rollover.replay(now=0.95))[0]
    assert [payload for _, _, payload in frames] == [b"a7", b"a8", b"a9"]


def test_a_second_rollover_cannot_start_while_one_runs() -> None:
    rollover = Rollover(replay_seconds=0.5)
    rollover.begin(2, now=0.0)
    with pytest.raises(RuntimeError):
        rollover.begin(3, now=1.0)
    assert rollover.note_client_update(b"{}")  # the standby must be redone


def test_a_retiring_leg_answers_pings_until_the_model_closes() -> None:
    retiring = RetiringLeg(wire.FrameReader(masked=False, max_size=99))
    assert retiring.feed(server({"type": "response.output_audio.delta"})) == (b"", False)
    pong, done = retiring.feed(wire.encode(wire.PING, b"x", mask=False))
    assert pong
    assert not done
    assert retiring.feed(wire.encode(wire.CLOSE, b"\x03\xe8", mask=False))[1]


# UpstreamLeg, Deadlines, ClientEvents


def test_an_upstream_leg_refuses_transitions_that_cannot_happen() -> None:
    leg = UpstreamLeg(1, 1 << 20)
    with pytest.raises(TransitionError):
        leg.closing()  # not open yet
    leg.opened()
    assert leg.is_open
    assert leg.state is UpstreamState.OPEN
    leg.closing()
    with pytest.raises(TransitionError):
        leg.opened()
    leg.lost()
    assert leg.is_closed
    assert not leg.is_open


def test_deadlines_come_due_in_order_and_report_the_earliest() -> None:
    deadlines = Deadlines()
    deadlines.set("b", 2.0)
    deadlines.set("a", 1.0)
    deadlines.set("c", 3.0)
    assert deadlines.earliest() == 1.0
    assert deadlines.pop_due(2.5) == ["a", "b"]
    deadlines.clear("c")
    assert deadlines.earliest() == float("inf")


@pytest.mark.parametrize(
    ("payload", "plain"),
    [
        (b'{"type":"input_audio_buffer.append","audio":"AAAA"}', True),
        (b'{"type": "input_audio_buffer.append", "audio": "AAAA"}', True),
        (b'{"type":"input_audio_buffer.append","type":"session.update"}', False),
        (b'{"type":"input_audio_buffer.append","audio":"\\u0041"}', False),
        (b'{"audio":"AAAA","type":"input_audio_buffer.append"}', False),
    ],
)
def test_the_append_fast_path_takes_only_unambiguous_appends(payload: bytes, plain: bool) -> None:
    assert is_plain_append(payload) is plain


def test_client_events_refuse_what_is_not_one_json_event() -> None:
    events = ClientEvents(SessionPolicy(["instructions"]), model="m", session_id="s")
    for opcode, payload, code in [
        (wire.BINARY, b"{}", "binary_not_supported"),
        (wire.TEXT, b"\xff", "invalid_utf8"),
        (wire.TEXT, b'{"type":1}', "invalid_json"),
    ]:
        kind, _, error = events.check(opcode, payload)
        assert kind is None
        assert error is not None
        assert json.loads(error)["error"]["code"] == code
    kind, forwarded, error = events.check(
        wire.TEXT, b'{"type":"session.update","session":{"instructions":"x","voice":"v"}}'
    )
    assert kind == "session.update"
    assert b"instructions" not in forwarded
    assert b"voice" in forwarded


@pytest.mark.parametrize(
    "event",
    [
        b'{"type":"conversation.item.create","item":{"role":{"system":1},"type":"message"}}',
        b'{"type":"response.create","response":{"input":[{"role":["system"]}]}}',
        b'{"type":"session.update","session":{"tool_choice":{"type":"function","name":{}}}}',
        b'{"type":"session.update","session":{"tools":[{"type":"function","name":[1]}]}}',
        b'{"type":"conversation.item.create","item":{"type":"function_call","name":{"a":1}}}',
    ],
    ids=["role-dict", "input-role-list", "tool-choice-name-dict", "tool-name-list", "call-name"],
)
def test_a_role_or_name_of_the_wrong_type_is_checked_not_a_crash(event: bytes) -> None:
    """Found by the frame fuzz: a dict where a string belongs used to raise TypeError
    ("unhashable") inside the client's data_received, dropping the connection."""
    from relay.tool_calls import ToolCallTracker

    events = ClientEvents(
        SessionPolicy(["instructions", "tools"]),
        model="m",
        session_id="s",
        tools=ToolCallTracker({"take_note"}, [{"type": "function", "name": "take_note"}]),
    )
    kind, _, _ = events.check(wire.TEXT, event)
    assert kind is None or isinstance(kind, str)
