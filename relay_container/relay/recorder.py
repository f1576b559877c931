"""The seam between a session and its records: what a recorder offers, and the null one.

``Recorder`` is what a relay session uses (start, a record per connection, flush, the
stored conversation and tool calls for a resume, counters); ``relay.record_writer``'s
``SessionRecorder`` writes to DynamoDB, and :class:`NullRecorder` stands in when the relay
has no table (``TABLE_NAME`` unset). :class:`RecorderStats` is the counters' snapshot.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from relay.conversation import Turn
from relay.record_items import SEQ_MODULUS, ConnectionRecord, RecordCounters, discard
from relay.usage_meter import Spent


@dataclass(frozen=True, slots=True)
class RecorderStats:
    """A snapshot of the recorder's counters; every record ends in exactly one outcome.

    ``enqueued == written + dropped_write_failed + dropped_on_close + queued + in_flight``;
    ``dropped_queue_full`` and ``dropped_after_close`` count records refused at the door.
    """

    enqueued: int = 0
    written: int = 0
    failed_attempts: int = 0
    dropped_queue_full: int = 0
    dropped_write_failed: int = 0
    dropped_on_close: int = 0
    dropped_after_close: int = 0
    ignored_events: int = 0
    queued: int = 0
    in_flight: int = 0

    @property
    def dropped(self) -> int:
        """Records lost for any reason."""
        return (
            self.dropped_queue_full
            + self.dropped_write_failed
            + self.dropped_on_close
            + self.dropped_after_close
        )


class Recorder(Protocol):
    """What a relay session needs from a recorder (a seam tests and the null one fill)."""

    def start(self) -> None:
        """Start the background writer (inside the running event loop)."""

    async def aclose(self, timeout: float = ...) -> None:  # noqa: ASYNC109 - a bound that answers, never raises
        """Flush for at most ``timeout`` seconds, then stop the writer."""

    def connection_started(
        self,
        *,
        session_id: str,
        connection_id: str,
        model: str,
        started_at: datetime | None = None,
        history: Iterable[Turn] = (),
    ) -> ConnectionRecord:
        """Record a new connection and return its record."""
        ...

    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109 - a bound that answers, never raises
        """Wait until everything queued is written or dropped; ``False`` on timeout."""
        ...

    async def load_turns(
        self,
        session_id: str,
        *,
        timeout: float = ...,  # noqa: ASYNC109 - a bound that answers, never raises
    ) -> list[Turn]:
        """The stored conversation of ``session_id`` (``[]`` when there is none)."""
        ...

    async def load_tool_calls(self, session_id: str) -> list[dict[str, Any]]:
        """The session's relay tool call records, oldest first (``[]`` when none)."""
        ...

    async def load_spent(self, session_id: str) -> Spent:
        """What the session used of its bill before (``Spent()`` when nothing)."""
        ...

    def stats(self) -> RecorderStats:
        """A snapshot of the counters."""
        ...


class NullRecorder:
    """The recorder without a table (``TABLE_NAME`` unset): nothing is written or read.

    Connections still parse their recorded events into their in-memory
    ``conversation``, so a rollover can seed a fresh upstream session without storage.
    """

    def __init__(self) -> None:
        """No state but the counters."""
        self._counters = RecordCounters()
        self._seq = itertools.count()

    def start(self) -> None:
        """Nothing to start."""

    async def aclose(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a bound that answers, never raises
        """Nothing to stop."""

    def connection_started(
        self,
        *,
        session_id: str,
        connection_id: str,
        model: str,
        started_at: datetime | None = None,
        history: Iterable[Turn] = (),
    ) -> ConnectionRecord:
        """A record whose writes go nowhere."""
        return ConnectionRecord(
            session_id=session_id,
            connection_id=connection_id,
            model=model,
            started_at=started_at or datetime.now(UTC),
            history=history,
            sink=discard,
            counters=self._counters,
            next_seq=lambda: next(self._seq) % SEQ_MODULUS,
            retention_seconds=0,
            usage_interval=math.inf,
        )

    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109 - a bound that answers, never raises
        """Nothing is ever queued."""
        return True

    async def load_turns(
        self,
        session_id: str,
        *,
        timeout: float = 0.0,  # noqa: ASYNC109 - a bound that answers, never raises
    ) -> list[Turn]:
        """No table, no stored conversation."""
        return []

    async def load_tool_calls(self, session_id: str) -> list[dict[str, Any]]:
        """No table, no tool call records."""
        return []

    async def load_spent(self, session_id: str) -> Spent:
        """No table, nothing spent before."""
        return Spent()

    def stats(self) -> RecorderStats:
        """Only ``ignored_events`` can move."""
        return RecorderStats(ignored_events=self._counters.ignored_events)
