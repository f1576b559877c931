"""Property-based hostile input for the relay's two entry points, over real sockets.

- Handshake: arbitrary request heads (methods, targets, queries, the headers the relay
  reads, valid and invalid tokens, raw garbage). Every one gets a complete HTTP answer
  (never a 500, never silence) and the relay keeps answering ``/healthz``.
- Frames: arbitrary client frames inside a live session (events of every filtered type
  with random bodies, NaN, deep nesting, escapes, binary, invalid UTF-8). The relay never
  drops the session: a well-formed append sent after them still reaches the model.

Hypothesis drives the examples from a worker thread; each example runs on the test's
event loop (``run_coroutine_threadsafe``), where the relay serves. Bounded for ``make
test``: each property runs a fixed number of examples, and no example database is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Coroutine
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from relay.server import Relay
from tests.conftest import TIMEOUT
from tests.relay.conftest import (
    FakeUpstream,
    StartRelay,
    append_event,
    eventually,
    mint,
    open_client,
)

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    # The relay and the fake model are meant to be shared by every example: surviving
    # one input after another is the property.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: Status codes a handshake may earn (101 with a valid token and upgrade headers; 505
#: from websockets for a valid token's upgrade over HTTP/1.0).
ANSWERS = {101, 200, 400, 401, 403, 404, 405, 426, 429, 431, 503, 505}


async def tolerant_model(ws: ServerConnection, upstream: FakeUpstream) -> None:
    """A model that records every event and answers session.update, whatever it is sent
    (OpenAI answers a bad event with an error event; it does not hang up)."""
    with contextlib.suppress(ConnectionClosed):
        await ws.send(json.dumps({"type": "session.created", "session": {"type": "realtime"}}))
        async for message in ws:
            upstream.received.append(str(message))
            if isinstance(message, str) and '"session.update"' in message[:40]:
                await ws.send(json.dumps({"type": "session.updated", "session": {}}))


def on_loop() -> Callable[[Coroutine[Any, Any, None]], None]:
    """A function that runs a coroutine on the current loop from another thread, and waits."""
    loop = asyncio.get_running_loop()

    def run(coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=3 * TIMEOUT)

    return run


# Handshakes

_TOKEN_FOR_FUZZ = mint("bot-fuzz", ttl=3600)
_header_names = st.sampled_from(
    [
        "Host",
        "Authorization",
        "Sec-WebSocket-Protocol",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Upgrade",
        "Connection",
        "Content-Length",
        "Transfer-Encoding",
        "X-Forwarded-For",
    ]
)
_header_values = st.one_of(
    st.sampled_from(
        [
            f"Bearer {_TOKEN_FOR_FUZZ}",
            "Bearer ",
            "Bearer not-a-jwt",
            f"realtime, openai-insecure-api-key.{_TOKEN_FOR_FUZZ}",
            "openai-insecure-api-key.",
            "websocket",
            "Upgrade",
            "13",
            "dGhlIHNhbXBsZSBub25jZQ==",
            "chunked",
            "99999999999999999999",
            "a b",
            "realtime,,",
        ]
    ),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)
_targets = st.one_of(
    st.sampled_from(["/v1/realtime", "/healthz", "/", "/static/agent.js", "/static/../x", "*"]),
    st.builds(
        lambda query: "/v1/realtime?" + query,
        st.lists(
            st.builds(
                lambda k, v: f"{k}={v}",
                st.sampled_from(["model", "token", "a", "intent", "%00", ""]),
                st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=12),
            ),
            max_size=30,
        ).map("&".join),
    ),
    st.integers(0, 40).map(lambda n: "/v1/realtime?" + "&".join(f"f{i}=1" for i in range(n))),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=60),
)
_requests = st.one_of(
    st.builds(
        lambda method, target, version, headers: (
            f"{method} {target} {version}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in headers)
            + "\r\n"
        ).encode(),
        st.sampled_from(["GET", "HEAD", "POST", "BREW", "get", ""]),
        _targets,
        st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 x"]),
        st.lists(st.tuples(_header_names, _header_values), max_size=8),
    ),
    st.binary(max_size=300).map(lambda raw: raw + b"\r\n\r\n"),
)


async def _exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(TIMEOUT):
            head = await reader.readuntil(b"\r\n")
            if not head.startswith(b"HTTP/1.1 101 "):
                head += await reader.read()  # a refusal or a page, then the relay hangs up
            return head
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_any_handshake_gets_an_http_answer(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    """Whatever request head arrives, the relay answers it with a status and keeps serving."""
    fake_upstream.script = tolerant_model
    relay = await start_relay(fake_upstream.url, max_sessions_per_subject=0)

    run = on_loop()

    async def answered(request: bytes) -> None:
        response = await _exchange(relay.port, request)
        status = int(response[9:12])
        assert status in ANSWERS, response[:200]
        health = await _exchange(relay.port, b"GET /healthz HTTP/1.1\r\n\r\n")
        assert health.startswith(b"HTTP/1.1 200 ")

    @FUZZ
    @given(request=_requests)
    def property_(request: bytes) -> None:
        run(answered(request))

    await asyncio.to_thread(property_)
    await eventually(lambda: relay.pending_handshakes == 0)


# Frames

_keys = st.sampled_from(
    [
        "type",
        "instructions",
        "tools",
        "tool_choice",
        "model",
        "prompt",
        "input",
        "role",
        "item",
        "audio",
        "output",
        "voice",
        "event_id",
        "\u0069nstructions",
        "x",
    ]
)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["system", "developer", "user", "realtime", "", "\\", '"'])
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)
_types = st.sampled_from(
    [
        "session.update",
        "response.create",
        "conversation.item.create",
        "input_audio_buffer.append",
        "response.cancel",
        "x.y",
    ]
)
_events = st.builds(
    lambda kind, body, extra, type_last, ascii_only: json.dumps(
        {**extra, "type": kind} if type_last else {"type": kind, **extra, **body},
        ensure_ascii=ascii_only,
    ),
    _types,
    st.dictionaries(st.sampled_from(["session", "response", "item"]), _json, max_size=2),
    st.dictionaries(_keys, _json, max_size=2),
    st.booleans(),
    st.booleans(),
)
_frames = st.one_of(
    _events.map(lambda text: (text, True)),
    st.text(max_size=200).map(lambda text: (text, True)),
    st.integers(1, 4000).map(lambda depth: ("[" * depth + "]" * depth, True)),
    st.binary(max_size=64).map(lambda raw: (raw, False)),
    st.binary(max_size=64).map(lambda raw: (raw, True)),  # a text frame, maybe not UTF-8
)


async def test_no_frame_ends_a_session(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    """Whatever frames a client sends, its session goes on: a later append reaches the model."""
    fake_upstream.script = tolerant_model
    relay: Relay = await start_relay(fake_upstream.url, max_sessions_per_subject=0)
    token = mint("bot-frames")

    run = on_loop()

    async def survives(frames: list[tuple[Any, bool]]) -> None:
        async with open_client(relay, token, max_queue=None) as ws:
            for payload, text in frames:
                await ws.send(payload, text=text)
            sentinel = append_event(seed=len(fake_upstream.received) % 50)
            await ws.send(sentinel)
            await eventually(lambda: sentinel in fake_upstream.received)
            assert ws.close_code is None

    @FUZZ
    @given(frames=st.lists(_frames, min_size=1, max_size=5))
    def property_(frames: list[tuple[Any, bool]]) -> None:
        run(survives(frames))

    await asyncio.to_thread(property_)
    await eventually(lambda: not relay.sessions)
