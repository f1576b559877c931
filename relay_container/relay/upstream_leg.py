"""UpstreamLeg: the state of the session's current connection to the model, sans I/O.

``DIALING`` → ``OPEN`` → ``CLOSING`` (a close frame sent or received) → ``CLOSED``; a dial
abandoned before it opened goes straight to ``CLOSED``. The leg keeps its frame reader
(which a rollover hands over from the standby), its keepalive and its close code; the
session core decides what to write on it.
"""

from __future__ import annotations

import enum
from typing import Final

from relay import wire
from relay.errors import TransitionError
from relay.keepalive import Keepalive


class UpstreamState(enum.Enum):
    """Where the current upstream leg is."""

    DIALING = "dialing"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


_OPEN: Final = UpstreamState.OPEN
_CLOSED: Final = UpstreamState.CLOSED
_DIALING: Final = UpstreamState.DIALING
_CLOSING: Final = UpstreamState.CLOSING


class UpstreamLeg:
    """One upstream connection as the session core sees it."""

    __slots__ = (
        "close_code",
        "is_open",
        "keepalive",
        "leg",
        "max_size",
        "pending",
        "pending_bytes",
        "reader",
        "reads_paused",
        "state",
    )

    def __init__(self, leg: int, max_size: int) -> None:
        self.leg = leg
        self.max_size = max_size
        self.state = _DIALING
        #: ``state is OPEN``, kept as a plain bool for the per-message path.
        self.is_open = False
        self.reader = wire.FrameReader(masked=False, max_size=max_size)
        #: The model answers pings with their payload; this one is not a secret.
        self.keepalive = Keepalive(b"relay")
        #: Reads paused because the client is slow.
        self.reads_paused = False
        #: How the model's session ended (its close frame, or 1006).
        self.close_code: int | None = None
        #: Frames for the model held while it is dialled (the core bounds them), and their size.
        self.pending: list[bytes] = []
        self.pending_bytes = 0

    @property
    def is_dialing(self) -> bool:
        """Not open yet."""
        return self.state is _DIALING

    @property
    def is_closed(self) -> bool:
        """Gone, or never opened."""
        return self.state is _CLOSED

    @property
    def close_sent(self) -> bool:
        """A close frame went out (or came in and was answered)."""
        return self.state is _CLOSING

    def opened(self) -> None:
        """The handshake succeeded."""
        self._move(_DIALING, _OPEN)

    def closing(self) -> None:
        """A close frame was sent on it."""
        self._move(_OPEN, _CLOSING)

    def lost(self) -> None:
        """The connection ended, or the dial was abandoned: nothing held is sent any more."""
        self.state = _CLOSED
        self.is_open = False
        self.take_pending()

    def hold(self, frames: list[bytes]) -> int:
        """Frames for the model while it is dialled, kept in order; the bytes now held."""
        self.pending.extend(frames)
        self.pending_bytes += sum(len(frame) for frame in frames)
        return self.pending_bytes

    def take_pending(self) -> list[bytes]:
        """What was held, in order (the leg opened, or is gone)."""
        pending, self.pending, self.pending_bytes = self.pending, [], 0
        return pending

    def promote(self, leg: int, reader: wire.FrameReader) -> None:
        """A rollover made another, open connection (with its reader) the current one."""
        self.leg = leg
        self.reader = reader
        self.state = _OPEN
        self.is_open = True
        self.keepalive.reset()
        self.close_code = None

    def _move(self, source: UpstreamState, target: UpstreamState) -> None:
        if self.state is not source:
            raise TransitionError(f"upstream leg {self.leg}: {self.state.value} → {target.value}")
        self.state = target
        self.is_open = target is _OPEN
