"""PendingHandshakes: connections whose HTTP request is not complete yet, bounded.

Bounded per process and per peer address, and a new connection always gets a place: at a
bound the oldest pending connection (of that peer, else of all) is cut. Idle sockets
therefore cannot lock out ``/healthz`` or new sessions; a request that arrives in one
segment, as a health check's does, is answered before it could become the oldest.
"""

from __future__ import annotations

from typing import Protocol


class PendingConnection(Protocol):
    """What the bounds need of a pending connection (``handshake.HandshakeConnection``)."""

    @property
    def peer_host(self) -> str:
        """The peer's address ("" when unknown)."""

    def evict(self) -> None:
        """Cut the connection: it lost its place to a newer one."""


class PendingHandshakes:
    """Pending connections, oldest first, overall and per peer address."""

    def __init__(self, max_total: int, max_per_peer: int) -> None:
        """Hold at most ``max_total`` pending connections, ``max_per_peer`` of one peer."""
        self._max_total = max_total
        self._max_per_peer = max_per_peer
        # Dicts as insertion-ordered sets: the first key is the oldest.
        self._pending: dict[PendingConnection, None] = {}
        self._by_peer: dict[str, dict[PendingConnection, None]] = {}

    def __len__(self) -> int:
        """Connections pending now."""
        return len(self._pending)

    def started(self, connection: PendingConnection) -> None:
        """Give a new connection a place, cutting the oldest pending one at a bound."""
        peer = connection.peer_host
        own = self._by_peer.setdefault(peer, {})
        victim: PendingConnection | None = None
        if len(own) >= self._max_per_peer:
            victim = next(iter(own))
        elif len(self._pending) >= self._max_total:
            victim = next(iter(self._pending))
        if victim is not None:
            victim.evict()
        self._pending[connection] = None
        # The eviction may have emptied (and so removed) this peer's entry.
        self._by_peer.setdefault(peer, {})[connection] = None

    def ended(self, connection: PendingConnection) -> None:
        """The connection's request was answered, or the connection is gone."""
        self._pending.pop(connection, None)
        own = self._by_peer.get(connection.peer_host)
        if own is not None:
            own.pop(connection, None)
            if not own:
                del self._by_peer[connection.peer_host]
