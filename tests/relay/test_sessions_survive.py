"""Sessions that survive: records, re-attach, resume on another relay, rollover.

docs/design/sessions.md describes them.

Real relays on loopback ports (in-process, and one ``python -m relay`` subprocess for the
``kill -9``), the simulated GA model or a scripted GA upstream, and moto's DynamoDB server.

What a ``kill -9`` can lose: the session records still queued in the recorder or in
flight when the process dies. With a healthy table that is the last few tens of
milliseconds of turns (the writer drains its queue continuously); the bound is the
recorder's queue (2,048 records) plus one batch, and up to 15 s of usage counters. Turns
already written are all replayed on resume.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import signal
import sys
import urllib.request
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from relay.record_table import RetryPolicy, dynamodb_client
from relay.record_writer import SessionRecorder
from relay.server import Relay
from relay.session import RelaySession
from relay.simulator import SimulatorOptions, listening_url, serve_simulator
from storage import schema
from tests.conftest import TIMEOUT, create_table, free_port, wait_for_port
from tests.relay.conftest import (
    UPSTREAM_KEY,
    FakeUpstream,
    environ_for_subprocess,
    eventually,
    mint,
    open_client,
    recv_json,
    recv_until,
    relay_config,
)
from tests.relay.test_records import MotoProcess

Spoken = list[tuple[str, str]]


# Helpers


def tone(ms: int) -> bytes:
    """A loud 220 Hz PCM16 24 kHz tone (the simulator's VAD hears speech)."""
    return array(
        "h", (int(8000 * math.sin(2 * math.pi * 220 * i / 24000)) for i in range(24 * ms))
    ).tobytes()


#: Speech, then more silence than the agent's server VAD waits for (500 ms).
SPEECH = tone(400) + bytes(48 * 600)


async def send_audio(ws: ClientConnection, pcm: bytes) -> None:
    """20 ms appends, as the agent page sends them."""
    step = 20 * 48
    for i in range(0, len(pcm), step):
        chunk = base64.b64encode(pcm[i : i + step]).decode()
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))


async def speak_turn(ws: ClientConnection) -> tuple[Spoken, list[dict[str, Any]]]:
    """Say something; return (what was said and answered, every event) once answered."""
    await send_audio(ws, SPEECH)
    events = await recv_until(ws, "response.done")
    spoken: Spoken = []
    for event in events:
        if event["type"] == "conversation.item.input_audio_transcription.completed":
            spoken.append(("user", event["transcript"]))
        elif event["type"] == "response.output_audio_transcript.done":
            spoken.append(("assistant", event["transcript"]))
    assert [role for role, _ in spoken] == ["user", "assistant"], events
    return spoken, events


async def sim_sessions(sim_url: str) -> list[dict[str, Any]]:
    """The simulator's record of every upstream session it served."""
    url = sim_url.replace("ws://", "http://").replace("/v1/realtime", "/_sim/sessions")

    def get() -> list[dict[str, Any]]:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            sessions: list[dict[str, Any]] = json.load(response)["sessions"]
            return sessions

    return await asyncio.to_thread(get)


async def until_async(probe: Callable[[], Awaitable[bool]]) -> None:
    """Poll an async ``probe`` until it holds, failing after TIMEOUT."""
    async with asyncio.timeout(TIMEOUT):
        while not await probe():  # noqa: ASYNC110 - the simulator is polled over HTTP
            await asyncio.sleep(0.05)


def stored_turns(endpoint: str, table: str, sub: str) -> Spoken:
    """The turns of ``sub`` in the table, in order."""
    client = dynamodb_client(region="us-east-1", endpoint_url=endpoint)
    page = client.query(
        TableName=table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :turn)",
        ExpressionAttributeValues={
            ":pk": {"S": schema.session_pk(sub)},
            ":turn": {"S": schema.TURN_PREFIX},
        },
    )
    return [(i["role"]["S"], i["text"]["S"]) for i in page["Items"]]


def seeded(session: dict[str, Any]) -> Spoken:
    """What a simulated upstream session was seeded with (conversation.item.create)."""
    return [(i["role"], i["text"]) for i in session["items_created"]]


def only_session(relay: Relay) -> RelaySession:
    (session,) = relay.sessions
    return session


# Fixtures


@pytest.fixture
async def sim_url() -> AsyncIterator[str]:
    """The simulated GA model, replying at once with 400 ms of audio."""
    server = await serve_simulator("127.0.0.1", 0, SimulatorOptions(pace=0.0, reply_ms=400))
    try:
        yield listening_url(server)
    finally:
        server.close()
        await server.wait_closed()


StartRelay = Callable[..., Awaitable[Relay]]


