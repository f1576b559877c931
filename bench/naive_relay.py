"""A straightforward `websockets` asyncio relay: the benchmark's reference point, not product code.

Owns: the simplest honest relay a Python developer would write — verify the relay token at
the handshake, dial the upstream, then one ``async for`` pump each way until either side
closes. No limits, no metrics, no logging per message. bench/relay_load.py runs it as
``--target naive`` so the real relay's numbers have a same-machine baseline (the issue
quotes ≈ 200 sessions per core for this design). It refuses everything the product relay
must do (policy, drain, error events): never deploy it.

Configuration follows the relay's contract names: PORT, RELAY_HOST, OPENAI_REALTIME_URL,
OPENAI_API_KEY, RELAY_TOKEN_SECRET.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import os
import signal
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from relay import tokens

UPSTREAM_OPEN_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0


def _token(request: Request) -> str:
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Bearer "):
        return authorization.removeprefix("Bearer ").strip()
    values = parse_qs(urlsplit(request.path).query).get("token", [])
    return values[0] if values else ""


class NaiveRelay:
    """Token check at the handshake, then two ``async for`` pumps per session."""

    def __init__(self, upstream_url: str, api_key: str, secret: str) -> None:
        self.upstream_url = upstream_url
        self.api_key = api_key
        self.secret = secret

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer /healthz, refuse unknown paths and bad tokens before the upgrade."""
        path = urlsplit(request.path).path
        if path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        if path != "/v1/realtime":
            return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        try:
            tokens.verify(_token(request), self.secret)
        except tokens.TokenError as exc:
            return Response(401, "Unauthorized", Headers(), f"{exc}\n".encode())
        return None

    async def handler(self, client: ServerConnection) -> None:
        """Dial upstream, pump both ways, close the other side when one ends."""
        async with asyncio.timeout(UPSTREAM_OPEN_TIMEOUT):
            upstream = await connect(
                self.upstream_url,
                additional_headers={"Authorization": f"Bearer {self.api_key}"},
                compression=None,
                max_size=None,
            )
        pumps = {
            asyncio.create_task(self._pump(client, upstream)),
            asyncio.create_task(self._pump(upstream, client)),
        }
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.gather(upstream.close(), client.close(), return_exceptions=True)

    @staticmethod
    async def _pump(
        source: ServerConnection | ClientConnection, sink: ServerConnection | ClientConnection
    ) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in source:
                await sink.send(message)


async def run(host: str, port: int, relay: NaiveRelay) -> None:
    """Serve until SIGTERM or SIGINT."""
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    server: Server
    async with serve(
        relay.handler,
        host,
        port,
        process_request=relay.process_request,
        compression=None,
        max_size=4 * 2**20,
    ) as server:
        bound = server.sockets[0].getsockname()
        print(f"naive relay listening on ws://{bound[0]}:{bound[1]}/v1/realtime", flush=True)
        await stop


def main() -> None:
    """Read the relay's contract env vars and serve."""
    secret = os.environ["RELAY_TOKEN_SECRET"]
    tokens.check_secret(secret)
    relay = NaiveRelay(
        upstream_url=os.environ["OPENAI_REALTIME_URL"],
        api_key=os.environ.get("OPENAI_API_KEY", ""),
        secret=secret,
    )
    asyncio.run(
        run(os.environ.get("RELAY_HOST", "127.0.0.1"), int(os.environ.get("PORT", "0")), relay)
    )


if __name__ == "__main__":
    main()
