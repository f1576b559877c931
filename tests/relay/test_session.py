"""RelaySession's timers, driven directly with recording transports (no sockets needed)."""

from __future__ import annotations

import asyncio
from typing import Any

from relay import wire
from relay.admission import Admission
from relay.metrics import Metrics
from relay.policy import SessionPolicy
from relay.records import NullRecorder
from relay.session import _OPEN, RelaySession, SessionContext
from relay.tokens import Claims


class RecordingTransport:
    """Records writes and aborts, like an asyncio transport that never blocks."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def open_session() -> tuple[RelaySession, RecordingTransport, RecordingTransport]:
    context = SessionContext(
        upstream_url="ws://127.0.0.1:9/v1/realtime",
        api_key="",
        metrics=Metrics(namespace="n", service="s", active_sessions=lambda: 0),
        policy=SessionPolicy(()),
        agent_update=b"{}",
        max_frame_bytes=2**20,
        max_upstream_frame_bytes=2**20,
        pre_upstream_queue_bytes=2**16,
        ping_interval=20,
        ping_timeout=20,
        open_timeout=10,
        close_timeout=5,
        max_session_seconds=3600,
        recorder=NullRecorder(),
    )
    session = RelaySession(
        context,
        claims=Claims(sub="bot", jti="j", exp=0, iat=0),
        ticket=Admission(0, 0).admit("bot"),
        model="m",
        on_finished=lambda _: None,
    )
    client, upstream = RecordingTransport(), RecordingTransport()
    session._client = client  # type: ignore[assignment]
    session._upstream = upstream  # type: ignore[assignment]
    session._upstream_state = _OPEN
    return session, client, upstream


def pings(transport: RecordingTransport, *, masked: bool) -> list[Any]:
    reader = wire.FrameReader(masked=masked, max_size=1 << 20)
    return [f for chunk in transport.writes for f in reader.feed(chunk)[0] if f[0] == wire.PING]


async def test_a_paused_model_socket_is_not_judged_dead() -> None:
    """While the client's back-pressure pauses reads from the model, its pongs are not due."""
    session, _, upstream = open_session()
    session._upstream_ping_sent = asyncio.get_running_loop().time() - 60  # long overdue
    session.pause_writing()  # the client's socket is full: the relay stops reading the model
    session._keepalive_up()
    assert session._upstream_state == _OPEN
    assert session._upstream_ping_sent is None
    session.resume_writing()
    session._keepalive_up()  # reads resumed: a fresh ping, judged next period
    assert len(pings(upstream, masked=True)) == 1
    assert session._upstream_state == _OPEN


async def test_a_paused_client_socket_is_not_judged_dead() -> None:
    """While the model's back-pressure pauses reads from the client, the client is not dropped."""
    session, client, _ = open_session()
    session._client_ping_sent = asyncio.get_running_loop().time() - 60
    session.upstream_pause_writing()
    session._keepalive()
    assert not client.aborted
    session.upstream_resume_writing()
    session._keepalive()
    assert len(pings(client, masked=False)) == 1


async def test_an_unanswered_ping_drops_the_client() -> None:
    """Without back-pressure, a ping unanswered for the timeout drops the client."""
    session, client, _ = open_session()
    session._client_ping_sent = asyncio.get_running_loop().time() - 60
    session._keepalive()
    assert client.aborted
