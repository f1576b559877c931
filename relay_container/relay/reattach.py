"""Re-attach: what a detached session holds for its client while it may come back.

A client that vanishes without a close frame (TCP reset, ping timeout) *detaches*: its
upstream stays open for a grace period and the model's data frames are held here,
bounded by bytes. A new client socket for the same session first receives the held
frames, in order. A model message that was half sent when the client vanished has its
remaining fragments dropped (the new socket never saw its start).
"""

from __future__ import annotations

from relay import wire


class HoldBuffer:
    """Model frames held for a detached client, bounded by bytes."""

    __slots__ = ("_bytes", "_drop_continuation", "_frames", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._frames: list[bytes] = []
        self._bytes = 0
        self._drop_continuation = False

    def start(self, *, mid_message: bool) -> None:
        """Begin holding; ``mid_message``: the client got the start of a fragmented message."""
        self._frames.clear()
        self._bytes = 0
        self._drop_continuation = mid_message

    def hold(self, opcode: int, fin: bool, payload: bytes) -> bool:
        """Hold one data frame; False once the bound is passed (the session must end)."""
        if opcode == wire.CONT and self._drop_continuation:
            self._drop_continuation = not fin
            return True
        frame = wire.encode(opcode, payload, mask=False, fin=fin)
        self._frames.append(frame)
        self._bytes += len(frame)
        return self._bytes <= self.limit

    def release(self) -> list[bytes]:
        """The held frames, oldest first; the buffer is empty afterwards."""
        frames, self._frames, self._bytes = self._frames, [], 0
        return frames

    def clear(self) -> None:
        """Drop everything held."""
        self._frames.clear()
        self._bytes = 0

    @property
    def frames(self) -> int:
        """How many frames are held."""
        return len(self._frames)

    @property
    def size(self) -> int:
        """Bytes held."""
        return self._bytes
