"""The cheapest relay Python can be: the benchmark's floor, not product code.

Owns: a lower bound for any Python relay on this machine. After the two opening
handshakes (websockets' sans-I/O protocols, the relay token checked once) each session
is a byte splice: every chunk read from one socket is written to the other unchanged, in
one uvloop ``data_received`` callback, with no framing, no checks, no metrics. That is
valid WebSocket only because the load generator's frames are masked client frames and the
echo upstream's are unmasked server frames, so both pass through as they are. It cannot
apply a policy, answer a ping, report an error or close cleanly: never deploy it.

``bench/relay_load.py --target splice`` runs it with the relay's contract env names
(PORT, RELAY_HOST, OPENAI_REALTIME_URL, OPENAI_API_KEY, RELAY_TOKEN_SECRET). Whatever the
product relay costs per message above this floor is its own Python; what this floor costs
is uvloop, CPython's per-callback overhead and the kernel.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import cast
from urllib.parse import urlsplit

import uvloop
from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from relay import tokens

HANDSHAKE_TIMEOUT = 10.0


class UpstreamSide(asyncio.Protocol):
    """The relay's client connection to the model: handshake, then splice to the client."""

    def __init__(self, client: ClientSide, request_bytes: bytes) -> None:
        self.client = client
        self.request_bytes = request_bytes
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request_bytes)

    def data_received(self, data: bytes) -> None:
        if self.open:
            self.client.transport.write(data)
            return
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        assert self.transport is not None
        if not self.buffer.startswith(b"HTTP/1.1 101 "):
            self.client.transport.close()
            self.transport.close()
            return
        self.open = True
        self.client.upstream_opened(self)
        if len(self.buffer) > end + 4:
            self.client.transport.write(bytes(self.buffer[end + 4 :]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.transport.close()


class ClientSide(asyncio.Protocol):
    """The page's connection to the relay: handshake with a token check, then splice."""

    def __init__(self, relay: SpliceRelay) -> None:
        self.relay = relay
        self.protocol = ServerProtocol()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.upstream: UpstreamSide | None = None
        self.buffer = bytearray()
        self.early: list[bytes] = []
        self.handshaken = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.timer = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT, self.transport.close)

    def data_received(self, data: bytes) -> None:
        upstream = self.upstream
        if upstream is not None:
            assert upstream.transport is not None
            upstream.transport.write(data)
            return
        if self.handshaken:
            self.early.append(data)
            return
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        self.protocol.receive_data(bytes(self.buffer[: end + 4]))
        if len(self.buffer) > end + 4:
            self.early.append(bytes(self.buffer[end + 4 :]))
        events = self.protocol.events_received()
        if not events or not isinstance(events[0], Request):
            self.transport.close()
            return
        request = events[0]
        self.handshaken = True
        response = self.respond(request)
        self.protocol.send_response(response)
        for chunk in self.protocol.data_to_send():
            self.transport.write(chunk)
        if response.status_code != 101:
            self.transport.close()
            return
        self.dial()

    def respond(self, request: Request) -> Response:
        path = urlsplit(request.path).path
        if path == "/healthz":
            return Response(200, "OK", Headers(), b"ok\n")
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        try:
            tokens.verify(token, self.relay.secret)
        except tokens.TokenError:
            return Response(401, "Unauthorized", Headers(), b"bad token\n")
        return self.protocol.accept(request)

    def dial(self) -> None:
        uri = parse_uri(self.relay.upstream_url)
        protocol = ClientProtocol(uri)
        request = protocol.connect()
        request.headers["Authorization"] = f"Bearer {self.relay.api_key}"
        protocol.send_request(request)
        request_bytes = b"".join(protocol.data_to_send())
        loop = asyncio.get_running_loop()
        coro = loop.create_connection(lambda: UpstreamSide(self, request_bytes), uri.host, uri.port)
        task = loop.create_task(coro)
        self.relay.dials.add(task)
        task.add_done_callback(self.dialled)

    def dialled(self, task: asyncio.Task[tuple[asyncio.BaseTransport, UpstreamSide]]) -> None:
        self.relay.dials.discard(task)
        if task.cancelled() or task.exception() is not None:
            self.transport.close()

    def upstream_opened(self, upstream: UpstreamSide) -> None:
        self.timer.cancel()
        self.upstream = upstream
        assert upstream.transport is not None
        for chunk in self.early:
            upstream.transport.write(chunk)
        self.early.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.timer.cancel()
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()


class SpliceRelay:
    """Settings shared by every session, and the dials in flight (owned, never orphaned)."""

    def __init__(self, upstream_url: str, api_key: str, secret: str) -> None:
        self.upstream_url = upstream_url
        self.api_key = api_key
        self.secret = secret
        self.dials: set[asyncio.Task[tuple[asyncio.BaseTransport, UpstreamSide]]] = set()


async def run(host: str, port: int, relay: SpliceRelay) -> None:
    """Serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    server = await loop.create_server(lambda: ClientSide(relay), host, port)
    bound = server.sockets[0].getsockname()
    print(f"splice relay listening on ws://{bound[0]}:{bound[1]}/v1/realtime", flush=True)
    try:
        await stop
    finally:
        server.close()
        for task in list(relay.dials):
            task.cancel()


def main() -> None:
    """Read the relay's contract env vars and serve."""
    secret = os.environ["RELAY_TOKEN_SECRET"]
    tokens.check_secret(secret)
    relay = SpliceRelay(
        upstream_url=os.environ["OPENAI_REALTIME_URL"],
        api_key=os.environ.get("OPENAI_API_KEY", ""),
        secret=secret,
    )
    uvloop.run(
        run(os.environ.get("RELAY_HOST", "127.0.0.1"), int(os.environ.get("PORT", "0")), relay)
    )


if __name__ == "__main__":
    main()
