"""The simulated GA Realtime model, driven over real sockets like OpenAI's would be."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import subprocess
import sys
from array import array
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from relay.simulator import (
    BYTES_PER_MS,
    SimulatorOptions,
    listening_url,
    rms_dbfs,
    serve_simulator,
    synthesize_reply,
)
from tests.conftest import ROOT, TIMEOUT

BEARER = {"Authorization": "Bearer sk-test"}
GA_SESSION = {
    "type": "realtime",
    "instructions": "Be brief.",
    "audio": {
        "input": {
            "transcription": {"model": "gpt-4o-mini-transcribe"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
        },
        "output": {"voice": "cedar"},
    },
}


def tone(ms: int, amplitude: int = 8000, hz: float = 220.0) -> bytes:
    """PCM16 24 kHz of a sine tone (loud enough to count as speech)."""
    n = 24 * ms
    return array(
        "h", (int(amplitude * math.sin(2 * math.pi * hz * i / 24000)) for i in range(n))
    ).tobytes()


def silence(ms: int) -> bytes:
    return bytes(ms * BYTES_PER_MS)


def append(pcm: bytes) -> str:
    return json.dumps(
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}
    )


async def stream(ws: ClientConnection, pcm: bytes, chunk_ms: int = 20) -> None:
    step = chunk_ms * BYTES_PER_MS
    for i in range(0, len(pcm), step):
        await ws.send(append(pcm[i : i + step]))


async def next_event(ws: ClientConnection, event_type: str) -> dict[str, Any]:
    """Read events until one of ``event_type`` arrives."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            event: dict[str, Any] = json.loads(await ws.recv())
            if event["type"] == event_type:
                return event


async def events_until(ws: ClientConnection, event_type: str) -> list[dict[str, Any]]:
    """All events up to and including the first ``event_type``."""
    seen = []
    async with asyncio.timeout(TIMEOUT):
        while True:
            seen.append(json.loads(await ws.recv()))
            if seen[-1]["type"] == event_type:
                return seen


@pytest.fixture
async def sim_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    options = getattr(request, "param", SimulatorOptions(pace=0.0, reply_ms=600))
    server = await serve_simulator("127.0.0.1", 0, options)
    try:
        yield listening_url(server)
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def ga(sim_url: str) -> AsyncIterator[ClientConnection]:
    """A connected client whose GA session.update was accepted."""
    async with connect(sim_url + "?model=gpt-realtime-2.1", additional_headers=BEARER) as ws:
        await next_event(ws, "session.created")
        await ws.send(json.dumps({"type": "session.update", "session": GA_SESSION}))
        await next_event(ws, "session.updated")
        yield ws


async def sessions(sim_url: str) -> list[dict[str, Any]]:
    base = sim_url.replace("ws://", "http://").replace("/v1/realtime", "")
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.get(base + "/_sim/sessions")
        response.raise_for_status()
        return response.json()["sessions"]  # type: ignore[no-any-return]


