"""ClientLeg: the state of a session's client connection, sans I/O.

``OPEN`` → ``CLOSING`` (a close frame sent or received) → ``CLOSED``; ``DETACHED`` while a
vanished client may re-attach. Beside the state, what belongs to one client socket: its
frame reader and the message it is reassembling, its keepalive, its abuse bounds, whether
its reads are paused, and the relay's own events held back while a model message is half
sent to it (they may not interleave with its fragments). The session core decides what to
write; a re-attached socket starts afresh here (:meth:`ClientLeg.reconnected`).
"""

from __future__ import annotations

import enum
from typing import Final

from relay import wire
from relay.client_bounds import ClientBounds
from relay.keepalive import Keepalive


class ClientState(enum.Enum):
    """Where the client leg is."""

    OPEN = "open"
    CLOSING = "closing"
    DETACHED = "detached"
    CLOSED = "closed"


C_OPEN: Final = ClientState.OPEN
C_CLOSING: Final = ClientState.CLOSING
C_DETACHED: Final = ClientState.DETACHED
C_CLOSED: Final = ClientState.CLOSED


class ClientLeg:
    """One client connection as the session core sees it."""

    __slots__ = (
        "bounds",
        "deferred",
        "fragments",
        "in_fragment",
        "keepalive",
        "max_size",
        "reader",
        "reads_paused",
        "state",
    )

    def __init__(self, max_size: int, ping_payload: bytes) -> None:
        """A client socket: messages up to ``max_size`` bytes, pinged with ``ping_payload``."""
        self.max_size = max_size
        self.state = C_OPEN
        #: None once nothing more is to be read from the socket.
        self.reader: wire.FrameReader | None = wire.FrameReader(masked=True, max_size=max_size)
        self.fragments = wire.Reassembly(max_size)
        self.keepalive = Keepalive(ping_payload)
        self.bounds = ClientBounds()
        #: Reads paused because the model reads slower than the client sends.
        self.reads_paused = False
        #: Relay events for the client held while the model's fragmented message goes out.
        self.deferred: list[bytes] = []
        #: A model message is half sent to the client.
        self.in_fragment = False

    def reconnected(self) -> None:
        """A new socket re-attached: open, read afresh, no ping outstanding, writable."""
        self.state = C_OPEN
        self.reader = wire.FrameReader(masked=True, max_size=self.max_size)
        self.fragments.clear()
        self.keepalive.reset()
        self.bounds.reconnected()

    def detached(self) -> None:
        """The socket vanished: what was half read or half sent to it is gone with it."""
        self.state = C_DETACHED
        self.fragments.clear()
        self.in_fragment = False
        self.deferred.clear()