@pytest.fixture
def own_moto() -> Iterator[MotoProcess]:
    """A dedicated moto server this test may stop (never the shared one)."""
    server = MotoProcess()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def recorded_relay(
    dynamodb_endpoint: str, start_relay: StartRelay, monkeypatch: pytest.MonkeyPatch
) -> StartRelay:
    """Factory: a started relay whose recorder writes to ``table`` on ``endpoint``."""
    # The relay's other table clients (bot binding, session owners) find it through boto3.
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint)

    async def start(
        upstream_url: str, table: str, endpoint: str = dynamodb_endpoint, **overrides: Any
    ) -> Relay:
        recorder = SessionRecorder(
            table,
            region="us-east-1",
            endpoint_url=endpoint,
            retry=RetryPolicy(max_attempts=2, base_delay=0.05, max_delay=0.1),
            connect_timeout=0.5,
            read_timeout=0.5,
            warn_interval=0.0,
        )
        return await start_relay(upstream_url, recorder, table_name=table, **overrides)

    return start


# Records and resume


async def test_drained_session_resumes_on_another_relay_with_every_turn(
    sim_url: str, recorded_relay: StartRelay, dynamodb_endpoint: str, table_name: str
) -> None:
    """Relay A drains mid-conversation; on relay B the model is seeded with every turn so far."""
    relay_a = await recorded_relay(sim_url, table_name)
    relay_b = await recorded_relay(sim_url, table_name)
    token = mint("bot-resume")
    spoken: Spoken = []
    async with open_client(relay_a, token) as ws:
        await recv_until(ws, "session.updated")
        for _ in range(2):
            said, _ = await speak_turn(ws)
            spoken += said
        await relay_a.drain(0.1)
        with pytest.raises(ConnectionClosed):
            await recv_json(ws)
        assert ws.close_code == 1001
    # The drain flushed the records: all four turns are in the table, usage too.
    assert stored_turns(dynamodb_endpoint, table_name, "bot-resume") == spoken
    metrics: dict[str, Any] = relay_a.metrics.render()
    assert metrics["RecordsWritten"] >= 5  # 4 turns and the connection summary
    assert metrics["RecordsDropped"] == 0

    async with open_client(relay_b, token) as ws:
        before_speech = await recv_until(ws, "session.updated")
        said, events = await speak_turn(ws)
    # The client saw one session.created and none of the seeds' acknowledgements.
    assert [e["type"] for e in before_speech] == ["session.created", "session.updated"]
    assert not any(
        part.get("type") in ("input_text", "output_text")
        for e in events
        if e["type"] in ("conversation.item.added", "conversation.item.done")
        for part in e["item"]["content"]
    )
    sessions = await sim_sessions(sim_url)
    assert len(sessions) == 2
    assert seeded(sessions[1]) == spoken
    assert relay_b.metrics.render()["SessionsResumed"] == 1
    assert said[0][0] == "user"  # the conversation carries on


async def test_kill_9_loses_at_most_the_unflushed_tail(
    sim_url: str,
    recorded_relay: StartRelay,
    dynamodb_endpoint: str,
    table_name: str,
    tmp_path: Path,
) -> None:
    """A relay killed with SIGKILL loses only unwritten records; relay B resumes with the rest."""
    port = free_port()
    env = environ_for_subprocess(
        PORT=str(port),
        RELAY_HOST="127.0.0.1",
        RELAY_TOKEN_SECRET=relay_config(sim_url).token_secret,
        OPENAI_API_KEY=UPSTREAM_KEY,
        OPENAI_REALTIME_URL=sim_url,
        TABLE_NAME=table_name,
        AWS_ENDPOINT_URL_DYNAMODB=dynamodb_endpoint,
        AWS_REGION="us-east-1",
        RELAY_INTERNAL_PORT="0",
        LOG_LEVEL="WARNING",
    )
    with (tmp_path / "relay-a.log").open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "relay", env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    try:
        await asyncio.to_thread(wait_for_port, port, asyncio.get_running_loop().time() + TIMEOUT)
        relay_a_url = f"ws://127.0.0.1:{port}/v1/realtime"
        token = mint("bot-killed")
        spoken: Spoken = []
        async with open_client(_at(relay_a_url), token) as ws:
            await recv_until(ws, "session.updated")
            for _ in range(2):
                said, _ = await speak_turn(ws)
                spoken += said
            # The writer is asynchronous: wait until the table has caught up, then kill.
            await eventually(
                lambda: len(stored_turns(dynamodb_endpoint, table_name, "bot-killed")) == 4
            )
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            with pytest.raises(ConnectionClosed):
                await recv_json(ws)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == -signal.SIGKILL

    relay_b = await recorded_relay(sim_url, table_name)
    async with open_client(relay_b, token) as ws:
        await recv_until(ws, "session.updated")
        await speak_turn(ws)
    sessions = await sim_sessions(sim_url)
    assert seeded(sessions[-1]) == spoken


