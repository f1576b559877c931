"""The simulator's server: the handshake rules, the stats endpoints and serving.

``GET /_sim/sessions`` and ``GET /_sim/sessions/<index>/audio`` share the WebSocket port;
``/v1/realtime`` needs a key and a GA handshake, else HTTP 401 or close 4000.
"""

from __future__ import annotations

import http
import json
from collections import deque
from collections.abc import Sequence
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from relay.simulator.protocol import (
    BETA_CLOSE_CODE,
    BETA_MESSAGE,
    BETA_SUBPROTOCOL,
    KEY_SUBPROTOCOL_PREFIX,
    REALTIME_PATH,
    SIM_PATH,
    error_event,
)
from relay.simulator.records import (
    AUDIO_SESSIONS_KEPT,
    MAX_SESSIONS_KEPT,
    SessionRecord,
    SimulatorOptions,
)
from relay.simulator.session import SimulatedSession
from relay.simulator.voice import BYTES_PER_MS


class Simulator:
    """The handshake rules, the per-connection handler and the recorded sessions."""

    def __init__(self, options: SimulatorOptions) -> None:
        self.options = options
        self.records: deque[SessionRecord] = deque(maxlen=MAX_SESSIONS_KEPT)
        self.count = 0

    def select_subprotocol(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        """Answer ``realtime`` iff offered (browsers fail otherwise); never echo the key."""
        return Subprotocol("realtime") if "realtime" in offered else None

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Serve the stats endpoints; refuse wrong paths and missing or wrong keys."""
        url = urlsplit(request.path)
        if url.path.startswith(SIM_PATH):
            return self._stats_response(connection, url.path)
        if url.path != REALTIME_PATH:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not found\n")
        key = self._offered_key(request.headers)
        if key is None:
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, "Missing bearer key\n")
        if self.options.api_key is not None and key != self.options.api_key:
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, "Incorrect API key\n")
        return None

    def _offered_key(self, headers: Headers) -> str | None:
        authorization = headers.get("Authorization", "")
        if authorization.startswith("Bearer ") and authorization[7:].strip():
            return authorization[7:].strip()
        for value in headers.get_all("Sec-WebSocket-Protocol"):
            for name in value.split(","):
                if name.strip().startswith(KEY_SUBPROTOCOL_PREFIX):
                    return name.strip()[len(KEY_SUBPROTOCOL_PREFIX) :]
        return None

    def _stats_response(self, connection: ServerConnection, path: str) -> Response:
        parts = path[len(SIM_PATH) :].strip("/").split("/")
        if parts == [""]:
            body = json.dumps({"sessions": [r.as_json() for r in self.records]}).encode()
            return _response(http.HTTPStatus.OK, "application/json", body)
        if len(parts) == 2 and parts[1] == "audio" and parts[0].isdigit():
            for record in self.records:
                if record.index == int(parts[0]):
                    return _response(http.HTTPStatus.OK, "application/octet-stream", record.audio)
        return connection.respond(http.HTTPStatus.NOT_FOUND, "No such session\n")

    async def handler(self, ws: ServerConnection) -> None:
        """Run one simulated session; a beta-shaped handshake is closed with 4000."""
        request = ws.request
        assert request is not None
        query = parse_qs(urlsplit(request.path).query)
        headers = request.headers
        record = SessionRecord(
            index=self.count,
            model=query.get("model", [None])[0],
            auth="bearer" if headers.get("Authorization") else "subprotocol",
            subprotocol=ws.subprotocol,
            max_audio_bytes=int(self.options.max_recorded_seconds * 1000 * BYTES_PER_MS),
        )
        self.count += 1
        self.records.append(record)
        for old in list(self.records)[:-AUDIO_SESSIONS_KEPT]:
            old.audio = bytearray()
            old.max_audio_bytes = 0
        try:
            offered = ",".join(headers.get_all("Sec-WebSocket-Protocol"))
            if "OpenAI-Beta" in headers or BETA_SUBPROTOCOL in offered:
                await ws.send(json.dumps(error_event("beta_api_shape_disabled", BETA_MESSAGE)))
                record.errors_sent.append("beta_api_shape_disabled")
                await ws.close(BETA_CLOSE_CODE, "beta_api_shape_disabled")
                return
            await SimulatedSession(ws, record, self.options).run()
        finally:
            record.closed = True
            record.close_code = ws.close_code


def _response(status: http.HTTPStatus, content_type: str, body: bytes | bytearray) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, bytes(body))


async def serve_simulator(
    host: str = "127.0.0.1", port: int = 0, options: SimulatorOptions | None = None
) -> Server:
    """Start the simulated model; the caller closes the returned server."""
    simulator = Simulator(options or SimulatorOptions())
    return await serve(
        simulator.handler,
        host,
        port,
        process_request=simulator.process_request,
        select_subprotocol=simulator.select_subprotocol,
        compression=None,
        max_size=None,
    )


def listening_url(server: Server) -> str:
    """The ``ws://HOST:PORT/v1/realtime`` URL the server is bound to."""
    host, port = server.sockets[0].getsockname()[:2]
    return f"ws://{host}:{port}{REALTIME_PATH}"
