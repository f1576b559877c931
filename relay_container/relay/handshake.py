"""A new TCP connection until its HTTP request is answered: bounded in size and time.

:class:`HandshakeConnection` collects a request head (at most ``MAX_REQUEST_HEAD`` bytes,
within ``open_timeout``), parses it with websockets' HTTP parser, and hands the request to
its host (``relay.server.Relay``), which answers with a page, a refusal, or a 101 and a
session. Malformed, oversized or unsupported requests get 400/431 here; a bug of ours, 500.
The host bounds how many handshakes are pending (per process and per peer) and may evict
the oldest. The small helpers every answer uses live here too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final, Protocol, cast
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import SecurityError
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

from relay import pages
from relay.auth import select_subprotocol
from relay.config import RelayConfig
from relay.errors import BadRequestError, RelayError

logger = logging.getLogger("relay.server")
#: websockets logs request headers (tokens among them) at DEBUG: never enable it here.
_quiet = logging.getLogger("relay.server.handshake")
_quiet.setLevel(logging.WARNING)

MAX_REQUEST_HEAD: Final = 16 * 1024
#: Query fields read at most (the relay reads one: ``model``).
MAX_QUERY_FIELDS: Final = 20


class HandshakeHost(Protocol):
    """What a pending handshake asks of the relay."""

    config: RelayConfig

    def handshake_started(self, connection: HandshakeConnection) -> None:
        """A new connection takes a place among the pending handshakes."""

    def handshake_ended(self, connection: HandshakeConnection) -> None:
        """Its request was answered, or it went away."""

    def handle_request(
        self, request: Request, transport: asyncio.Transport, leftover: bytes
    ) -> object:
        """Answer one complete request."""


def parse_query(target: str) -> dict[str, list[str]]:
    """The query string of a request target, every field kept (blank ones too).

    Raises:
        BadRequestError: more than MAX_QUERY_FIELDS fields.
    """
    query = urlsplit(target).query
    if not query:
        return {}
    try:
        return parse_qs(query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        raise BadRequestError(
            f"too many query fields: the relay reads at most {MAX_QUERY_FIELDS}"
        ) from None


def refusal(error: RelayError) -> Response:
    response = pages.plain_response(error.http_status, f"{error}\n")
    if error.http_status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="relay"'
    if error.http_status in (429, 503):
        response.headers["Retry-After"] = "1"
    return response


def write_response(transport: asyncio.Transport, response: Response) -> None:
    transport.write(response.serialize())
    transport.close()


def peer_name(transport: asyncio.BaseTransport) -> str | None:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else None


def accept_upgrade(request: Request, transport: asyncio.Transport, max_size: int) -> bool:
    """Write websockets' answer to a realtime upgrade: True for the 101 (no compression,
    ``realtime`` echoed when offered), False for a refusal."""
    protocol = ServerProtocol(
        select_subprotocol=lambda _p, offered: select_subprotocol(offered),
        max_size=max_size,
        logger=_quiet,
    )
    response = protocol.accept(request)
    if response.status_code != 101:
        write_response(transport, response)
        return False
    transport.write(response.serialize())
    return True


def _parse_request(head: bytes) -> Request:
    reader = StreamReader()
    reader.feed_data(head)
    reader.feed_eof()
    parser = Request.parse(reader.read_line)
    try:
        next(parser)
    except StopIteration as done:
        request: Request = done.value
        return request
    raise ValueError("incomplete HTTP request")


class HandshakeConnection(asyncio.Protocol):
    """A new TCP connection until its HTTP request is answered (bounded size and time)."""

    def __init__(self, relay: HandshakeHost) -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None
        self.peer_host = ""
        self._head = bytearray()
        self._timer: asyncio.TimerHandle | None = None
        self._done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Take a place among the pending handshakes and arm the handshake deadline."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer_host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self.relay.handshake_started(self)
        self._timer = asyncio.get_running_loop().call_later(
            self.relay.config.open_timeout, self._timed_out
        )

    def evict(self) -> None:
        """Cut this pending handshake to make room for a newer one (it was the oldest)."""
        if not self._done and self.transport is not None:
            self._finish()
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        """Collect the request head; answer it once complete."""
        if self._done or self.transport is None:
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0 and len(self._head) <= MAX_REQUEST_HEAD:
            return
        if end < 0 or end + 4 > MAX_REQUEST_HEAD:
            self._finish()
            write_response(self.transport, pages.plain_response(431, "request too large\n"))
            return
        head, leftover = bytes(self._head[: end + 4]), bytes(self._head[end + 4 :])
        self._head.clear()
        self._finish()
        try:
            request = _parse_request(head)
        except SecurityError:
            write_response(self.transport, pages.plain_response(431, "request too large\n"))
            return
        # websockets' parser raises NotImplementedError for HTTP it does not support
        # (e.g. Transfer-Encoding on a GET): a bad request to us, like the others.
        except (ValueError, EOFError, UnicodeDecodeError, NotImplementedError) as exc:
            logger.debug("bad HTTP request", extra={"error": type(exc).__name__})
            write_response(self.transport, pages.plain_response(400, "bad request\n"))
            return
        try:
            self.relay.handle_request(request, self.transport, leftover)
        except Exception as exc:
            # A bug of ours, not the client's: answer rather than drop the connection, and
            # log the type only (an exception's text may quote the request's headers).
            logger.error(
                "handshake failed unexpectedly",
                extra={"error": type(exc).__name__, "peer": peer_name(self.transport)},
            )
            if not self.transport.is_closing():
                write_response(self.transport, pages.plain_response(500, "relay error\n"))

    def connection_lost(self, exc: Exception | None) -> None:
        """The peer left before its request was answered."""
        self._finish()

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self.relay.handshake_ended(self)
            if self._timer is not None:
                self._timer.cancel()

    def _timed_out(self) -> None:
        """A handshake that never finishes is cut at open_timeout."""
        if not self._done and self.transport is not None:
            self._finish()
            self.transport.abort()
