"""WebSocket framing for the relay's hot path (RFC 6455 §5), pure and without I/O.

websockets' sans-I/O ``Protocol`` is general (extensions, a generator per read, a Frame
object per frame); a relay needs less: split bytes into frames, unmask, check the few
rules that keep a peer honest, and write frames back. ``FrameReader.feed()`` does exactly
that with one pass over each chunk; ``encode()`` builds a frame. The opening handshake
stays with websockets (``server.py`` / ``upstream.py``). No extensions are ever
negotiated, so any reserved bit set is a protocol error.
"""

from __future__ import annotations

import os
from typing import Final

from websockets.frames import CloseCode

try:
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover - the wheel ships the C speedups
    from websockets.utils import apply_mask as _apply_mask

# Final: the mypyc build reads module names declared so as constants, not per call.
apply_mask: Final = _apply_mask

CONT: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA

#: Close codes a peer may put on the wire (RFC 6455 §7.4.1-2); others are refused.
_SENDABLE: Final = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)

Frame = tuple[int, bool, bytes]
"""(opcode, fin, payload) with the payload unmasked."""


class FrameError(Exception):
    """The peer broke framing; ``close_code`` says how to fail the connection."""

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(reason)
        self.close_code = close_code


class FrameReader:
    """Incremental frame parser for one direction of one connection.

    Args:
        masked: True on the server side (client frames must be masked, §5.3),
            False on the client side (server frames must not be).
        max_size: Largest payload accepted, checked from the header before buffering.
    """

    __slots__ = ("_masked", "_max_size", "_need", "_pending")

    def __init__(self, *, masked: bool, max_size: int) -> None:
        self._masked = masked
        self._max_size = max_size
        # Bytes of an incomplete frame, and how many that frame needs in all: a large
        # frame arriving in many chunks is appended, not re-parsed, until it is complete.
        self._pending = bytearray()
        self._need = 0

    def feed(self, data: bytes) -> tuple[list[Frame], bool]:
        """Parse the frames completed by ``data``.

        Returns:
            The frames, and whether ``data`` was exactly a run of complete data frames
            (nothing buffered before or after, no control frame), in which case an
            unmasked chunk can be forwarded as it is.

        Raises:
            FrameError: the stream is not valid WebSocket framing.
        """
        clean = not self._pending
        if self._pending:
            self._pending += data
            if len(self._pending) < self._need:
                return [], False
            data = bytes(self._pending)
            self._pending.clear()
            self._need = 0
        frames: list[Frame] = []
        masked = self._masked
        pos = 0
        end = len(data)
        while end - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            if b0 & 0x70:
                raise FrameError(CloseCode.PROTOCOL_ERROR, "reserved bits must be 0")
            if bool(b1 & 0x80) is not masked:
                raise FrameError(CloseCode.PROTOCOL_ERROR, "incorrect masking")
            opcode = b0 & 0x0F
            fin = bool(b0 & 0x80)
            length = b1 & 0x7F
            head = pos + 2
            if length == 126:
                if end - head < 2:
                    break
                length = (data[head] << 8) | data[head + 1]
                head += 2
            elif length == 127:
                if end - head < 8:
                    break
                length = int.from_bytes(data[head : head + 8], "big")
                head += 8
            if opcode >= CLOSE:
                if opcode > PONG:
                    raise FrameError(CloseCode.PROTOCOL_ERROR, "invalid opcode")
                if length > 125 or not fin:
                    raise FrameError(CloseCode.PROTOCOL_ERROR, "invalid control frame")
                clean = False
            elif opcode > BINARY:
                raise FrameError(CloseCode.PROTOCOL_ERROR, "invalid opcode")
            elif length > self._max_size:
                raise FrameError(
                    CloseCode.MESSAGE_TOO_BIG,
                    f"message over the relay's limit of {self._max_size} bytes",
                )
            if masked:
                stop = head + 4 + length
                if stop > end:
                    self._need = stop - pos
                    break
                payload = apply_mask(data[head + 4 : stop], data[head : head + 4])
            else:
                stop = head + length
                if stop > end:
                    self._need = stop - pos
                    break
                payload = data[head:stop]
            frames.append((opcode, fin, payload))
            pos = stop
        if pos < end:
            self._pending += data[pos:]
            clean = False
        return frames, clean


