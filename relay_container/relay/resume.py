"""Resume seeding: the acknowledgements of the relay's own seeds, which no client sent.

A session that resumes a stored conversation replays it to the model as
``conversation.item.create`` events (``relay.conversation.seed_events``) before the
client's own events. The model answers each seed with ``conversation.item.added`` and
``conversation.item.done`` (or an ``error`` naming the ``relay_seed_`` event instead of
both); :class:`SeedAcks` says which upstream events are those answers, so the client never
sees them.
"""

from __future__ import annotations

from relay.events import ERROR, SEED_ACK_TYPES, SEED_ERROR_MARK, server_event_type


class SeedAcks:
    """How many seed acknowledgements are still to be swallowed."""

    __slots__ = ("pending", "refused")

    def __init__(self) -> None:
        self.pending = 0
        #: Seeds the model refused (an ``error`` in place of their acknowledgements).
        self.refused = 0

    def expect(self, seeds: int) -> None:
        """``seeds`` seed events were just sent."""
        self.pending += 2 * seeds

    def swallow(self, payload: bytes) -> bool:
        """Whether ``payload`` (an upstream text event) answers a seed; counts it if so."""
        if not self.pending:
            return False
        kind = server_event_type(payload)
        if kind in SEED_ACK_TYPES:
            self.pending -= 1
            return True
        if kind == ERROR and SEED_ERROR_MARK in payload:
            self.pending = max(0, self.pending - 2)
            self.refused += 1
            return True
        return False

    def clear(self) -> None:
        """Nothing more to swallow (the upstream that was seeded is gone)."""
        self.pending = 0
