"""Relay metrics as CloudWatch Embedded Metric Format (EMF) lines on stdout.

Aggregated per interval, never one line per message: counters (SessionsStarted,
AuthFailures, UpstreamErrors, QueueOverflows, and the re-attach / resume / rollover
counts) are summed, ActiveSessions is sampled, the recorder's RecordsWritten,
RecordsDropped and RecordWriteFailures are the increase of its cumulative counters over
the interval, and RelayDelayMs (time from a frame arriving at the relay to its hand-off
to the other leg's socket) goes into a log-bucket histogram whose quantiles are emitted
as one EMF value array (100 values, one per percentile), so CloudWatch percentiles stay
meaningful. One line per interval, all with the dimension ``Service``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Final, TextIO

logger = logging.getLogger(__name__)

COUNTERS: Final = (
    "SessionsStarted",
    "AuthFailures",
    "UpstreamErrors",
    "QueueOverflows",
    # Sessions that outlive a connection (docs/design/sessions.md).
    "SessionsReattached",
    "SessionsResumed",
    "ReattachOverflows",
    "Rollovers",
    # Sessions moved to another task while this one leaves; clients cut for abuse.
    "SessionsHandedOver",
    "ClientsCut",
    # Client events whose locked fields the policy dropped (relay.policy).
    "LockedFieldsDropped",
    # Sessions that reached a bill limit, by limit (relay.bill_exit).
    "BillLimitMinutes",
    "BillLimitTokens",
    "BillLimitCost",
    # Recall's real-time meeting events (relay.meeting_socket): received; refused (bad,
    # forged or for another session); dropped over the rate limit, or by the router at a
    # bound (relay.meeting_router); sent to the task that holds their session; events
    # connections refused at the upgrade (no or a bad signature).
    "MeetingEvents",
    "MeetingEventsRefused",
    "MeetingEventsDropped",
    "MeetingEventsForwarded",
    "MeetingSocketsRefused",
)
#: Session-record counters, sampled from the recorder (cumulative) and emitted per interval.
RECORD_COUNTERS: Final = ("RecordsWritten", "RecordsDropped", "RecordWriteFailures")

#: Histogram bucket upper bounds in seconds: 1 µs · 1.15^k up to ~100 s.
_BOUNDS: Final[list[float]] = [1e-6 * 1.15**k for k in range(133)]
_LAST: Final = len(_BOUNDS)
_LOG_GROWTH: Final = math.log(1.15)
_log: Final = math.log  # constants for the mypyc build, not lookups per message


def bucket_index(seconds: float) -> int:
    """``bisect_left(_BOUNDS, seconds)``, by arithmetic: one log instead of eight float
    comparisons per relayed message. Float rounding can put the estimate one bucket off
    at a bound, so it is corrected against the bounds themselves."""
    if seconds <= _BOUNDS[0]:
        return 0
    index = int(_log(seconds / _BOUNDS[0]) / _LOG_GROWTH) + 1
    if index >= _LAST:
        return _LAST if seconds > _BOUNDS[_LAST - 1] else _LAST - 1
    if _BOUNDS[index - 1] >= seconds:
        return index - 1
    if _BOUNDS[index] < seconds:
        return index + 1
    return index


class DelayHistogram:
    """Log-bucketed histogram of delays (seconds); ~7 % relative precision."""

    __slots__ = ("count", "counts", "max", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(_BOUNDS) + 1)
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def observe(self, seconds: float, times: int = 1) -> None:
        """Record ``times`` messages that each waited ``seconds`` in the relay."""
        self.counts[bucket_index(seconds)] += times
        self.count += times
        self.total += seconds * times
        if seconds > self.max:
            self.max = seconds

    def quantile(self, q: float) -> float:
        """The bucket bound under which a fraction ``q`` of observations fall (seconds)."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return min(_BOUNDS[index] if index < len(_BOUNDS) else self.max, self.max)
        return self.max


class Metrics:
    """Counters and the delay histogram for one process; ``flush()`` renders one EMF line."""

    def __init__(
        self,
        *,
        namespace: str,
        service: str,
        active_sessions: Callable[[], int],
        stream: TextIO | None = None,
        records: Callable[[], tuple[int, int, int]] | None = None,
    ) -> None:
        """``records`` returns the recorder's cumulative (written, dropped, failed attempts)."""
        self.namespace = namespace
        self.service = service
        self._active_sessions = active_sessions
        self._stream = stream
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.delay = DelayHistogram()
        self._records = records
        self._records_seen = (0, 0, 0)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to one of COUNTERS."""
        self.counters[name] += n

    def render(self, now: float | None = None) -> dict[str, object]:
        """Build the EMF document for the interval so far and reset the interval."""
        delay, self.delay = self.delay, DelayHistogram()
        counters, self.counters = self.counters, dict.fromkeys(COUNTERS, 0)
        names = ["ActiveSessions", *COUNTERS]
        if self._records is not None:
            now_records = self._records()
            for name, new, old in zip(
                RECORD_COUNTERS, now_records, self._records_seen, strict=True
            ):
                counters[name] = new - old
            self._records_seen = now_records
            names.extend(RECORD_COUNTERS)
        metrics: list[dict[str, str]] = [{"Name": n, "Unit": "Count"} for n in names]
        doc: dict[str, object] = {
            "Service": self.service,
            "ActiveSessions": self._active_sessions(),
            **counters,
            "RelayedMessages": delay.count,
        }
        if delay.count:
            metrics.append({"Name": "RelayDelayMs", "Unit": "Milliseconds"})
            doc["RelayDelayMs"] = [round(delay.quantile(p / 100) * 1000, 4) for p in range(1, 101)]
            doc["RelayDelayP50Ms"] = round(delay.quantile(0.5) * 1000, 4)
            doc["RelayDelayP99Ms"] = round(delay.quantile(0.99) * 1000, 4)
            doc["RelayDelayMaxMs"] = round(delay.max * 1000, 4)
        doc["_aws"] = {
            "Timestamp": int((time.time() if now is None else now) * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": self.namespace,
                    "Dimensions": [["Service"]],
                    "Metrics": metrics,
                }
            ],
        }
        return doc

    def flush(self) -> None:
        """Write the interval's EMF line to stdout."""
        stream = self._stream or sys.stdout
        stream.write(json.dumps(self.render(), separators=(",", ":")) + "\n")
        stream.flush()

    async def run(self, interval: float) -> None:
        """Flush every ``interval`` seconds until cancelled, then flush once more."""
        try:
            while True:
                await asyncio.sleep(interval)
                self.flush()
        finally:
            self.flush()
