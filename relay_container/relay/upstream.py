"""The upstream leg's opening: a GA WebSocket handshake with OpenAI Realtime.

``open_upstream()`` dials ``OPENAI_REALTIME_URL?model=…`` with ``Authorization: Bearer
$OPENAI_API_KEY`` and nothing else of note: no ``OpenAI-Beta`` header (that selects the
retired beta protocol, closed with 4000), no subprotocol, no compression (base64 audio
does not compress and deflate costs ~50 KB per connection). The handshake is websockets'
sans-I/O ``ClientProtocol``; once it succeeds the connection's bytes go straight to the
session (``UpstreamConnection.deliver``), which owns the frames from then on.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from functools import cache
from typing import Final, Protocol, cast
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.http11 import Response
from websockets.streams import StreamReader
from websockets.uri import parse_uri

from relay.errors import UpstreamError

#: websockets logs handshake headers (our API key among them) at DEBUG: never enable it.
_quiet = logging.getLogger("relay.upstream.handshake")
_quiet.setLevel(logging.WARNING)

USER_AGENT: Final = "recall-voice-agent-relay"
MAX_RESPONSE_HEAD: Final = 16 * 1024


class UpstreamListener(Protocol):
    """What the session offers the upstream connection once it is open."""

    def upstream_data_received(self, data: bytes) -> None:
        """Bytes from the model, after the handshake."""

    def upstream_connection_lost(self, exc: Exception | None) -> None:
        """The TCP connection to the model ended."""

    def upstream_pause_writing(self) -> None:
        """The model's socket buffer is full: stop reading the client."""

    def upstream_resume_writing(self) -> None:
        """The model's socket buffer drained."""


@cache
def default_ssl_context() -> ssl.SSLContext:
    """One TLS client context per process (building one costs milliseconds)."""
    return ssl.create_default_context()


def upstream_uri(base_url: str, model: str) -> str:
    """``base_url`` with ``model=`` added to its query."""
    parts = urlsplit(base_url)
    query = "&".join(q for q in (parts.query, urlencode({"model": model})) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))


class UpstreamConnection(asyncio.Protocol):
    """asyncio protocol for the upstream socket: handshake first, then pass-through."""

    def __init__(self, protocol: ClientProtocol, request_bytes: bytes) -> None:
        # Both are needed for the handshake only, and dropped after it (memory per session).
        self._protocol: ClientProtocol | None = protocol
        self._request_bytes = request_bytes
        self._head = bytearray()
        self._listener: UpstreamListener | None = None
        self.transport: asyncio.Transport | None = None
        self.leftover = b""
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # Handshake

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the handshake request."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.write(self._request_bytes)

    def data_received(self, data: bytes) -> None:
        """Collect the response head, then hand every byte to the listener."""
        if self._listener is not None:
            self._listener.upstream_data_received(data)
            return
        if self.opened.done():
            self.leftover += data  # frames that arrive before the session takes over
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_RESPONSE_HEAD:
                self._fail(UpstreamError("the model sent an oversized handshake response"))
            return
        head, self.leftover = bytes(self._head[: end + 4]), bytes(self._head[end + 4 :])
        self._head.clear()
        status_line = head.split(b"\r\n", 1)[0].split(b" ", 2)
        if len(status_line) >= 2 and status_line[1] != b"101":
            # Refusals carry a body we neither need nor wait for.
            code = status_line[1][:3].decode("ascii", "replace")
            self._fail(UpstreamError(f"the model refused the session: HTTP {code}"))
            return
        assert self._protocol is not None
        try:
            response = _parse_response(head)
            self._protocol.process_response(response)
        except InvalidStatus as exc:
            status = exc.response.status_code
            self._fail(UpstreamError(f"the model refused the session: HTTP {status}"))
        except (InvalidHandshake, ValueError, EOFError) as exc:
            self._fail(UpstreamError(f"the model sent an invalid handshake: {exc}"))
        else:
            self._protocol = None
            self._request_bytes = b""
            self.opened.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        """Report the end to the listener, or fail the pending handshake."""
        if self._listener is not None:
            self._listener.upstream_connection_lost(exc)
        elif not self.opened.done():
            self.opened.set_exception(UpstreamError("the model closed the connection"))
            # Mark it retrieved: a dial cancelled mid-connect never awaits it.
            self.opened.exception()

    # Flow control

    def pause_writing(self) -> None:
        """Forwarded to the listener: it pauses the client's reads."""
        if self._listener is not None:
            self._listener.upstream_pause_writing()

    def resume_writing(self) -> None:
        """Forwarded to the listener: it resumes the client's reads."""
        if self._listener is not None:
            self._listener.upstream_resume_writing()

    # Pass-through

    def attach(self, listener: UpstreamListener) -> bytes:
        """Route all further bytes to ``listener``; returns bytes already received.

        The transport is handed a ``_ListenerProtocol`` whose callbacks *are* the
        listener's methods, so each model message costs one Python call, not two.
        """
        self._listener = listener
        if self.transport is not None:
            self.transport.set_protocol(_ListenerProtocol(listener))
        leftover, self.leftover = self.leftover, b""
        return leftover

    def _fail(self, error: UpstreamError) -> None:
        if not self.opened.done():
            self.opened.set_exception(error)
            self.opened.exception()
        if self.transport is not None:
            self.transport.abort()


class _ListenerProtocol(asyncio.BaseProtocol):
    """The upstream transport's protocol once a listener owns it: every callback is the
    listener's bound method itself (uvloop caches ``data_received`` when the protocol is
    set, so the model's bytes reach the session with no call in between)."""

    __slots__ = ("connection_lost", "data_received", "pause_writing", "resume_writing")

    def __init__(self, listener: UpstreamListener) -> None:
        self.data_received = listener.upstream_data_received
        self.connection_lost = listener.upstream_connection_lost  # type: ignore[method-assign]
        self.pause_writing = listener.upstream_pause_writing  # type: ignore[method-assign]
        self.resume_writing = listener.upstream_resume_writing  # type: ignore[method-assign]

    def eof_received(self) -> None:
        """The model half-closed: let the transport close (a WebSocket never half-closes)."""


def _parse_response(head: bytes) -> Response:
    reader = StreamReader()
    reader.feed_data(head)
    reader.feed_eof()
    parser = Response.parse(reader.read_line, reader.read_exact, reader.read_to_eof)
    try:
        next(parser)
    except StopIteration as done:
        response: Response = done.value
        return response
    raise ValueError("incomplete HTTP response")


async def open_upstream(
    *,
    url: str,
    model: str,
    api_key: str,
) -> UpstreamConnection:
    """Open a GA Realtime WebSocket to ``url`` for ``model``; return once it is open.

    The caller bounds the wait (``asyncio.timeout``); cancellation closes the socket.

    Raises:
        UpstreamError: refused handshake or malformed response.
        OSError: connection failure.
    """
    uri = parse_uri(upstream_uri(url, model))
    protocol = ClientProtocol(uri, max_size=None, logger=_quiet)
    request = protocol.connect()
    if api_key:
        request.headers["Authorization"] = f"Bearer {api_key}"
    request.headers["User-Agent"] = USER_AGENT
    connection = UpstreamConnection(protocol, request.serialize())
    loop = asyncio.get_running_loop()
    context = default_ssl_context() if uri.secure else None
    await loop.create_connection(
        lambda: connection,
        uri.host,
        uri.port,
        ssl=context,
        server_hostname=uri.host if context else None,
    )
    try:
        await connection.opened
    except BaseException:
        if connection.transport is not None:
            connection.transport.abort()
        raise
    return connection
