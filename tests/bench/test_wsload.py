"""bench/wsload.c against real peers: websockets servers and clients, raw hostile sockets."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import struct
from collections.abc import Mapping
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from bench.relay_load import wsload_request
from tests.conftest import ROOT, TIMEOUT

APPEND_AUDIO = base64.b64encode(bytes(960)).decode()
DELTA_CHARS = 1280  # 20 ms of PCM16 at 24 kHz, base64


async def open_client(url: str) -> tuple[ClientConnection, dict[str, object]]:
    """A websockets client (it masks every frame with a random key) and its session.created."""
    ws = await connect(url, compression=None, open_timeout=TIMEOUT)
    async with asyncio.timeout(TIMEOUT):
        created = json.loads(await ws.recv())
    return ws, created


async def ask(ws: ClientConnection, event: str | Mapping[str, object]) -> dict[str, object]:
    """Send one text frame; the next event the echo answers with."""
    await ws.send(event if isinstance(event, str) else json.dumps(dict(event)))
    async with asyncio.timeout(TIMEOUT):
        answer: dict[str, object] = json.loads(await ws.recv())
    return answer


def delta_id(answer: dict[str, object]) -> object:
    assert answer["type"] == "response.output_audio.delta"
    assert isinstance(answer["delta"], str)
    assert len(answer["delta"]) == DELTA_CHARS
    return answer["event_id"]


@pytest.mark.parametrize(
    "append",
    [
        # what the load generator sends and a relay forwards: answered from the raw bytes
        '{"type":"input_audio_buffer.append","event_id":"b3.17.123456","audio":"'
        + APPEND_AUDIO
        + '"}',
        # same event, other key order and spacing: answered by the JSON path
        '{ "audio": "' + APPEND_AUDIO + '", "event_id": "b3.17.123456",'
        ' "type": "input_audio_buffer.append" }',
        # escapes in the id are decoded, as JSON.parse would
        '{"event_id":"b3.17.\\u0031\\u0032\\u00334\\u00356","type":"input_audio_buffer.append"}',
    ],
    ids=["hot-path", "reordered", "escaped-id"],
)
async def test_masked_append_is_answered_with_a_delta_carrying_its_event_id(
    c_echo_url: str, append: str
) -> None:
    """A masked append gets one 20 ms audio delta whose event_id is the append's."""
    ws, created = await open_client(c_echo_url)
    try:
        assert created["type"] == "session.created"
        assert delta_id(await ask(ws, append)) == "b3.17.123456"
    finally:
        await ws.close()


@pytest.mark.parametrize(
    "text",
    ["{", "not json", '{"type":}', "[1,]", '{"a":1} x', "", '"\x01"', "{'type':'x'}", "nul"],
    ids=[
        "unclosed",
        "bare-words",
        "missing-value",
        "trailing-comma",
        "trailing-garbage",
        "empty",
        "control-char",
        "single-quotes",
        "truncated-literal",
    ],
)
async def test_malformed_json_is_answered_with_an_error_event(c_echo_url: str, text: str) -> None:
    """A text frame that is not JSON gets an invalid_json error event, and the session goes on."""
    ws, _ = await open_client(c_echo_url)
    try:
        error = await ask(ws, text)
        assert error["type"] == "error"
        assert error["error"] == {
            "type": "invalid_request_error",
            "code": "invalid_json",
            "message": "bad JSON",
        }
        append = {"type": "input_audio_buffer.append", "event_id": "after", "audio": ""}
        assert delta_id(await ask(ws, append)) == "after"
    finally:
        await ws.close()


async def test_session_update_spreads_the_clients_session_over_the_default(
    c_echo_url: str,
) -> None:
    """session.update is answered with session.updated: the client's fields over the defaults."""
    ws, _ = await open_client(c_echo_url)
    try:
        update = {"type": "session.update", "session": {"model": "m2", "instructions": "hi"}}
        updated = await ask(ws, update)
        assert updated["type"] == "session.updated"
        session = updated["session"]
        assert isinstance(session, dict)
        assert session["model"] == "m2"
        assert session["instructions"] == "hi"
        assert session["id"] == "sess_bench"
        assert list(session)[:6] == ["type", "object", "id", "model", "output_modalities", "audio"]
        async with asyncio.timeout(TIMEOUT):
            await (await ws.ping(b"still there"))
    finally:
        await ws.close()


def test_healthz_answers_200(c_echo_url: str) -> None:
    """GET /healthz on the echo's port answers 200 ok."""
    parts = urlsplit(c_echo_url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"ok\n")
    finally:
        conn.close()


# Hostile clients on raw sockets


