"""A session's turn timings (relay.latency.get → relay.latency), sans I/O and over sockets."""

from __future__ import annotations

import contextlib
import json

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from relay.events import RESPONSE_CREATED, SPEECH_STOPPED, TRANSCRIPTION_COMPLETED
from relay.server import Relay
from relay.turn_timing import MAX_TURNS, MIN_REQUEST_SECONDS, TurnTimings
from tests.relay.conftest import (
    FakeUpstream,
    StartRelay,
    append_event,
    mint,
    open_client,
    recv_json,
    recv_until,
)


def stopped(item_id: object = "item_1") -> bytes:
    return json.dumps({"type": SPEECH_STOPPED, "audio_end_ms": 900, "item_id": item_id}).encode()


def test_offsets_are_ms_since_speech_stopped():
    """A turn reports its transcript, answer request, response and first audio in ms after
    speech_stopped, on the relay's clock; never the clock itself."""
    timings = TurnTimings()
    timings.observe(SPEECH_STOPPED, stopped(), 100.0)
    timings.observe(TRANSCRIPTION_COMPLETED, b"{}", 100.2)
    timings.answer_requested(100.25)
    timings.observe(RESPONSE_CREATED, b"{}", 100.3)
    assert timings.awaiting_audio
    timings.audio_started(100.5)
    assert not timings.awaiting_audio
    (turn,) = json.loads(timings.report())["turns"]
    assert turn == {
        "item_id": "item_1",
        "transcript_ms": pytest.approx(200.0),
        "answer_requested_ms": pytest.approx(250.0),
        "response_created_ms": pytest.approx(300.0),
        "first_audio_ms": pytest.approx(500.0),
    }


def test_responses_no_turn_asked_for_are_not_timed():
    """A greeting before any speech, or a second response of the same turn, changes nothing."""
    timings = TurnTimings()
    timings.observe(RESPONSE_CREATED, b"{}", 1.0)
    assert not timings.awaiting_audio
    timings.observe(SPEECH_STOPPED, stopped(), 2.0)
    timings.observe(RESPONSE_CREATED, b"{}", 2.1)
    timings.audio_started(2.2)
    timings.observe(RESPONSE_CREATED, b"{}", 3.0)
    assert not timings.awaiting_audio
    (turn,) = json.loads(timings.report())["turns"]
    assert turn["response_created_ms"] == pytest.approx(100.0)
    assert turn["first_audio_ms"] == pytest.approx(200.0)


def test_unanswered_turn_keeps_no_audio_and_a_new_turn_stops_waiting():
    """A turn cut before its audio (cancelled, or the gate said no) reports None."""
    timings = TurnTimings()
    timings.observe(SPEECH_STOPPED, stopped("a"), 1.0)
    timings.observe(RESPONSE_CREATED, b"{}", 1.1)
    timings.observe(SPEECH_STOPPED, stopped("b"), 2.0)
    assert not timings.awaiting_audio
    first, second = json.loads(timings.report())["turns"]
    assert first["item_id"] == "a"
    assert first["first_audio_ms"] is None
    assert second["response_created_ms"] is None


@pytest.mark.parametrize(
    "payload", [b"not json", b"[]", stopped(7), stopped("x" * 65), b'{"item_id":"a","item_id":"b"}']
)
def test_malformed_speech_stopped_still_times_the_turn(payload: bytes):
    """A speech_stopped without a usable item_id is timed without one (nothing raised)."""
    timings = TurnTimings()
    timings.observe(SPEECH_STOPPED, payload, 1.0)
    (turn,) = json.loads(timings.report())["turns"]
    assert turn["item_id"] is None


def test_turns_and_requests_are_bounded():
    """Only the newest MAX_TURNS turns are kept; requests faster than the interval are refused."""
    timings = TurnTimings()
    for n in range(MAX_TURNS + 5):
        timings.observe(SPEECH_STOPPED, stopped(f"i{n}"), float(n))
    turns = json.loads(timings.report())["turns"]
    assert len(turns) == MAX_TURNS
    assert turns[0]["item_id"] == "i5"
    assert timings.may_answer(10.0)
    assert not timings.may_answer(10.0 + MIN_REQUEST_SECONDS / 2)
    assert timings.may_answer(10.0 + MIN_REQUEST_SECONDS)


async def turn_script(ws: ServerConnection, upstream: FakeUpstream) -> None:
    """Each commit is a finished turn: speech_stopped, a response, its first audio delta."""
    with contextlib.suppress(ConnectionClosed):
        await ws.send(json.dumps({"type": "session.created", "session": {"type": "realtime"}}))
        n = 0
        async for message in ws:
            assert isinstance(message, str)
            upstream.received.append(message)
            if json.loads(message).get("type") != "input_audio_buffer.commit":
                continue
            n += 1
            for event in (
                {"type": SPEECH_STOPPED, "audio_end_ms": 100 * n, "item_id": f"item_{n}"},
                {"type": RESPONSE_CREATED, "response": {"id": f"resp_{n}"}},
                {"type": "response.output_audio.delta", "item_id": f"a_{n}", "delta": "AAAA"},
                {"type": "response.output_audio.delta", "item_id": f"a_{n}", "delta": "AAAA"},
                {"type": "response.done", "response": {"status": "completed"}},
            ):
                await ws.send(json.dumps(event))


async def test_relay_answers_latency_requests_itself(
    start_relay: StartRelay, fake_upstream: FakeUpstream
):
    """A client's relay.latency.get is answered by the relay with its turns, and the model
    never receives it; audio and the model's events pass as before."""
    fake_upstream.script = turn_script
    relay: Relay = await start_relay(fake_upstream.url)
    async with open_client(relay, mint()) as ws:
        await recv_until(ws, "session.created")
        for seed in range(3):
            await ws.send(append_event(seed))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        await recv_until(ws, "response.done")
        await ws.send(json.dumps({"type": "relay.latency.get", "event_id": "ask_1", "x": [1]}))
        (reply,) = [e for e in await recv_until(ws, "relay.latency") if e["type"] != "error"][-1:]
        (turn,) = reply["turns"]
        assert turn["item_id"] == "item_1"
        assert 0 <= turn["response_created_ms"] <= turn["first_audio_ms"]
        assert turn["transcript_ms"] is None
        assert turn["answer_requested_ms"] is None
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        await recv_until(ws, "response.done")
    kinds = [json.loads(m)["type"] for m in fake_upstream.received]
    assert kinds.count("input_audio_buffer.append") == 3
    assert "relay.latency.get" not in kinds


async def test_a_flood_of_latency_requests_is_refused_then_cut(
    start_relay: StartRelay, fake_upstream: FakeUpstream
):
    """Requests faster than the interval get rate_limited errors; a flood ends the session
    with 1008 like any stream of invalid events; none reaches the model."""
    relay: Relay = await start_relay(fake_upstream.url)
    async with open_client(relay, mint()) as ws:
        await recv_until(ws, "session.created")
        for _ in range(200):
            await ws.send(b'{"type":"relay.latency.get"}'.decode())
        kinds: list[str] = []
        with contextlib.suppress(ConnectionClosed):
            while True:
                event = await recv_json(ws)
                kinds.append(event["type"] if event["type"] != "error" else event["error"]["code"])
        assert ws.close_code == 1008
    kinds = [k for k in kinds if k in ("relay.latency", "rate_limited", "client_abuse")]
    assert kinds[0] == "relay.latency"
    assert "rate_limited" in kinds
    assert len(kinds) < 60  # bounded: the invalid-event budget, not one reply per request
    assert all("relay.latency" not in m for m in fake_upstream.received)