class _At:
    """Just enough of a Relay for ``open_client``: its URL."""

    def __init__(self, url: str) -> None:
        self.url = url


def _at(url: str) -> Any:
    return _At(url)


# Re-attach


def numbered_burst_script(go: list[asyncio.Event]) -> Any:
    """On response.create: for each event in ``go``, wait for it, then send 20 numbered deltas."""

    async def script(ws: ServerConnection, upstream: FakeUpstream) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(json.dumps({"type": "session.created", "session": {}}))
            async for message in ws:
                assert isinstance(message, str)
                upstream.received.append(message)
                kind = json.loads(message)["type"]
                if kind == "session.update":
                    await ws.send(json.dumps({"type": "session.updated", "session": {}}))
                elif kind == "response.create":
                    seq = 0
                    for signal_ in go:
                        await signal_.wait()
                        for _ in range(20):
                            delta = {"type": "response.output_audio.delta", "seq": seq}
                            await ws.send(json.dumps(delta | {"delta": "AAAA"}))
                            seq += 1
                    await ws.send(json.dumps({"type": "response.done", "response": {}}))

    return script


async def test_abrupt_disconnect_reattaches_to_the_same_upstream_session(
    fake_upstream: FakeUpstream, recorded_relay: StartRelay, table_name: str
) -> None:
    """A client whose TCP connection dies returns within the grace: nothing lost or doubled."""
    go = [asyncio.Event(), asyncio.Event()]
    fake_upstream.script = numbered_burst_script(go)
    relay = await recorded_relay(fake_upstream.url, table_name, max_sessions_per_subject=1)
    token = mint("bot-blip")
    async with open_client(relay, token) as ws:
        await recv_until(ws, "session.updated")
        await ws.send(json.dumps({"type": "response.create"}))
        await eventually(lambda: any('"response.create"' in m for m in fake_upstream.received))
        ws.transport.abort()  # no close frame: a network blip
    session = only_session(relay)
    await eventually(lambda: session.detached)
    go[0].set()  # 20 deltas while nobody is attached: buffered
    await eventually(lambda: session.core.held_frames == 20)

    async with open_client(relay, token) as ws:  # same subject, limit 1: not counted twice
        first = [await recv_json(ws) for _ in range(20)]
        go[1].set()
        rest = await recv_until(ws, "response.done")
    deltas = [e["seq"] for e in first + rest if e["type"] == "response.output_audio.delta"]
    assert deltas == list(range(40))
    assert len(fake_upstream.requests) == 1  # the model saw one session
    assert relay.metrics.render()["SessionsReattached"] == 1


async def test_reattach_buffer_overflow_ends_the_held_session(
    fake_upstream: FakeUpstream, recorded_relay: StartRelay, table_name: str
) -> None:
    """Buffering past the bound while detached ends the session cleanly and counts it."""
    go = [asyncio.Event()]
    fake_upstream.script = numbered_burst_script(go)
    relay = await recorded_relay(fake_upstream.url, table_name, reattach_buffer_bytes=300)
    async with open_client(relay, mint("bot-overflow")) as ws:
        await recv_until(ws, "session.updated")
        await ws.send(json.dumps({"type": "response.create"}))
        await eventually(lambda: any('"response.create"' in m for m in fake_upstream.received))
        ws.transport.abort()
    await eventually(lambda: any(s.detached for s in relay.sessions))
    go[0].set()
    async with asyncio.timeout(TIMEOUT):
        await fake_upstream.closed.wait()
    assert fake_upstream.close_codes == [1000]
    await eventually(lambda: not relay.sessions)
    assert relay.metrics.render()["ReattachOverflows"] == 1


async def test_drain_ends_detached_sessions_at_once(
    fake_upstream: FakeUpstream, recorded_relay: StartRelay, table_name: str
) -> None:
    """A drain does not wait out the grace period of a session nobody can re-attach to."""
    relay = await recorded_relay(fake_upstream.url, table_name, reattach_seconds=3 * TIMEOUT)
    async with open_client(relay, mint("bot-gone")) as ws:
        await recv_until(ws, "session.updated")
        ws.transport.abort()
    await eventually(lambda: any(s.detached for s in relay.sessions))
    async with asyncio.timeout(TIMEOUT):
        await relay.drain(2 * TIMEOUT)
    assert not relay.sessions
    await eventually(lambda: fake_upstream.close_codes == [1000])


