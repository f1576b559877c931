"""Upstream faults: the client always learns what happened, and how the session ended."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tests.conftest import TIMEOUT, free_port
from tests.relay.conftest import (
    FakeUpstream,
    StartRelay,
    eventually,
    mint,
    open_client,
    recv_json,
    recv_until,
)


class Silent(asyncio.Protocol):
    """Accepts TCP connections and never says a word."""

    def __init__(self) -> None:
        self.transports: list[asyncio.BaseTransport] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transports.append(transport)

    def close(self) -> None:
        for transport in self.transports:
            transport.close()


async def collect(ws, events: list[dict[str, Any]]) -> None:
    """Append every event to ``events`` until the connection closes."""
    while True:
        events.append(await recv_json(ws))


async def closing_events(ws) -> tuple[list[dict[str, Any]], int | None, str]:
    """Every event until the relay closes, then its close code and reason."""
    events: list[dict[str, Any]] = []
    with pytest.raises(ConnectionClosed) as closed:
        await collect(ws, events)
    rcvd = closed.value.rcvd
    assert rcvd is not None, "the relay closed without a close frame"
    return events, rcvd.code, rcvd.reason


@pytest.mark.parametrize("status", [401, 403, 500], ids=["unauthorized", "forbidden", "error"])
async def test_upstream_refusal_is_an_error_event_then_1011(
    start_relay: StartRelay, fake_upstream: FakeUpstream, status: int
) -> None:
    """OpenAI refusing the handshake reaches the client as an error event and close 1011."""
    fake_upstream.refuse_status = status
    relay = await start_relay(fake_upstream.url)
    async with open_client(relay, mint()) as ws:
        events, code, _ = await closing_events(ws)
    assert events[-1]["type"] == "error"
    assert events[-1]["error"]["code"] == "upstream_error"
    assert f"HTTP {status}" in events[-1]["error"]["message"]
    assert code == 1011
    assert relay.metrics.counters["UpstreamErrors"] == 1


async def test_unreachable_upstream_is_an_error_event_then_1011(start_relay: StartRelay) -> None:
    """Nothing listening upstream: error event, close 1011."""
    relay = await start_relay(f"ws://127.0.0.1:{free_port()}/v1/realtime")
    async with open_client(relay, mint()) as ws:
        events, code, _ = await closing_events(ws)
    assert events[-1]["error"]["code"] == "upstream_error"
    assert code == 1011


async def test_upstream_that_never_answers_the_handshake_times_out(
    start_relay: StartRelay,
) -> None:
    """An upstream that accepts TCP but never answers is given up at the open timeout."""
    silent = Silent()
    server = await asyncio.get_running_loop().create_server(lambda: silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        relay = await start_relay(f"ws://127.0.0.1:{port}/v1/realtime", open_timeout=0.5)
        async with open_client(relay, mint()) as ws:
            events, code, _ = await closing_events(ws)
    finally:
        server.close()
        silent.close()
    assert "did not answer in time" in events[-1]["error"]["message"]
    assert code == 1011


async def test_beta_shape_close_4000_becomes_1011_with_the_code(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    """An upstream close 4000 is forwarded as its error event, then an error event and 1011."""

    async def beta_refusal(ws: ServerConnection, upstream: FakeUpstream) -> None:
        await ws.recv()
        await ws.send(json.dumps({"type": "error", "error": {"code": "beta_api_shape_disabled"}}))
        await ws.close(4000, "beta_api_shape_disabled")

    fake_upstream.script = beta_refusal
    relay = await start_relay(fake_upstream.url)
    async with open_client(relay, mint()) as ws:
        events, code, reason = await closing_events(ws)
    assert events[0]["error"]["code"] == "beta_api_shape_disabled"  # the model's own event
    assert events[-1]["error"]["code"] == "upstream_error"
    assert "4000" in events[-1]["error"]["message"]
    assert code == 1011
    assert "4000" in reason


async def test_upstream_drop_mid_session_is_an_error_event_then_1011(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    """The model's TCP connection dying mid-session: error event, close 1011."""

    async def drop(ws: ServerConnection, upstream: FakeUpstream) -> None:
        await ws.send(json.dumps({"type": "session.created"}))
        await ws.recv()
        ws.transport.abort()

    fake_upstream.script = drop
    relay = await start_relay(fake_upstream.url)
    async with open_client(relay, mint()) as ws:
        events, code, _ = await closing_events(ws)
    assert events[0]["type"] == "session.created"
    assert events[-1]["error"]["message"] == "lost the connection to the model"
    assert code == 1011


