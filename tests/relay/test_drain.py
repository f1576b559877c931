"""SIGTERM on a real relay process: health turns 503, new sessions refused, live ones drain."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import TIMEOUT, free_port
from tests.deadlines import eventually, eventually_async
from tests.relay.conftest import (
    SECRET,
    SENSITIVE,
    UPSTREAM_KEY,
    FakeUpstream,
    append_event,
    environ_for_subprocess,
    mint,
    recv_until,
)


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """A one-shot HTTP/1.1 GET on loopback: status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: relay\r\n\r\n".encode())
        async with asyncio.timeout(TIMEOUT):
            response = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def health(port: int) -> int | None:
    """/healthz status, or None while nothing listens."""
    try:
        return (await http_get(port, "/healthz"))[0]
    except OSError:
        return None


class RelayProcess:
    """``python -m relay`` as a subprocess, stdout to a file."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log
        self.url = f"ws://127.0.0.1:{port}/v1/realtime"


@contextlib.asynccontextmanager
async def spawn_relay(
    fake_upstream: FakeUpstream, tmp_path: Path, **env: str
) -> AsyncIterator[RelayProcess]:
    """``python -m relay`` in front of the scripted upstream, healthy, killed at the end."""
    port = free_port()
    log = tmp_path / f"relay-{port}.log"
    environ = environ_for_subprocess(
        PORT=str(port),
        RELAY_HOST="127.0.0.1",
        OPENAI_REALTIME_URL=fake_upstream.url,
        OPENAI_API_KEY=UPSTREAM_KEY,
        RELAY_TOKEN_SECRET=SECRET,
        **env,
    )
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "relay", env=environ, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    relay = RelayProcess(proc, port, log)
    try:
        async with asyncio.timeout(3 * TIMEOUT):
            while await health(port) != 200:
                assert proc.returncode is None, log.read_text()
                await asyncio.sleep(0.05)
        yield relay
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def relay_process(fake_upstream: FakeUpstream, tmp_path: Path) -> AsyncIterator[RelayProcess]:
    """A relay subprocess in front of the scripted upstream, DRAIN_SECONDS=4."""
    async with spawn_relay(fake_upstream, tmp_path, DRAIN_SECONDS="4", LOG_LEVEL="DEBUG") as relay:
        yield relay


async def speaking_script(ws: ServerConnection, upstream: FakeUpstream) -> None:
    """The default script, plus server VAD: an append starts speech, a commit stops it."""
    with contextlib.suppress(ConnectionClosed):
        await ws.send(json.dumps({"type": "session.created", "session": {"type": "realtime"}}))
        async for message in ws:
            assert isinstance(message, str)
            upstream.received.append(message)
            kind = json.loads(message).get("type")
            if kind == "session.update":
                await ws.send(json.dumps({"type": "session.updated", "session": {}}))
            elif kind == "input_audio_buffer.append":
                await ws.send(json.dumps({"type": "input_audio_buffer.speech_started"}))
            elif kind == "input_audio_buffer.commit":
                await ws.send(json.dumps({"type": "input_audio_buffer.speech_stopped"}))
            elif kind == "response.create":
                await ws.send(json.dumps({"type": "response.output_audio.delta", "delta": "AA"}))
                await ws.send(json.dumps({"type": "response.done", "response": {}}))


async def test_sigterm_hands_a_session_over_at_its_next_turn_boundary(
    relay_process: RelayProcess, fake_upstream: FakeUpstream
) -> None:
    """During drain: /healthz 503, new sessions 503; a live session mid-turn keeps flowing,
    and is told to reconnect (1001) once its turn ends; then the relay exits 0."""
    fake_upstream.script = speaking_script
    headers = {"Authorization": f"Bearer {mint('bot-live')}"}
    async with connect(relay_process.url, additional_headers=headers) as live:
        await recv_until(live, "session.created")
        await live.send(append_event(seed=2))  # someone starts speaking
        await recv_until(live, "input_audio_buffer.speech_started")
        relay_process.proc.send_signal(signal.SIGTERM)

        # 1. Health turns 503 at once, so the balancer stops routing here.
        await eventually_async(lambda: health(relay_process.port), 503)
        # 2. New sessions are refused with 503.
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                relay_process.url, additional_headers={"Authorization": f"Bearer {mint('bot-new')}"}
            ):
                pass
        assert refused.value.response.status_code == 503
        # 3. The live session, mid-turn, still flows both ways.
        before = len(fake_upstream.received)
        await live.send(append_event(seed=3))
        await eventually(lambda: len(fake_upstream.received) > before)
        await live.send(json.dumps({"type": "response.create"}))
        assert (await recv_until(live, "response.done"))[-1]["type"] == "response.done"
        # 4. The turn ends: close 1001 with a reason the page acts on (it reconnects).
        await live.send(json.dumps({"type": "input_audio_buffer.commit"}))
        async with asyncio.timeout(TIMEOUT):
            await live.wait_closed()
    # The close frame the relay sent.
    assert (live.close_code, live.close_reason) == (1001, "relay draining: reconnect")
    async with asyncio.timeout(TIMEOUT):
        assert await relay_process.proc.wait() == 0
    log = relay_process.log.read_text()
    assert '"message": "relay draining"' in log
    assert '"message": "session closed"' in log
    assert '"closed_at_deadline": 0' in log  # moved at its turn boundary, not cut
    for value in SENSITIVE:
        assert value not in log


async def test_sigterm_hands_over_a_never_ending_turn_at_its_deadline(
    relay_process: RelayProcess, fake_upstream: FakeUpstream
) -> None:
    """Someone who never stops talking cannot hold the task: 1001 at the handover deadline."""
    fake_upstream.script = speaking_script
    headers = {"Authorization": f"Bearer {mint('bot-talker')}"}
    async with connect(relay_process.url, additional_headers=headers) as live:
        await recv_until(live, "session.created")
        await live.send(append_event(seed=4))
        await recv_until(live, "input_audio_buffer.speech_started")
        relay_process.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(TIMEOUT):
            await live.wait_closed()
    assert (live.close_code, live.close_reason) == (1001, "relay draining: reconnect")
    async with asyncio.timeout(TIMEOUT):
        assert await relay_process.proc.wait() == 0


async def test_sigterm_without_sessions_exits_at_once(relay_process: RelayProcess) -> None:
    """An idle relay exits 0 on SIGTERM without waiting for the drain deadline."""
    relay_process.proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(TIMEOUT):
        assert await relay_process.proc.wait() == 0