def test_command_prints_one_line_and_exits_cleanly_on_sigterm() -> None:
    """`python -m relay.simulator` announces its URL on one line and exits 0 on SIGTERM."""
    with subprocess.Popen(
        [sys.executable, "-m", "relay.simulator", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("simulator listening on ws://127.0.0.1:")
        assert line.endswith("/v1/realtime\n")
        proc.terminate()
        assert proc.wait(timeout=TIMEOUT) == 0
        assert proc.stdout.read() == b""


async def test_session_update_is_merged_and_echoed(sim_url: str) -> None:
    """A GA session.update is answered with session.updated carrying the merged session."""
    async with connect(sim_url + "?model=gpt-realtime-2.1", additional_headers=BEARER) as ws:
        created = await next_event(ws, "session.created")
        assert created["session"]["model"] == "gpt-realtime-2.1"
        assert created["session"]["audio"]["output"]["format"] == {
            "type": "audio/pcm",
            "rate": 24000,
        }
        await ws.send(json.dumps({"type": "session.update", "session": GA_SESSION}))
        session = (await next_event(ws, "session.updated"))["session"]
    assert session["instructions"] == "Be brief."
    assert session["audio"]["output"] == {
        "format": {"type": "audio/pcm", "rate": 24000},
        "voice": "cedar",
        "speed": 1.0,
    }
    assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 300
    assert session["audio"]["input"]["turn_detection"]["create_response"] is True


@pytest.mark.parametrize(
    ("headers", "subprotocols", "first_event"),
    [
        ({**BEARER, "OpenAI-Beta": "realtime=v1"}, None, None),
        (None, ["realtime", "openai-insecure-api-key.sk-test", "openai-beta.realtime-v1"], None),
        (BEARER, None, {"type": "session.update", "session": {"modalities": ["audio"]}}),
        (BEARER, None, {"type": "session.update", "session": {"type": "transcription"}}),
    ],
    ids=["beta-header", "beta-subprotocol", "update-without-type", "update-wrong-type"],
)
async def test_beta_shapes_are_closed_with_4000(
    sim_url, headers, subprotocols, first_event
) -> None:
    """Anything beta-shaped gets beta_api_shape_disabled and close 4000, as OpenAI does now."""
    async with connect(sim_url, additional_headers=headers, subprotocols=subprotocols) as ws:
        if first_event is not None:
            await next_event(ws, "session.created")
            await ws.send(json.dumps(first_event))
        error = await next_event(ws, "error")
        assert error["error"]["code"] == "beta_api_shape_disabled"
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    assert ws.close_code == 4000


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/v1/realtime", None, 401),
        ("/v1/realtime", {"Authorization": "Bearer "}, 401),
        ("/v1/realtime", {"Authorization": "Basic c2s6"}, 401),
        ("/v1/other", BEARER, 404),
    ],
    ids=["no-key", "empty-bearer", "basic-auth", "wrong-path"],
)
async def test_handshake_refusals(sim_url, path, headers, status) -> None:
    """Connections without a key or on the wrong path are refused with an HTTP status."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(sim_url.replace("/v1/realtime", path), additional_headers=headers):
            pass
    assert refused.value.response.status_code == status


@pytest.mark.parametrize(
    "sim_url", [SimulatorOptions(api_key="sk-right")], indirect=True, ids=["api-key"]
)
async def test_wrong_key_is_refused_when_a_key_is_required(sim_url: str) -> None:
    """With --api-key set, only that key (header or browser subprotocol) gets in."""
    with pytest.raises(InvalidStatus):
        async with connect(sim_url, additional_headers={"Authorization": "Bearer sk-wrong"}):
            pass
    async with connect(
        sim_url,
        subprotocols=[Subprotocol("realtime"), Subprotocol("openai-insecure-api-key.sk-right")],
    ) as ws:
        assert ws.subprotocol == "realtime"
        await next_event(ws, "session.created")


async def test_speech_turn_gets_transcript_and_audio_reply(ga: ClientConnection, sim_url) -> None:
    """One second of speech then quiet yields VAD events, a transcript and a spoken reply."""
    await stream(ga, tone(1000) + silence(400))
    events = await events_until(ga, "response.done")
    types = [e["type"] for e in events]
    expected_order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.output_item.done",
        "response.done",
    ]
    first_seen = [types.index(t) for t in expected_order]
    assert first_seen == sorted(first_seen)
    by_type = {e["type"]: e for e in events}
    started = by_type["input_audio_buffer.speech_started"]
    stopped = by_type["input_audio_buffer.speech_stopped"]
    assert stopped["audio_end_ms"] - started["audio_start_ms"] == pytest.approx(1000, abs=60)
    heard = by_type["conversation.item.input_audio_transcription.completed"]["transcript"]
    assert heard == "(heard 1.0 s of speech)"
    audio = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    assert audio == synthesize_reply(600)
    assert rms_dbfs(audio) > -30
    transcript = "".join(
        e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
    )
    assert transcript == by_type["response.output_audio_transcript.done"]["transcript"]
    done = by_type["response.done"]["response"]
    assert done["status"] == "completed"
    assert done["usage"]["output_token_details"]["audio_tokens"] > 0
    stats = (await sessions(sim_url))[0]
    assert stats["audio_ms_received"] == 1400
    assert stats["client_events"] == [["session.update", 1], ["input_audio_buffer.append", 70]]
    assert stats["responses"][0]["status"] == "completed"


@pytest.mark.parametrize(
    "sim_url",
    [SimulatorOptions(reply_ms=600, pace=1.0, max_turn_ms=2000)],
    indirect=True,
    ids=["2s-turns"],
)
async def test_a_looping_clip_with_no_pause_is_answered(ga: ClientConnection, sim_url) -> None:
    """Sound that never pauses still ends a turn at max_turn_ms and gets a whole answer."""
    for _ in range(2):  # two loops of a clip with no quiet in it
        await stream(ga, tone(2500))
        events = await events_until(ga, "response.done")
        types = [e["type"] for e in events]
        # One turn, cut at 2 s, answered to the end: the unbroken sound interrupts nothing.
        assert types.count("input_audio_buffer.speech_started") == 1
        started = next(e for e in events if e["type"] == "input_audio_buffer.speech_started")
        stopped = next(e for e in events if e["type"] == "input_audio_buffer.speech_stopped")
        assert stopped["audio_end_ms"] - started["audio_start_ms"] == pytest.approx(2000, abs=60)
        assert "input_audio_buffer.committed" in types
        assert events[-1]["response"]["status"] == "completed"
    stats = (await sessions(sim_url))[0]
    assert [r["status"] for r in stats["responses"]] == ["completed", "completed"]
    assert len(stats["speech"]) == 2


async def test_a_turn_under_the_limit_ends_only_at_a_pause(ga: ClientConnection, sim_url) -> None:
    """With the default 8 s limit, 3 s of unbroken sound is still one open turn."""
    await stream(ga, tone(3000))
    await next_event(ga, "input_audio_buffer.speech_started")
    await stream(ga, silence(400))  # the pause ends it (300 ms of silence configured)
    stopped = await next_event(ga, "input_audio_buffer.speech_stopped")
    assert stopped["audio_end_ms"] == pytest.approx(3000, abs=60)


@pytest.mark.parametrize(
    "sim_url", [SimulatorOptions(reply_ms=5000, pace=1.0)], indirect=True, ids=["slow-reply"]
)
async def test_barge_in_cancels_reply_and_truncate_is_confirmed(ga, sim_url) -> None:
    """Speech during a reply cancels it; the client's truncate is confirmed and recorded."""
    await stream(ga, tone(500) + silence(400))
    delta = await next_event(ga, "response.output_audio.delta")
    await stream(ga, tone(200))
    await next_event(ga, "input_audio_buffer.speech_started")
    done = (await next_event(ga, "response.done"))["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    truncate = {
        "type": "conversation.item.truncate",
        "item_id": delta["item_id"],
        "content_index": 0,
        "audio_end_ms": 100,
    }
    await ga.send(json.dumps(truncate))
    truncated = await next_event(ga, "conversation.item.truncated")
    assert truncated["audio_end_ms"] == 100
    stats = (await sessions(sim_url))[0]
    assert stats["truncates"][0]["audio_end_ms"] == 100
    assert 100 <= stats["truncates"][0]["audio_ms_sent"] < 5000
    assert stats["responses"][0] == {
        "id": done["id"],
        "status": "cancelled",
        "reason": "turn_detected",
        "audio_ms_sent": stats["truncates"][0]["audio_ms_sent"],
    }


