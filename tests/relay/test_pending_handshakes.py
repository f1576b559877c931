"""PendingHandshakes on its own: a new connection always gets a place, the oldest goes.

The same bounds over real sockets are in test_hostile.py.
"""

from __future__ import annotations

from relay.pending_handshakes import PendingHandshakes


class Pending:
    """A pending connection that, like HandshakeConnection, ends its handshake when cut."""

    def __init__(self, bounds: PendingHandshakes, peer_host: str) -> None:
        self.bounds = bounds
        self.peer_host = peer_host
        self.evicted = False

    def evict(self) -> None:
        self.evicted = True
        self.bounds.ended(self)


def connect(bounds: PendingHandshakes, peer: str) -> Pending:
    connection = Pending(bounds, peer)
    bounds.started(connection)
    return connection


def test_one_peer_at_its_bound_loses_its_own_oldest_not_another_peers():
    bounds = PendingHandshakes(max_total=10, max_per_peer=2)
    other = connect(bounds, "10.0.0.2")
    first, second = connect(bounds, "10.0.0.1"), connect(bounds, "10.0.0.1")
    third = connect(bounds, "10.0.0.1")
    assert first.evicted
    assert not any(c.evicted for c in (second, third, other))
    assert len(bounds) == 3


def test_at_the_process_bound_the_oldest_of_all_goes():
    bounds = PendingHandshakes(max_total=3, max_per_peer=3)
    oldest = connect(bounds, "10.0.0.1")
    rest = [connect(bounds, f"10.0.0.{n}") for n in (2, 3, 4)]
    assert oldest.evicted
    assert not any(c.evicted for c in rest)
    assert len(bounds) == 3


def test_a_peer_whose_only_pending_connection_is_cut_still_gets_its_place():
    bounds = PendingHandshakes(max_total=10, max_per_peer=1)
    first = connect(bounds, "10.0.0.1")
    second = connect(bounds, "10.0.0.1")
    assert first.evicted
    bounds.ended(second)
    assert len(bounds) == 0
    assert not connect(bounds, "10.0.0.1").evicted


def test_ending_twice_or_unknown_connections_is_harmless():
    bounds = PendingHandshakes(max_total=2, max_per_peer=2)
    connection = connect(bounds, "")
    bounds.ended(connection)
    bounds.ended(connection)
    bounds.ended(Pending(bounds, "10.9.9.9"))
    assert len(bounds) == 0
