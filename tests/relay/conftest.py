"""Fixtures for relay tests: a real relay on port 0, a scripted GA upstream, the simulator.

Every credential and audio chunk a test creates is registered in ``SENSITIVE``; an autouse
fixture captures every log line the relay writes during each test (in-process records,
rendered by the relay's own JSON formatter) and fails the test if one of them contains
any registered value.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from relay import tokens
from relay.config import RelayConfig
from relay.logs import JsonFormatter
from relay.server import Relay
from relay.simulator import SimulatorOptions, listening_url, serve_simulator
from tests.conftest import TIMEOUT
from tests.deadlines import eventually as eventually  # re-exported: the relay tests import it here

# asyncio debug mode for relay tests, as websockets runs its own: un-awaited coroutines,
# callbacks from the wrong thread and slow callbacks are reported (STYLE.md).
os.environ.setdefault("PYTHONASYNCIODEBUG", "1")

SECRET = "relay-test-secret-" + "x" * 30
UPSTREAM_KEY = "sk-test-upstream-key-0123456789"
#: Values that must never appear in a log line (tokens, keys, audio), filled by tests.
SENSITIVE: set[str] = {SECRET, UPSTREAM_KEY}


def mint(sub: str = "bot-1", ttl: int = 300, secret: str = SECRET, **kw: Any) -> str:
    """A relay token, registered as sensitive."""
    token = tokens.mint(secret, sub, ttl, **kw)
    SENSITIVE.add(token)
    return token


def audio_b64(n_bytes: int = 960, seed: int = 0) -> str:
    """Base64 PCM (20 ms at 24 kHz by default), registered as sensitive."""
    pcm = bytes((seed * 31 + i * 7) % 256 for i in range(n_bytes))
    chunk = base64.b64encode(pcm).decode()
    SENSITIVE.add(chunk[:64])
    return chunk


def append_event(seed: int = 0, n_bytes: int = 960) -> str:
    """An input_audio_buffer.append event as the openai SDK serializes it."""
    return json.dumps({"type": "input_audio_buffer.append", "audio": audio_b64(n_bytes, seed)})


async def recv_json(ws: ClientConnection) -> dict[str, Any]:
    """Next event, decoded, within TIMEOUT."""
    async with asyncio.timeout(TIMEOUT):
        raw = await ws.recv()
    event: dict[str, Any] = json.loads(raw)
    return event


async def recv_until(ws: ClientConnection, event_type: str) -> list[dict[str, Any]]:
    """Events up to and including the first of ``event_type``."""
    seen = []
    while True:
        event = await recv_json(ws)
        seen.append(event)
        if event["type"] == event_type:
            return seen


# Log capture


@pytest.fixture(autouse=True)
def relay_logs() -> Iterator[list[str]]:
    """Every JSON log line emitted during the test; none may contain a sensitive value."""
    formatter = JsonFormatter()
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            # Unredacted: the relay must not pass secrets at all, not rely on redaction.
            lines.append(formatter.render(record))

    handler = Capture(logging.DEBUG)
    relay_logger = logging.getLogger("relay")
    old_level = relay_logger.level
    relay_logger.addHandler(handler)
    relay_logger.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        relay_logger.removeHandler(handler)
        relay_logger.setLevel(old_level)
    for line in lines:
        leaked = [value[:12] + "…" for value in SENSITIVE if value and value in line]
        assert not leaked, f"a log line carries a secret or audio ({leaked}): {line[:200]}"


# The scripted upstream


Script = Callable[[ServerConnection, "FakeUpstream"], Awaitable[None]]


@dataclass
class FakeUpstream:
    """A GA-speaking WebSocket server on port 0 whose behaviour each test scripts."""

    url: str = ""
    server: Server | None = None
    #: Raw text messages received, in order, across connections.
    received: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    #: Refuse handshakes with this HTTP status.
    refuse_status: int | None = None
    #: When set, handshakes wait for it (the model is slow to open a session).
    hold_handshake: asyncio.Event | None = None
    #: Replaces the default behaviour (session.created, then echo_default).
    script: Script | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_codes: list[int | None] = field(default_factory=list)

    async def wait_received(self, count: int) -> list[dict[str, Any]]:
        """The first ``count`` events received, once they have arrived."""
        await eventually(lambda: len(self.received) >= count)
        return [json.loads(m) for m in self.received[:count]]


async def default_script(ws: ServerConnection, upstream: FakeUpstream) -> None:
    """session.created; session.updated per update; a numbered burst per response.create."""
    with contextlib.suppress(ConnectionClosed):  # the relay hung up first: fine
        await _default_script(ws, upstream)


async def _default_script(ws: ServerConnection, upstream: FakeUpstream) -> None:
    await ws.send(json.dumps({"type": "session.created", "session": {"type": "realtime"}}))
    async for message in ws:
        assert isinstance(message, str)
        upstream.received.append(message)
        kind = json.loads(message).get("type")
        if kind == "session.update":
            await ws.send(json.dumps({"type": "session.updated", "session": {"type": "realtime"}}))
        elif kind == "response.create":
            for i in range(50):
                await ws.send(
                    json.dumps({"type": "response.output_audio.delta", "seq": i, "delta": "AAAA"})
                )
            await ws.send(
                json.dumps({"type": "response.done", "response": {"status": "completed"}})
            )


@pytest.fixture
async def fake_upstream() -> AsyncIterator[FakeUpstream]:
    """The scripted GA upstream; tests set ``script`` / ``refuse_status`` before connecting."""
    upstream = FakeUpstream()

    async def process_request(connection: ServerConnection, request: Request) -> Response | None:
        upstream.requests.append(request)
        if upstream.hold_handshake is not None:
            await upstream.hold_handshake.wait()
        if upstream.refuse_status is not None:
            return connection.respond(upstream.refuse_status, "refused\n")
        return None

    async def handler(ws: ServerConnection) -> None:
        upstream.connected.set()
        try:
            await (upstream.script or default_script)(ws, upstream)
        finally:
            upstream.close_codes.append(ws.close_code)
            upstream.closed.set()

    server = await serve(
        handler, "127.0.0.1", 0, process_request=process_request, compression=None, max_size=None
    )
    upstream.server = server
    upstream.url = listening_url(server)
    try:
        yield upstream
    finally:
        server.close()
        await server.wait_closed()


# The relay


def relay_config(upstream_url: str, **overrides: Any) -> RelayConfig:
    """A test configuration: loopback, port 0, no metrics task, short timeouts."""
    config = RelayConfig(
        token_secret=SECRET,
        openai_api_key=UPSTREAM_KEY,
        host="127.0.0.1",
        port=0,
        internal_port=0,
        upstream_url=upstream_url,
        metrics_interval=0,
        open_timeout=TIMEOUT / 4,
        close_timeout=TIMEOUT / 4,
    )
    return config.with_overrides(**overrides)


StartRelay = Callable[..., Awaitable[Relay]]


@pytest.fixture
async def start_relay() -> AsyncIterator[StartRelay]:
    """Factory: ``await start_relay(upstream_url, recorder=None, agent=None, **config_overrides)``
    (``agent``: an ``AgentConfig`` instead of the default one; ``meeting_delivery``: the
    callback that hands meeting events to a live session)."""
    relays: list[Relay] = []

    async def start(
        upstream_url: str,
        recorder: Any = None,
        agent: Any = None,
        meeting_delivery: Any = None,
        **overrides: Any,
    ) -> Relay:
        relay = Relay(
            relay_config(upstream_url, **overrides),
            recorder=recorder,
            agent=agent,
            meeting_delivery=meeting_delivery,
        )
        await relay.start()
        relays.append(relay)
        return relay

    try:
        yield start
    finally:
        for relay in relays:
            await relay.close()


@pytest.fixture
async def relay(start_relay: StartRelay, fake_upstream: FakeUpstream) -> Relay:
    """A relay in front of the scripted upstream, default limits."""
    return await start_relay(fake_upstream.url)


@pytest.fixture
async def simulator_url() -> AsyncIterator[str]:
    """The simulated GA model (relay.simulator) in-process, replies sent without pacing."""
    server = await serve_simulator("127.0.0.1", 0, SimulatorOptions(pace=0.0, reply_ms=600))
    try:
        yield listening_url(server)
    finally:
        server.close()
        await server.wait_closed()


def bearer(token: str) -> Headers:
    """Headers carrying a relay token the way the openai SDK does."""
    return Headers({"Authorization": f"Bearer {token}"})


def open_client(relay: Relay, token: str | None = None, **kwargs: Any) -> Any:
    """``websockets`` client connect() to the relay with a Bearer token."""
    headers = kwargs.pop("additional_headers", None)
    if headers is None and token is not None:
        headers = bearer(token)
    return connect(
        relay.url,
        additional_headers=headers,
        open_timeout=TIMEOUT,
        compression=None,
        max_size=None,
        **kwargs,
    )


def environ_for_subprocess(**extra: str) -> dict[str, str]:
    """The current environment plus ``extra`` (relay subprocesses)."""
    env = dict(os.environ)
    env.update(extra)
    return env