async def test_a_normal_close_ends_the_upstream_at_once(
    fake_upstream: FakeUpstream, recorded_relay: StartRelay, table_name: str
) -> None:
    """A client that closes with 1000 is not held: its upstream closes and a reconnect is new."""
    relay = await recorded_relay(fake_upstream.url, table_name)
    async with open_client(relay, mint("bot-bye")) as ws:
        await recv_until(ws, "session.updated")
    async with asyncio.timeout(TIMEOUT):
        await fake_upstream.closed.wait()
    assert fake_upstream.close_codes == [1000]
    await eventually(lambda: not relay.sessions)


# Rollover


async def test_rollover_is_invisible_to_the_client(
    sim_url: str, recorded_relay: StartRelay, table_name: str
) -> None:
    """Past the configured maximum the model session is replaced, seeded, unnoticed."""
    relay = await recorded_relay(sim_url, table_name, rollover_seconds=1.5)
    async with open_client(relay, mint("bot-long")) as ws:
        seen = await recv_until(ws, "session.updated")
        # The client's own settings carry over to the fresh session too.
        voice = {"type": "realtime", "audio": {"output": {"voice": "cedar"}}}
        await ws.send(json.dumps({"type": "session.update", "session": voice}))
        seen += await recv_until(ws, "session.updated")
        said, events = await speak_turn(ws)
        seen += events

        async def rolled_over() -> bool:
            sessions = await sim_sessions(sim_url)
            return len(sessions) >= 2 and sessions[0]["closed"]

        await until_async(rolled_over)
        said_after, events = await speak_turn(ws)  # answered by the fresh session
        seen += events
        assert ws.close_code is None
    types = [e["type"] for e in seen]
    assert types.count("session.created") == 1
    assert types.count("session.updated") == 2  # the agent's and the client's, once each
    sessions = await sim_sessions(sim_url)
    assert sessions[0]["close_code"] == 1000
    assert seeded(sessions[1]) == said
    replayed = sessions[1]["session_updates"]
    assert len(replayed) == 2
    assert replayed[-1]["audio"]["output"]["voice"] == "cedar"
    assert said_after[0][0] == "user"
    rollovers: Any = relay.metrics.render()["Rollovers"]
    assert rollovers >= 1


async def test_rollover_switches_at_its_deadline_when_no_pause_comes(
    sim_url: str, recorded_relay: StartRelay, table_name: str, relay_logs: list[str]
) -> None:
    """A user who never stops talking cannot block a rollover: it switches at its deadline."""
    # The forced switch comes open_timeout + rollover_seconds / 4 after the rollover starts;
    # 3 s keeps that inside TIMEOUT yet lets a busy CI machine dial the first upstream.
    relay = await recorded_relay(sim_url, table_name, rollover_seconds=1.0, open_timeout=3.0)
    async with open_client(relay, mint("bot-talker")) as ws:
        await recv_until(ws, "session.updated")
        await send_audio(ws, tone(300))  # speech starts and, with no silence, never stops
        await recv_until(ws, "input_audio_buffer.speech_started")
        assert not only_session(relay).record.turn_taking.between_turns

        async def rolled_over() -> bool:
            sessions = await sim_sessions(sim_url)
            return len(sessions) >= 2 and sessions[0]["closed"]

        await until_async(rolled_over)
        said, _ = await speak_turn(ws)  # the fresh session hears and answers
        assert ws.close_code is None
    switches = [line for line in relay_logs if "switched to the fresh upstream" in line]
    assert '"forced": true' in switches[0]
    assert said[0][0] == "user"


# Storage failures


async def test_storage_outage_never_stalls_the_audio(
    sim_url: str, recorded_relay: StartRelay, own_moto: MotoProcess, relay_logs: list[str]
) -> None:
    """With the table's server stopped mid-session, audio keeps flowing; failures are reported."""
    create_table(own_moto.endpoint, "outage")
    relay = await recorded_relay(sim_url, "outage", endpoint=own_moto.endpoint)
    async with open_client(relay, mint("bot-outage")) as ws:
        await recv_until(ws, "session.updated")
        await speak_turn(ws)
        await relay.recorder.flush(TIMEOUT)
        own_moto.stop()
        for _ in range(2):
            _, events = await speak_turn(ws)
            assert any(e["type"] == "response.output_audio.delta" for e in events)
        await eventually(lambda: relay.recorder.stats().failed_attempts > 0)
    metrics: dict[str, Any] = relay.metrics.render()
    assert metrics["RecordWriteFailures"] > 0
    assert any('"level": "WARNING"' in line and "session records" in line for line in relay_logs)