class Reassembly:
    """A fragmented data message being put back together (§5.4), bounded in size.

    The reader yields frames; a message may span several (a first frame without ``fin``,
    then continuations). :meth:`add` takes each data frame and gives the whole message
    once its last frame arrives. Frames that break the order, or a message over
    ``max_size`` in all, raise :class:`FrameError`.
    """

    __slots__ = ("_opcode", "_parts", "_size", "active", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._parts: list[bytes] = []
        self._opcode = TEXT
        self._size = 0
        #: A message's first frame came and its last has not (a plain attribute: the
        #: client's per-message path reads it).
        self.active = False

    def add(self, opcode: int, fin: bool, payload: bytes) -> tuple[int, bytes] | None:
        """One data frame: ``(opcode, message)`` once the message is whole, else None."""
        if opcode != CONT:
            if self.active:
                raise FrameError(CloseCode.PROTOCOL_ERROR, "expected a continuation frame")
            if fin:
                return opcode, payload
            self._parts, self._opcode, self._size = [payload], opcode, len(payload)
            self.active = True
            return None
        if not self.active:
            raise FrameError(CloseCode.PROTOCOL_ERROR, "unexpected continuation frame")
        self._size += len(payload)
        if self._size > self.max_size:
            raise FrameError(
                CloseCode.MESSAGE_TOO_BIG,
                f"message over the relay's limit of {self.max_size} bytes",
            )
        self._parts.append(payload)
        if not fin:
            return None
        message = b"".join(self._parts)
        self.clear()
        return self._opcode, message

    def clear(self) -> None:
        """Forget a message in progress (its connection is gone)."""
        self._parts, self.active = [], False


class _MaskKeys:
    """Masking keys from the OS CSPRNG (§5.3), fetched 4 KiB at a time."""

    __slots__ = ("_pool", "_pos")

    def __init__(self) -> None:
        self._pool = b""
        self._pos = 0

    def next(self) -> bytes:
        if self._pos >= len(self._pool):
            self._pool = os.urandom(4096)
            self._pos = 0
        key = self._pool[self._pos : self._pos + 4]
        self._pos += 4
        return key


_keys: Final = _MaskKeys()


def encode(opcode: int, payload: bytes, *, mask: bool, fin: bool = True) -> bytes:
    """Serialize one frame; ``mask`` on the client side (upstream leg)."""
    length = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    mbit = 0x80 if mask else 0
    if length < 126:
        header = bytes((b0, mbit | length))
    elif length < 65536:
        header = bytes((b0, mbit | 126, length >> 8, length & 0xFF))
    else:
        header = bytes((b0, mbit | 127)) + length.to_bytes(8, "big")
    if mask:
        key = _keys.next()
        return header + key + apply_mask(payload, key)
    return header + payload


def close_payload(code: int, reason: str) -> bytes:
    """The body of a close frame; the reason is cut to fit 123 bytes (§5.5)."""
    raw = reason.encode()[:123]
    while raw:
        try:
            raw.decode()
            break
        except UnicodeDecodeError:
            raw = raw[:-1]
    return code.to_bytes(2, "big") + raw


def parse_close(payload: bytes) -> tuple[int, str]:
    """Code and reason of a received close frame; 1005 when it has none (§7.1.5).

    Raises:
        FrameError: a one-byte body, a code not allowed on the wire, or a reason that is
            not UTF-8.
    """
    if not payload:
        return CloseCode.NO_STATUS_RCVD, ""
    if len(payload) == 1:
        raise FrameError(CloseCode.PROTOCOL_ERROR, "close frame too short")
    code = int.from_bytes(payload[:2], "big")
    if code not in _SENDABLE and not 3000 <= code < 5000:
        raise FrameError(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(CloseCode.INVALID_DATA, "close reason is not UTF-8") from None
    return code, reason
