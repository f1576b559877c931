"""InternalListener: the port where other relay tasks hand over meeting events for our sessions.

A separate listener (``RELAY_INTERNAL_PORT``, default 8081), never registered with the load
balancer: on AWS only the relay tasks' own security group may reach it. One WebSocket path,
``/internal/v1/forward``; the handshake must carry ``Authorization: Bearer <link token>``
(``relay.forward_wire``: the relay's token secret, internal audience, short lifetime),
else 401 — a page's relay token, a forged, expired or malformed one alike; any other path
is 404; more than ``max_links`` open links → 503. Frames larger than the largest event
plus the frame head close the link with 1009 (websockets' ``max_size``); a text frame or a
malformed forward closes it with 1008 (the sender is buggy or hostile: nothing it sent
after is trusted). Each forward is handed to the local delivery callback and answered
``TAKEN`` or ``NOT_HERE``, in order.

Closing the listener closes every link with 1001, so senders look the owner up again.

It refuses to decide what a session does with an event (the delivery callback does).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from relay import forward_wire, tokens
from relay.forward_wire import Answer, WireError
from relay.owner_link import FORWARD_PATH

logger = logging.getLogger(__name__)

#: ``deliver(session_id, payload)`` → True when a live session on this process took it.
LocalDelivery = Callable[[str, bytes], bool]

_quiet = logging.getLogger("relay.internal_listener.websockets")
_quiet.setLevel(logging.WARNING)  # websockets logs request headers (the token) at DEBUG


class InternalListener:
    """The internal WebSocket listener of one relay process."""

    def __init__(
        self,
        host: str,
        port: int,
        secret: str,
        deliver: LocalDelivery,
        *,
        max_event_bytes: int,
        max_links: int = 256,
        close_timeout: float = 5.0,
    ) -> None:
        """Listen on ``host:port`` (0: any free port) and hand forwards to ``deliver``."""
        self.host, self._port = host, port
        self._secret = secret
        self._deliver = deliver
        self._max_frame = max_event_bytes + forward_wire.FORWARD_OVERHEAD
        self._max_links = max_links
        self._close_timeout = close_timeout
        self._server: Server | None = None
        self.refused_handshakes = 0
        self.links = 0

    async def start(self) -> None:
        """Bind and start accepting links."""
        self._server = await serve(
            self._handle,
            self.host,
            self._port,
            process_request=self._check,
            compression=None,
            max_size=self._max_frame,
            max_queue=16,
            close_timeout=self._close_timeout,
            logger=_quiet,
            server_header=None,
        )

    @property
    def port(self) -> int:
        """The port actually bound."""
        assert self._server is not None
        return int(next(iter(self._server.sockets)).getsockname()[1])

    async def aclose(self) -> None:
        """Close every link (1001) and the listener."""
        if self._server is None:
            return
        self._server.close(close_connections=True)
        try:
            async with asyncio.timeout(self._close_timeout + 1):
                await self._server.wait_closed()
        except TimeoutError:
            logger.warning("internal links still open after close")

    # Handshake

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path != FORWARD_PATH:
            return self._refuse(connection, HTTPStatus.NOT_FOUND, "no such path")
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer":
                raise tokens.TokenError("missing token")
            forward_wire.verify_link_token(token.strip(), self._secret, now=time.time())
        except tokens.TokenError as exc:
            return self._refuse(connection, HTTPStatus.UNAUTHORIZED, str(exc))
        if self.links >= self._max_links:
            return self._refuse(connection, HTTPStatus.SERVICE_UNAVAILABLE, "too many links")
        return None

    def _refuse(self, connection: ServerConnection, status: HTTPStatus, reason: str) -> Response:
        self.refused_handshakes += 1
        logger.info(
            "internal link refused",
            extra={"status": int(status), "reason": reason, "peer": _peer(connection)},
        )
        return Response(int(status), status.phrase, Headers({"Content-Type": "text/plain"}), b"")

    # Links

    async def _handle(self, ws: ServerConnection) -> None:
        self.links += 1
        try:
            async for frame in ws:
                if not isinstance(frame, bytes):
                    raise WireError("text frame on the internal link")
                forward = forward_wire.decode_forward(frame)
                taken = self._deliver(forward.session_id, forward.payload)
                await ws.send(
                    forward_wire.encode_answer(
                        forward.seq, Answer.TAKEN if taken else Answer.NOT_HERE
                    )
                )
        except WireError as exc:
            logger.info("internal link closed", extra={"reason": str(exc), "peer": _peer(ws)})
            await ws.close(1008, "malformed forward")
        except ConnectionClosed:
            pass
        finally:
            self.links -= 1


def _peer(connection: ServerConnection) -> str:
    address = connection.remote_address
    return f"{address[0]}:{address[1]}" if address else "?"
