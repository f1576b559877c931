"""What a session reports: its log lines and the counters its events move.

The session core returns what happened (``relay.effects.Happened``) and the shell hands
it here: each is one JSON log line carrying the session's ids, a warning when something
failed, and, for some, a metric counter (``relay.metrics.COUNTERS``). The session's
summary line when it ends comes from here too. Nothing here sees audio, tokens or keys.
"""

from __future__ import annotations

import logging
from typing import Final

from relay.core import SessionCore
from relay.effects import Happened
from relay.metrics import Metrics
from relay.recorder import RecorderStats

logger = logging.getLogger("relay.session")

#: What the core reports → the counter it moves.
COUNTED: Final = {
    "upstream failed": "UpstreamErrors",
    "rollover failed": "UpstreamErrors",
    "queue overflow": "QueueOverflows",
    "re-attach buffer overflow": "ReattachOverflows",
    "session resumed": "SessionsResumed",
    "rollover: switched to the fresh upstream": "Rollovers",
    "client cut": "ClientsCut",
}
WARNINGS: Final = frozenset({"upstream failed", "rollover failed", "client cut"})


class SessionReport:
    """One session's log lines and counters."""

    __slots__ = ("ids", "metrics")

    def __init__(self, metrics: Metrics, *, session_id: str, sub: str) -> None:
        self.metrics = metrics
        self.ids = {"session_id": session_id, "sub": sub}

    def log(self, message: str, *, level: int = logging.INFO, **fields: object) -> None:
        """One JSON line with the session's ids."""
        logger.log(level, message, extra={**self.ids, **fields})

    def happened(self, event: Happened) -> None:
        """Log (and count) what the core says happened."""
        counter = COUNTED.get(event.what)
        if counter is not None:
            self.metrics.count(counter)
        level = logging.WARNING if event.what in WARNINGS else logging.INFO
        self.log(event.what, level=level, **event.fields)

    def closed(
        self, core: SessionCore, stats: RecorderStats, *, jti: str, model: str, duration: float
    ) -> None:
        """The session's summary line."""
        self.log(
            "session closed",
            jti=jti,
            model=model,
            close_code=core.close_code,
            close_reason=core.close_reason,
            upstream_close_code=core.upstream_close_code,
            duration_ms=round(duration * 1000),
            frames_up=core.frames_up,
            frames_down=core.frames_down,
            bytes_up=core.bytes_up,
            bytes_down=core.bytes_down,
            reattached=core.reattached,
            rollovers=core.rollovers,
            turns=len(core.record.conversation),
            records_written=stats.written,
            records_dropped=stats.dropped,
            record_write_failures=stats.failed_attempts,
        )