@pytest.mark.parametrize(
    "sim_url", [SimulatorOptions(reply_ms=5000, pace=1.0)], indirect=True, ids=["slow-reply"]
)
async def test_response_cancel_stops_the_reply(ga: ClientConnection) -> None:
    """response.cancel ends the active response as cancelled; a second cancel is an error."""
    await ga.send(json.dumps({"type": "response.create"}))
    await next_event(ga, "response.output_audio.delta")
    await ga.send(json.dumps({"type": "response.cancel"}))
    done = (await next_event(ga, "response.done"))["response"]
    assert done["status_details"]["reason"] == "client_cancelled"
    await ga.send(json.dumps({"type": "response.cancel"}))
    error = await next_event(ga, "error")
    assert error["error"]["code"] == "response_cancel_not_active"


async def test_truncate_beyond_sent_audio_is_an_error(ga: ClientConnection) -> None:
    """A truncate past the audio actually sent is refused, as OpenAI refuses it."""
    await ga.send(json.dumps({"type": "response.create"}))
    delta = await next_event(ga, "response.output_audio.delta")
    await next_event(ga, "response.done")
    await ga.send(
        json.dumps(
            {
                "type": "conversation.item.truncate",
                "item_id": delta["item_id"],
                "content_index": 0,
                "audio_end_ms": 60_000,
            }
        )
    )
    error = await next_event(ga, "error")
    assert error["error"]["code"] == "invalid_value"
    assert error["error"]["param"] == "audio_end_ms"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (json.dumps({"type": "response.audio.delta"}), "invalid_value"),
        (json.dumps({"type": "transcription_session.update"}), "invalid_value"),
        ("{not json", "invalid_json"),
        (json.dumps([1, 2]), "missing_required_parameter"),
        (b"\x00\x01", "invalid_value"),
        (json.dumps({"type": "input_audio_buffer.append", "audio": "***"}), "invalid_value"),
        (json.dumps({"type": "input_audio_buffer.commit"}), "input_audio_buffer_commit_empty"),
        (
            json.dumps({"type": "session.update", "session": {"type": "realtime", "voice": "x"}}),
            "unknown_parameter",
        ),
        (
            json.dumps(
                {"type": "conversation.item.truncate", "item_id": "nope", "audio_end_ms": 1}
            ),
            "item_not_found",
        ),
    ],
    ids=[
        "server-event-name",
        "beta-only-event",
        "malformed-json",
        "not-an-object",
        "binary-frame",
        "bad-base64",
        "commit-empty",
        "beta-session-field",
        "unknown-item",
    ],
)
async def test_bad_client_frames_get_an_error_and_the_session_goes_on(ga, frame, code) -> None:
    """A bad frame is answered with an OpenAI-shaped error; the next request still works."""
    await ga.send(frame)
    error = await next_event(ga, "error")
    assert error["error"]["code"] == code
    await ga.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
    await next_event(ga, "session.updated")