async def raw_upgrade(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw TCP client through the WebSocket handshake, session.created read off."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    writer.write(request.encode())
    async with asyncio.timeout(TIMEOUT):
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        await read_frame(reader)  # session.created
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked server frame: (opcode, payload)."""
    b0, b1 = await reader.readexactly(2)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return b0 & 0x0F, await reader.readexactly(length)


async def close_code_after(reader: asyncio.StreamReader) -> int:
    """The code of the close frame the server sends next."""
    async with asyncio.timeout(TIMEOUT):
        opcode, payload = await read_frame(reader)
    assert opcode == 0x8
    return int(struct.unpack("!H", payload[:2])[0])


HOSTILE = [
    ("garbage-bytes", b"\x00\xff\x13garbage\r\n\r\n", "http", b"HTTP/1.1 400 "),
    (
        "wrong-path",
        b"GET /nope HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n",
        "http",
        b"HTTP/1.1 400 ",
    ),
    ("half-handshake", b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\nUpg", "silent", b""),
    ("oversized-length", b"\x81\xff" + struct.pack("!Q", 1 << 62) + b"\0\0\0\0", "ws", 1009),
    ("just-over-1-MiB", b"\x81\xff" + struct.pack("!Q", (1 << 20) + 1), "ws", 1009),
    ("fragment", b"\x01\x81\x01\x02\x03\x04" + bytes([ord("{") ^ 1]), "ws", 1003),
    ("continuation", b"\x80\x80\0\0\0\0", "ws", 1003),
]


@pytest.mark.parametrize(
    ("data", "stage", "expected"),
    [pytest.param(d, s, e, id=i) for i, d, s, e in HOSTILE],
)
async def test_hostile_client_is_refused_while_another_is_served(
    c_echo_url: str, data: bytes, stage: str, expected: bytes | int
) -> None:
    """A hostile client gets a 400 or a close code; a well-behaved one is answered meanwhile."""
    if stage == "ws":
        reader, writer = await raw_upgrade(c_echo_url)
    else:
        parts = urlsplit(c_echo_url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(data)
        await writer.drain()
        ws, _ = await open_client(c_echo_url)
        try:
            append = {"type": "input_audio_buffer.append", "event_id": "meanwhile", "audio": ""}
            assert delta_id(await ask(ws, append)) == "meanwhile"
        finally:
            await ws.close()
        if stage == "ws":
            assert await close_code_after(reader) == expected
        elif stage == "http":
            assert isinstance(expected, bytes)
            async with asyncio.timeout(TIMEOUT):
                assert (await reader.readuntil(b"\r\n")).startswith(expected)
        else:
            with pytest.raises(TimeoutError):  # still waiting for the rest of its head
                async with asyncio.timeout(0.2):
                    await reader.read(1)
    finally:
        writer.close()


async def test_a_one_mebibyte_frame_is_accepted(c_echo_url: str) -> None:
    """A text frame of exactly 1 MiB (here: one JSON string) is read and answered."""
    ws, _ = await open_client(c_echo_url)
    try:
        big = '{"type":"input_audio_buffer.append","event_id":"big","audio":"'
        big += "A" * ((1 << 20) - len(big) - 2) + '"}'
        assert len(big) == 1 << 20
        assert delta_id(await ask(ws, big)) == "big"
    finally:
        await ws.close()


# What the echo answers, event by event

SCRIPT = [
    '{"type":"input_audio_buffer.append","event_id":"b0.0.1","audio":"AAAA"}',
    '{"audio":"AAAA","type":"input_audio_buffer.append","event_id":"x\\"y\\u00e9\\ud83d\\ude00"}',
    '{"type":"input_audio_buffer.append","event_id":' + json.dumps("z" * 250) + "}",
    '{"type":"input_audio_buffer.append","event_id":7}',
    '{"type":"input_audio_buffer.append","event_id":"q\\"","audio":"AAAA"}',  # fast-path prefix
    '{"type":"session.update","session":{"model":"m2","instructions":"be brief","id":"s"}}',
    '{"type":"session.update","session":{"2":"b","10":true,"x":[1,{"y":null}]}}',
    '{"type":"session.update","session":["a","b"]}',
    '{"type":"session.update","session":"nope"}',
    '{"type":"session.update"}',
    "not json",
    '{"type":"response.create"}',
    "null",
    "[]",
    '{"type":"input_audio_buffer.append","event_id":"end"}',
]
UNANSWERED = 3  # response.create, null, []


async def transcript(url: str) -> list[str]:
    """session.created and what an echo answers to SCRIPT, frame by frame (raw text)."""
    answers: list[str] = []
    ws = await connect(url, compression=None, open_timeout=TIMEOUT)
    try:
        async with asyncio.timeout(TIMEOUT):
            answers.append(str(await ws.recv()))
            for text in SCRIPT:
                await ws.send(text)
            for _ in range(len(SCRIPT) - UNANSWERED):
                answers.append(str(await ws.recv()))
    finally:
        await ws.close()
    return answers


async def test_echo_answers_every_event_the_bench_sends_or_a_peer_might(c_echo_url: str) -> None:
    """Appends come back as deltas with their own event id (the round trip the bench times),
    even with escapes, odd key orders or a non-string id; session.update is merged and echoed;
    bad JSON is an error event; events the bench never sends are ignored."""
    answers = [json.loads(text) for text in await transcript(c_echo_url)]  # every answer is JSON

    assert [a["type"] for a in answers] == [
        "session.created",
        *["response.output_audio.delta"] * 5,
        *["session.updated"] * 5,
        "error",
        "response.output_audio.delta",
    ]
    deltas = [a for a in answers if a["type"] == "response.output_audio.delta"]
    # Ids are kept to their first 200 characters; a number is no id.
    assert [d["event_id"] for d in deltas] == ["b0.0.1", 'x"yé😀', "z" * 200, "", 'q"', "end"]
    assert all(len(d["delta"]) == DELTA_CHARS for d in deltas)
    updated = [a["session"] for a in answers if a["type"] == "session.updated"]
    assert (updated[0]["model"], updated[0]["id"]) == ("m2", "s")
    assert (updated[1]["2"], updated[1]["10"], updated[1]["x"]) == ("b", True, [1, {"y": None}])
    assert all(u["type"] == "realtime" for u in updated)  # still a GA session after any update
    [error] = [a for a in answers if a["type"] == "error"]
    assert error["error"]["code"] == "invalid_json"


# The C load generator


async def run_loadgen(argv: list[str], request: bytes) -> list[dict[str, object]]:
    """Run one load generator to the end; its JSON lines."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(3 * TIMEOUT):
            out, _ = await proc.communicate(request)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    return [json.loads(line) for line in out.decode().splitlines()]


def c_request(url: str, sessions: int, tokens: list[str] | None = None) -> bytes:
    request: dict[str, object] = {
        "url": url,
        "tokens": tokens,
        "sessions": sessions,
        "seconds": 1,
        "warmup_seconds": 0.2,
        "grace_seconds": 2,
        "connect_timeout_seconds": 5,
        "connect_concurrency": 4,
        "slot_ms": 2,
    }
    return wsload_request(request)


async def test_loadgen_sends_bearer_tokens_and_masked_appends_a_strict_server_accepts(
    wsload: Path,
) -> None:
    """Each session authenticates with its own token; a websockets server takes its frames."""
    seen: list[str | None] = []

    def record(connection: ServerConnection, request: Request) -> None:
        seen.append(request.headers.get("Authorization"))

    async def answer(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "session.created", "session": {}}))
        async for message in ws:  # websockets refuses unmasked client frames (RFC 6455 §5.1)
            event = json.loads(message)
            head = '{"type":"response.output_audio.delta","event_id":"'
            await ws.send(head + event["event_id"] + '","delta":""}')

    async with serve(answer, "127.0.0.1", 0, process_request=record, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}/v1/realtime"
        tokens = ["tok-a", "tok-b", "tok-c"]
        lines = await run_loadgen([str(wsload), "loadgen"], c_request(url, 3, tokens))
    assert sorted(seen, key=str) == [f"Bearer {t}" for t in tokens]
    result = lines[-1]
    assert result["event"] == "result"
    assert result["connected"] == 3
    assert isinstance(result["sent"], int)
    assert result["sent"] > 0
    assert result["received"] == result["sent"]
    assert result["unmatched"] == result["reorders"] == 0


async def test_loadgen_reports_a_refused_upgrade_as_a_connect_failure(wsload: Path) -> None:
    """A server that answers the upgrade with 401 shows up as connect failures, not a crash."""

    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(HTTPStatus.UNAUTHORIZED, "no\n")

    async def never(ws: ServerConnection) -> None:
        raise AssertionError("no session should open")

    async with serve(never, "127.0.0.1", 0, process_request=refuse) as server:
        port = server.sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}/v1/realtime"
        lines = await run_loadgen([str(wsload), "loadgen"], c_request(url, 2, ["x", "y"]))
    assert [line["event"] for line in lines] == ["connected", "result"]
    assert lines[-1]["connect_failures"] == 2
    assert lines[-1]["first_connect_failure"] == "HTTP 401"
