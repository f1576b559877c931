"""OwnerLink: one WebSocket to another relay task's internal listener, carrying forwards.

One link per owner address, shared by every session routed there, opened on first use
(within ``open_timeout``) with a fresh short-lived link token, and reopened on the next
forward after it failed. :meth:`forward` sends one event and waits (within
``answer_timeout``) for the owner's answer, matched by sequence number by the link's one
reader task; any failure — cannot connect, the owner closed the link (1001 when it
drains), no answer in time, a malformed answer — raises :class:`LinkError` and fails
every forward waiting on the link, so each route backs off and looks its owner up again.

It refuses to decide what to do about a failure (``relay.meeting_routes`` does).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from relay import forward_wire
from relay.forward_wire import Answer, WireError

logger = logging.getLogger(__name__)

FORWARD_PATH: Final = "/internal/v1/forward"

#: websockets logs request headers (the link token among them) at DEBUG: never here.
_quiet = logging.getLogger("relay.owner_link.websockets")
_quiet.setLevel(logging.WARNING)


class LinkError(Exception):
    """The forward did not get an answer (the owner may be gone or have moved)."""


class OwnerLink:
    """A link to one owner's internal listener."""

    def __init__(
        self,
        address: str,
        secret: str,
        *,
        open_timeout: float,
        answer_timeout: float,
        max_frame_bytes: int,
    ) -> None:
        """``address`` is ``host:port``; ``secret`` signs the link token."""
        self.address = address
        self._secret = secret
        self._open_timeout = open_timeout
        self._answer_timeout = answer_timeout
        self._max_frame_bytes = max_frame_bytes
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._seq = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Answer]] = {}
        self.last_used = 0.0

    async def forward(self, session_id: str, payload: bytes) -> bool:
        """Send one event; True when the owner's session took it, False when the owner
        holds no live session of that subject.

        Raises:
            LinkError: no answer (connect failure, closed link, timeout, bad answer).
        """
        self.last_used = time.monotonic()
        seq = next(self._seq)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting[seq] = future
        try:
            ws = await self._connected()
            async with asyncio.timeout(self._answer_timeout):
                await ws.send(forward_wire.encode_forward(seq, session_id, payload))
                answer = await future
        except TimeoutError:
            await self._drop("no answer in time")
            raise LinkError("the owner did not answer in time") from None
        except (ConnectionClosed, OSError) as exc:
            await self._drop(type(exc).__name__)
            raise LinkError(f"the link to the owner failed ({type(exc).__name__})") from None
        finally:
            self._waiting.pop(seq, None)
        return answer is Answer.TAKEN

    async def aclose(self) -> None:
        """Close the link and stop its reader."""
        await self._drop("closing")

    # Private

    async def _connected(self) -> ClientConnection:
        async with self._lock:
            if self._ws is not None:
                return self._ws
            token = forward_wire.mint_link_token(self._secret, now=time.time())
            try:
                ws = await connect(
                    f"ws://{self.address}{FORWARD_PATH}",
                    additional_headers={"Authorization": f"Bearer {token}"},
                    open_timeout=self._open_timeout,
                    close_timeout=self._open_timeout,
                    compression=None,
                    max_size=self._max_frame_bytes,
                    proxy=None,
                    logger=_quiet,
                )
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                raise LinkError(f"cannot reach the owner ({type(exc).__name__})") from None
            self._ws = ws
            self._reader = asyncio.get_running_loop().create_task(self._read(ws))
            logger.info("owner link opened", extra={"owner": self.address})
            return ws

    async def _read(self, ws: ClientConnection) -> None:
        reason = "closed by the owner"
        try:
            async for frame in ws:
                if not isinstance(frame, bytes):
                    raise WireError("text frame on the internal link")
                seq, answer = forward_wire.decode_answer(frame)
                future = self._waiting.get(seq)
                if future is not None and not future.done():
                    future.set_result(answer)
        except WireError as exc:
            reason = str(exc)
            await ws.close(1002, "malformed answer")
        except ConnectionClosed:
            pass
        finally:
            if self._ws is ws:
                self._ws = None
            self._fail_waiting(reason)

    def _fail_waiting(self, reason: str) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionClosed(None, None))
        if self._waiting:
            logger.info("owner link lost", extra={"owner": self.address, "reason": reason})

    async def _drop(self, reason: str) -> None:
        ws, reader = self._ws, self._reader
        self._ws, self._reader = None, None
        if ws is not None:
            try:
                async with asyncio.timeout(self._open_timeout):
                    await ws.close(1001, reason[:100])
            except TimeoutError:
                pass
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