async def test_recorded_audio_is_served_back(ga: ClientConnection, sim_url: str) -> None:
    """The stats endpoint serves back exactly the PCM the session received."""
    pcm = tone(300, amplitude=3000) + silence(100)
    await stream(ga, pcm, chunk_ms=40)
    # Events are handled in order, so once this is answered every append has been recorded.
    await ga.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
    await next_event(ga, "session.updated")
    base = sim_url.replace("ws://", "http://").replace("/v1/realtime", "")
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        assert (await client.get(base + "/_sim/sessions/0/audio")).content == pcm
        assert (await client.get(base + "/_sim/sessions/9/audio")).status_code == 404


async def test_official_sdk_holds_a_session(sim_url: str) -> None:
    """The official openai SDK's GA realtime client connects and updates the session."""
    client = AsyncOpenAI(api_key="sk-test", websocket_base_url=sim_url.removesuffix("/realtime"))
    async with client.realtime.connect(model="gpt-realtime-2.1") as conn:
        await conn.session.update(session={"type": "realtime", "instructions": "Hi."})
        async with asyncio.timeout(TIMEOUT):
            async for event in conn:
                if event.type == "session.updated":
                    assert event.session.instructions == "Hi."  # type: ignore[union-attr]
                    break
    stats = (await sessions(sim_url))[0]
    assert stats["model"] == "gpt-realtime-2.1"
    assert stats["auth"] == "bearer"


async def test_only_the_latest_sessions_keep_their_audio(sim_url: str) -> None:
    """A long-running simulator keeps audio for its latest sessions only (bounded memory)."""
    for _ in range(9):
        async with connect(sim_url, additional_headers=BEARER) as ws:
            await next_event(ws, "session.created")
            await ws.send(append(tone(100)))
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
            await next_event(ws, "session.updated")
    base = sim_url.replace("ws://", "http://").replace("/v1/realtime", "")
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        assert (await client.get(base + "/_sim/sessions/0/audio")).content == b""
        assert (await client.get(base + "/_sim/sessions/8/audio")).content == tone(100)
    assert [s["audio_ms_received"] for s in await sessions(sim_url)] == [100.0] * 9


@pytest.mark.parametrize(
    "sim_url", [SimulatorOptions(pace=0.0, reply_ms=300, transcription_ms=1000)], indirect=True
)
async def test_a_slow_transcription_does_not_hold_the_answer(ga: ClientConnection) -> None:
    """With a transcription delay the answer streams first, and its transcript follows."""
    await stream(ga, tone(600) + silence(400))
    events = await events_until(ga, "conversation.item.input_audio_transcription.completed")
    types = [e["type"] for e in events]
    assert types.index("response.done") < types.index(
        "conversation.item.input_audio_transcription.delta"
    )
    assert events[-1]["transcript"] == "(heard 0.6 s of speech)"


@pytest.mark.parametrize(
    "sim_url", [SimulatorOptions(pace=0.0, reply_ms=300, think_ms=60_000)], indirect=True
)
async def test_a_cancel_during_think_time_ends_the_response_without_audio(
    ga: ClientConnection,
) -> None:
    """The model's think time is cut short by response.cancel: no audio, status cancelled."""
    await stream(ga, tone(600) + silence(400))
    await next_event(ga, "response.content_part.added")
    await ga.send(json.dumps({"type": "response.cancel"}))
    events = await events_until(ga, "response.done")
    assert "response.output_audio.delta" not in [e["type"] for e in events]
    assert events[-1]["response"]["status"] == "cancelled"