async def test_session_expired_1001_passes_through_with_its_reason(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    """OpenAI's 60-minute cap (1001 + reason) reaches the client as 1001 + the same reason."""
    reason = "Your session hit the maximum duration of 60 minutes."

    async def expire(ws: ServerConnection, upstream: FakeUpstream) -> None:
        await ws.recv()
        await ws.close(1001, reason)

    fake_upstream.script = expire
    relay = await start_relay(fake_upstream.url)
    async with open_client(relay, mint()) as ws:
        events, code, got_reason = await closing_events(ws)
    assert events == []
    assert (code, got_reason) == (1001, reason)


async def test_client_close_reaches_the_model(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    """When the client hangs up, the model's session is closed too (no leaked upstream)."""
    relay = await start_relay(fake_upstream.url)
    async with open_client(relay, mint()) as ws:
        await recv_until(ws, "session.updated")
    async with asyncio.timeout(TIMEOUT):
        await fake_upstream.closed.wait()
    assert fake_upstream.close_codes == [1000]
    await eventually(lambda: not relay.sessions)
    assert relay.admission.active == 0


async def test_session_length_limit_closes_with_1008(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    """A session reaching RELAY_MAX_SESSION_SECONDS gets an error event and close 1008."""
    relay = await start_relay(fake_upstream.url, max_session_seconds=0.5)
    async with open_client(relay, mint()) as ws:
        events, code, _ = await closing_events(ws)
    assert events[-1]["error"]["code"] == "session_expired"
    assert code == 1008


async def test_dead_client_is_detected_by_ping(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    """A client that stops answering pings is dropped; no re-attach in time closes the model."""
    relay = await start_relay(
        fake_upstream.url, ping_interval=0.2, ping_timeout=0.2, reattach_seconds=0.3
    )
    async with open_client(relay, mint(), ping_interval=None, close_timeout=0.1) as ws:
        await recv_until(ws, "session.updated")
        ws.transport.pause_reading()  # stops answering pings, socket still open
        async with asyncio.timeout(TIMEOUT):
            await fake_upstream.closed.wait()
    # Held for the grace period (a dead peer may come back), then ended normally.
    assert fake_upstream.close_codes == [1000]


async def test_a_model_that_stops_answering_pings_is_an_upstream_fault(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    """The relay pings the model too; silence past the timeout is an error event and 1011."""

    verdict_seen = asyncio.Event()

    async def go_silent(ws: ServerConnection, upstream: FakeUpstream) -> None:
        await ws.send(json.dumps({"type": "session.created"}))
        ws.transport.pause_reading()  # alive at TCP level, deaf to pings
        await verdict_seen.wait()
        ws.transport.resume_reading()  # now notice that the relay hung up
        await ws.wait_closed()

    fake_upstream.script = go_silent
    relay = await start_relay(fake_upstream.url, ping_interval=0.2, ping_timeout=0.2)
    async with open_client(relay, mint()) as ws:
        events, code, _ = await closing_events(ws)
    verdict_seen.set()
    assert events[-1]["error"]["message"] == "the model stopped answering pings"
    assert code == 1011


async def test_the_models_pings_are_answered(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    """OpenAI's keepalive pings get pongs from the relay."""
    latencies: list[float] = []

    async def ping_relay(ws: ServerConnection, upstream: FakeUpstream) -> None:
        await ws.send(json.dumps({"type": "session.created"}))
        pong = await ws.ping()
        async with asyncio.timeout(TIMEOUT):
            latencies.append(await pong)
        await ws.send(json.dumps({"type": "test.pinged"}))
        await ws.wait_closed()

    fake_upstream.script = ping_relay
    relay = await start_relay(fake_upstream.url)
    async with open_client(relay, mint()) as ws:
        await recv_until(ws, "test.pinged")
    assert len(latencies) == 1
