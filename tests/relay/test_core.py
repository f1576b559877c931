"""SessionCore through its public inputs: every leg transition, no sockets, no private fields.

Each test feeds bytes and times in and reads what comes out: bytes for a leg, effects, and
the core's public state (``client_state``, ``up.state``, ``finished``...).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from relay import wire
from relay.client_events import ClientEvents
from relay.client_leg import ClientState
from relay.config import RelayConfig
from relay.conversation import Turn
from relay.core import SessionCore
from relay.core_moves import DRAIN_REASON
from relay.effects import (
    CLIENT,
    Abort,
    Close,
    Dial,
    Effect,
    Finished,
    Handover,
    Happened,
    Promote,
    Reading,
    Timer,
    Write,
)
from relay.errors import TransitionError
from relay.policy import SessionPolicy
from relay.record_items import ConnectionRecord
from relay.recorder import NullRecorder
from relay.upstream_leg import UpstreamState

AGENT_UPDATE = b'{"type":"session.update","session":{"type":"realtime"}}'
PING = b"nonce123"


def make_core(*, resume: bool = False, locked: Sequence[str] = (), **overrides: Any) -> SessionCore:
    config = RelayConfig(
        token_secret="t" * 32,
        **{
            "ping_interval": 20,
            "ping_timeout": 20,
            "close_timeout": 5,
            "reattach_seconds": 30,
            "rollover_seconds": 0,
            **overrides,
        },
    )
    recorder = NullRecorder()

    def new_record(history: Sequence[Turn]) -> ConnectionRecord:
        return recorder.connection_started(
            session_id="s", connection_id="c", model="m", history=history
        )

    return SessionCore(
        config,
        ClientEvents(SessionPolicy(locked), model="m", session_id="s"),
        agent_update=AGENT_UPDATE,
        new_record=new_record,
        resume=resume,
        ping_payload=PING,
    )


def client_frame(event: dict[str, Any] | bytes, opcode: int = wire.TEXT) -> bytes:
    raw = event if isinstance(event, bytes) else json.dumps(event).encode()
    return wire.encode(opcode, raw, mask=True)


def model_frame(event: dict[str, Any]) -> bytes:
    return wire.encode(wire.TEXT, json.dumps(event).encode(), mask=False)


def as_effects(out: bytes | list[Effect], leg: int) -> list[Effect]:
    """A hot-path return is a write on ``leg``; effects stay as they are."""
    if isinstance(out, bytes):
        return [Write(leg, out)] if out else []
    return out


def written(effects: Sequence[Effect], leg: int) -> list[wire.Frame]:
    """The frames written on ``leg``, decoded."""
    reader = wire.FrameReader(masked=leg != CLIENT, max_size=1 << 24)
    data = b"".join(e.data for e in effects if isinstance(e, Write) and e.leg == leg)
    return reader.feed(data)[0]


def events_on(effects: Sequence[Effect], leg: int) -> list[dict[str, Any]]:
    return [json.loads(p) for op, _, p in written(effects, leg) if op == wire.TEXT]


def close_on(effects: Sequence[Effect], leg: int) -> tuple[int, str] | None:
    closes = [p for op, _, p in written(effects, leg) if op == wire.CLOSE]
    return wire.parse_close(closes[0]) if closes else None


def opened(**kw: Any) -> SessionCore:
    core = make_core(**kw)
    core.start(0.0)
    core.upstream_opened(1, (), 0.1)
    return core


APPEND = {"type": "input_audio_buffer.append", "audio": "AAAA"}


# Opening


def test_start_dials_and_arms_a_timer() -> None:
    core = make_core(resume=True)
    fx = core.start(0.0)
    assert Dial(1, load_history=True) in fx
    assert any(isinstance(e, Timer) and e.at == 20.0 for e in fx)
    assert core.client_state is ClientState.OPEN
    assert core.up.state is UpstreamState.DIALING


def test_client_frames_wait_for_the_model_then_follow_the_agent_update() -> None:
    core = make_core()
    core.start(0.0)
    assert core.client_data(client_frame(APPEND), 0.01) == b""  # queued
    fx = core.upstream_opened(1, (), 0.2)
    sent = events_on(fx, 1)
    assert sent[0]["type"] == "session.update"
    assert sent[1] == APPEND
    assert core.up.state is UpstreamState.OPEN


def test_a_resume_seeds_the_history_and_swallows_its_acknowledgements() -> None:
    core = make_core(resume=True)
    core.start(0.0)
    fx = core.upstream_opened(1, [Turn("user", "hello"), Turn("assistant", "hi")], 0.1)
    assert [e["type"] for e in events_on(fx, 1)] == ["session.update"] + 2 * [
        "conversation.item.create"
    ]
    acks = b"".join(model_frame({"type": "conversation.item.added"}) for _ in range(4))
    assert as_effects(core.upstream_data(acks, 0.2), CLIENT) == []  # the client never sees them
    delta = model_frame({"type": "response.output_audio.delta", "delta": "AA"})
    assert core.upstream_data(delta, 0.3) == delta


# The per-message path


def test_an_append_goes_upstream_as_the_same_event_and_a_delta_comes_back_unchanged() -> None:
    core = opened()
    out = core.client_data(client_frame(APPEND), 1.0)
    assert isinstance(out, bytes)
    assert events_on([Write(1, out)], 1) == [APPEND]
    delta = model_frame({"type": "response.output_audio.delta", "delta": "AA"})
    assert core.upstream_data(delta, 1.0) == delta
    assert (core.frames_up, core.frames_down) == (1, 1)


def test_an_invalid_event_gets_an_error_and_the_session_continues() -> None:
    core = opened()
    fx = as_effects(core.client_data(client_frame(b"not json"), 1.0), 1)
    assert events_on(fx, CLIENT)[0]["error"]["code"] == "invalid_json"
    assert written(fx, 1) == []
    assert isinstance(core.client_data(client_frame(APPEND), 1.1), bytes)


def test_a_flood_of_invalid_events_is_cut_with_1008() -> None:
    core = opened()
    fx: list[Effect] = []
    for i in range(40):
        fx += as_effects(core.client_data(client_frame(b"{}", wire.BINARY), 1.0 + i * 0.001), 1)
    assert close_on(fx, CLIENT) is not None
    assert close_on(fx, CLIENT)[0] == 1008  # type: ignore[index]
    assert core.client_state is ClientState.CLOSING


# Keepalive and back-pressure


def test_a_client_that_never_answers_pings_is_dropped_and_unsolicited_pongs_do_not_help() -> None:
    core = opened()
    fx = core.tick(20.0)
    assert [p for op, _, p in written(fx, CLIENT) if op == wire.PING] == [PING]
    core.client_data(client_frame(b"forged", wire.PONG), 25.0)  # not our payload
    assert Abort(CLIENT) in core.tick(40.0)


def test_a_pong_with_our_payload_keeps_the_client() -> None:
    core = opened()
    core.tick(20.0)
    core.client_data(client_frame(PING, wire.PONG), 21.0)
    assert Abort(CLIENT) not in core.tick(40.0)


def test_a_client_that_does_not_read_pauses_the_model_and_is_cut_when_relay_bytes_pile_up() -> None:
    core = opened()
    assert Reading(1, False) in core.client_writable(False, 1.0)
    fx: list[Effect] = []
    for i in range(700):  # each ping is answered with a pong the client never reads
        fx += as_effects(core.client_data(client_frame(b"x" * 120, wire.PING), 1.0 + i / 1e4), 1)
    assert Abort(CLIENT) in fx
    pongs = b"".join(e.data for e in fx if isinstance(e, Write) and e.leg == CLIENT)
    assert len(pongs) <= 64 * 1024


def test_a_client_stalled_for_the_ping_timeout_is_cut() -> None:
    core = opened()
    core.client_writable(False, 1.0)
    assert Abort(CLIENT) in core.tick(21.0)


def test_a_slow_model_pauses_the_client() -> None:
    core = opened()
    assert core.upstream_writable(False, 1.0) == [Reading(CLIENT, False)]
    assert core.upstream_writable(True, 1.1) == [Reading(CLIENT, True)]


# Closing


def test_close_while_dialing_abandons_the_dial_and_finishes() -> None:
    core = make_core()
    core.start(0.0)
    fx = core.client_data(client_frame(wire.close_payload(1000, "bye"), wire.CLOSE), 0.1)
    assert isinstance(fx, list)
    assert Abort(1) in fx
    assert Close(CLIENT) in fx
    assert core.up.state is UpstreamState.CLOSED
    assert Finished() in core.client_lost(0.2)
    # The dial that was still in flight opens: nobody wants it.
    assert core.upstream_opened(1, (), 0.3) == [Abort(1)]


def test_both_legs_closing_at_once_finish_once() -> None:
    core = opened()
    fx = as_effects(
        core.client_data(client_frame(wire.close_payload(1000, ""), wire.CLOSE), 1.0), 1
    )
    fx += as_effects(
        core.upstream_data(wire.encode(wire.CLOSE, wire.close_payload(1000, ""), mask=False), 1.0),
        CLIENT,
    )
    fx += core.upstream_lost(1, 1.1)
    fx += core.client_lost(1.1)
    assert fx.count(Finished()) == 1
    assert core.finished
    assert core.close_code == 1000
    assert core.upstream_close_code == 1000


def test_a_model_failure_is_1011_with_an_error_event() -> None:
    core = opened()
    fx = as_effects(
        core.upstream_data(
            wire.encode(wire.CLOSE, wire.close_payload(1011, "boom"), mask=False), 1.0
        ),
        CLIENT,
    )
    assert close_on(fx, CLIENT) == (1011, "the model closed the session (1011: boom)")
    assert events_on(fx, CLIENT)[0]["type"] == "error"


def test_a_broken_frame_from_the_client_fails_the_connection() -> None:
    core = opened()
    fx = core.client_data(b"\xff\x80", 1.0)  # reserved bits set
    assert isinstance(fx, list)
    assert close_on(fx, CLIENT) == (1002, "reserved bits must be 0")
    assert Close(CLIENT) in fx
    assert core.client_data(client_frame(APPEND), 1.1) == b""  # nothing more is read


def test_impossible_inputs_are_refused() -> None:
    core = opened()
    with pytest.raises(TransitionError):
        core.reattach(1.0)
    core.client_data(client_frame(wire.close_payload(1000, ""), wire.CLOSE), 1.0)
    core.client_lost(1.1)
    with pytest.raises(TransitionError):
        core.client_lost(1.2)


# Re-attach


def test_a_vanished_client_detaches_holds_the_model_and_reattaches() -> None:
    core = opened()
    core.client_lost(1.0)
    assert core.detached
    assert core.up.state is UpstreamState.OPEN
    delta = model_frame({"type": "response.output_audio.delta", "delta": "AA"})
    assert as_effects(core.upstream_data(delta, 1.5), CLIENT) == []
    assert core.held_frames == 1
    fx = core.reattach(2.0)
    assert [p for _, _, p in written(fx, CLIENT)] == [
        json.dumps({"type": "response.output_audio.delta", "delta": "AA"}).encode()
    ]
    assert core.client_state is ClientState.OPEN
    assert core.reattached == 1


def test_an_upstream_close_during_reattach_ends_the_session() -> None:
    core = opened()
    core.client_lost(1.0)
    fx = as_effects(
        core.upstream_data(wire.encode(wire.CLOSE, wire.close_payload(1000, ""), mask=False), 2.0),
        CLIENT,
    )
    assert close_on(fx, 1) == (1000, "")  # the model's close is answered
    assert Finished() in core.upstream_lost(1, 2.1)
    with pytest.raises(TransitionError):
        core.reattach(2.2)


def test_the_grace_period_ends_a_detached_session() -> None:
    core = opened()
    core.client_lost(1.0)
    fx = core.tick(31.0)
    assert close_on(fx, 1) == (1000, "client session ended")
    assert Finished() in core.upstream_lost(1, 31.1)


def test_the_hold_buffer_bound_ends_a_detached_session() -> None:
    core = opened(reattach_buffer_bytes=1000)
    core.client_lost(1.0)
    big = model_frame({"type": "response.output_audio.delta", "delta": "A" * 2000})
    fx = as_effects(core.upstream_data(big, 1.1), CLIENT)
    assert Happened("re-attach buffer overflow") in fx
    assert not core.detached


# Drain and leaving


def test_drain_during_resume_seeding_closes_both_legs() -> None:
    core = make_core(resume=True)
    core.start(0.0)
    core.upstream_opened(1, [Turn("user", "hello")], 0.1)  # acknowledgements still due
    fx = core.shutdown(1001, DRAIN_REASON, 0.2)
    assert close_on(fx, CLIENT) == (1001, DRAIN_REASON)
    assert close_on(fx, 1) == (1000, "client session ended")


def test_leaving_between_turns_hands_over_at_once() -> None:
    core = opened()
    assert Handover(1001, DRAIN_REASON) in core.leave(1.0, within=20)


def test_leaving_mid_turn_waits_for_the_turn_boundary() -> None:
    core = opened()
    core.upstream_data(model_frame({"type": "response.created", "response": {}}), 1.0)
    assert not any(isinstance(e, Handover) for e in core.leave(1.1, within=20))
    fx = as_effects(
        core.upstream_data(model_frame({"type": "response.done", "response": {}}), 2.0), CLIENT
    )
    assert Handover(1001, DRAIN_REASON) in fx


def test_leaving_hands_over_at_the_deadline_when_no_boundary_comes() -> None:
    core = opened()
    core.upstream_data(model_frame({"type": "input_audio_buffer.speech_started"}), 1.0)
    core.leave(1.1, within=20)
    assert Handover(1001, DRAIN_REASON) in core.tick(21.1)


def test_a_detached_session_ends_when_the_relay_stops_holding() -> None:
    core = opened()
    core.client_lost(1.0)
    fx = core.stop_holding(1.5)
    assert close_on(fx, 1) == (1000, "client session ended")


# Rollover


def ready_standby(core: SessionCore, at: float) -> None:
    """Start the rollover at ``at`` and answer every set-up event of the fresh leg."""
    assert Dial(2) in core.tick(at)
    fx = core.upstream_opened(2, (), at + 0.1)
    setup = events_on(fx, 2)
    acks = [{"type": "session.created"}] + [{"type": "session.updated"} for _ in setup]
    core.leg_data(2, b"".join(model_frame(a) for a in acks), at + 0.2)


def test_a_rollover_switches_between_turns_and_replays_the_latest_audio() -> None:
    core = opened(rollover_seconds=100, rollover_replay_seconds=0.5, ping_interval=1000)
    core.upstream_data(model_frame({"type": "input_audio_buffer.speech_started"}), 99.0)
    ready_standby(core, 100.1)
    for i in range(10):  # 1 s of appends, one per 100 ms
        core.client_data(client_frame({**APPEND, "audio": f"A{i}"}), 100.3 + i * 0.1)
    assert core.up.leg == 1  # someone is speaking: no switch yet
    stopped = model_frame({"type": "input_audio_buffer.speech_stopped"})
    fx = as_effects(core.upstream_data(stopped, 101.25), CLIENT)
    assert Promote(2) in fx
    assert core.up.leg == 2
    assert core.rollovers == 1
    assert close_on(fx, 1) == (1000, "session rolled over")
    replayed = [e["audio"] for e in events_on(fx, 2)]
    assert replayed == ["A5", "A6", "A7", "A8", "A9"]  # the last 0.5 s, one per 100 ms
    # The retiring leg's close handshake completes on its own.
    done = core.leg_data(
        1, wire.encode(wire.CLOSE, wire.close_payload(1000, ""), mask=False), 101.3
    )
    assert Close(1) in done


def test_a_rollover_is_forced_at_its_deadline() -> None:
    core = opened(rollover_seconds=100, open_timeout=10, ping_interval=1000)
    core.upstream_data(model_frame({"type": "input_audio_buffer.speech_started"}), 99.0)
    ready_standby(core, 100.1)
    fx = core.tick(100.1 + 25 + 10)  # rollover_seconds / 4 + open_timeout
    assert Promote(2) in fx


def test_client_lost_during_a_rollover_abandons_the_standby() -> None:
    core = opened(rollover_seconds=100, reattach_seconds=0)
    assert Dial(2) in core.tick(100.1)  # the standby is dialling
    fx = core.client_lost(100.15)
    assert close_on(fx, 1) == (1001, "client went away")
    fx = core.upstream_lost(1, 100.1)
    assert Abort(2) in fx
    assert Finished() in fx


def test_a_failed_standby_keeps_the_current_session_and_retries() -> None:
    from relay.errors import UpstreamError

    core = opened(rollover_seconds=100, ping_interval=1000)
    core.tick(100.1)
    fx = core.dial_failed(2, UpstreamError("refused"), 100.5)
    assert any(isinstance(e, Happened) and e.what == "rollover failed" for e in fx)
    assert core.up.leg == 1
    assert core.up.state is UpstreamState.OPEN
    assert Dial(3) in core.tick(100.5 + 25)
