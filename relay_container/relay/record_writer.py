"""The session records' writer: a bounded queue drained in batches to DynamoDB, off the audio path.

Sessions hand records (``relay.record_items``) to :meth:`SessionRecorder.connection_started`'s
record, which puts them into one bounded queue with ``put_nowait``; when it is full the
record is dropped and counted, never waited for. One writer task drains the queue in
batches (``BatchWriteItem`` of up to 25 turns, one ``UpdateItem`` per connection summary,
coalesced per batch), running boto3 in a worker thread with short botocore timeouts and
no botocore retries; it retries a failed write itself with exponential backoff and full
jitter for a bounded number of attempts, then drops and counts it, and logs a
rate-limited warning::

    recorder = open_recorder(config.table_name, region=..., retention_days=...)
    recorder.start()                                   # owns one writer task
    record = recorder.connection_started(session_id=sub, connection_id=cid, model=model)
    ...                                                # the session feeds the record
    await recorder.flush(timeout)                      # drain: push out what is queued
    await recorder.aclose()
    recorder.stats()                                   # counters for metrics and logs

What can be lost: on ``kill -9``, whatever is queued or in flight (with a healthy table,
the records of the last few tens of milliseconds; at most ``queue_size`` records plus one
batch); during a storage outage, whatever overflows the queue or exhausts its attempts
(counted in :class:`RecorderStats`).

It refuses to read the table except to load a conversation for resume
(:meth:`SessionRecorder.load_turns`, delegating to ``relay.history``), and to read
the environment: the table, region and endpoint are arguments (boto3 itself still honours
``AWS_ENDPOINT_URL_DYNAMODB`` when ``endpoint_url`` is ``None``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final, Self

from botocore.exceptions import BotoCoreError

from relay import conversation, history
from relay.conversation import Turn
from relay.record_items import SEQ_MODULUS, ConnectionRecord, PutTurn, RecordCounters, RecordOp
from relay.record_table import DEFAULT_RETRY, RecordTable, RetryPolicy, error_code
from relay.recorder import NullRecorder, Recorder, RecorderStats
from relay.usage_meter import Spent
from storage import items

logger = logging.getLogger(__name__)

#: Most records taken from the queue for one write cycle.
MAX_OPS_PER_CYCLE: Final = 100
BATCH_WRITE_LIMIT: Final = 25

# The recorder


def open_recorder(
    table_name: str | None,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    retention_days: int = 30,
) -> Recorder:
    """A :class:`SessionRecorder` on ``table_name``, or a :class:`NullRecorder` without one."""
    if not table_name:
        return NullRecorder()
    return SessionRecorder(
        table_name, region=region, endpoint_url=endpoint_url, retention_days=retention_days
    )


class SessionRecorder:
    """Writes connection summaries and turns to one table from one background task."""

    def __init__(
        self,
        table_name: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        retention_days: int = 30,
        queue_size: int = 2048,
        retry: RetryPolicy = DEFAULT_RETRY,
        connect_timeout: float = 2.0,
        read_timeout: float = 2.0,
        usage_interval: float = 15.0,
        warn_interval: float = 10.0,
    ) -> None:
        """Configure the recorder; nothing touches the network before :meth:`start`.

        Args:
            table_name: the application table (``TABLE_NAME``).
            region: its AWS region; ``None`` lets boto3 resolve it.
            endpoint_url: a DynamoDB-compatible endpoint; ``None`` lets boto3 resolve it.
            retention_days: ``expires_at`` of every item is now plus this.
            queue_size: records held at most while waiting for the writer.
            retry: attempts and backoff of one write.
            connect_timeout: botocore's connect timeout, seconds.
            read_timeout: botocore's read timeout, seconds.
            usage_interval: least seconds between two usage rewrites of a connection.
            warn_interval: least seconds between two warnings in the log.
        """
        self.table_name = table_name
        self._table = RecordTable(
            table_name,
            self,
            region=region,
            endpoint_url=endpoint_url,
            retry=retry,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        self._retention_seconds = retention_days * 86_400
        self._queue: asyncio.Queue[RecordOp] = asyncio.Queue(maxsize=queue_size)
        self._usage_interval = usage_interval
        self._warn_interval = warn_interval
        self._warned_at = -math.inf
        self._counters = RecordCounters()
        self._in_flight = 0
        self._seq = itertools.count()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    # Lifecycle

    def start(self) -> None:
        """Start the writer task; call once, from the running loop."""
        if self._writer is None and not self._closed:
            self._writer = asyncio.get_running_loop().create_task(
                self._run(), name="session-records-writer"
            )

    async def aclose(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a bound that answers, never raises
        """Flush for at most ``timeout`` seconds, stop the writer, count what is left."""
        if self._closed:
            return
        if self._writer is not None:
            await self.flush(timeout)
            self._writer.cancel()
            await asyncio.wait({self._writer}, timeout=timeout)
        self._closed = True
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
            self._counters.dropped_on_close += 1

    async def __aenter__(self) -> Self:
        """Start the writer."""
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Flush briefly and stop."""
        await self.aclose()

    # Session-facing API

    def connection_started(
        self,
        *,
        session_id: str,
        connection_id: str,
        model: str,
        started_at: datetime | None = None,
        history: Iterable[Turn] = (),
    ) -> ConnectionRecord:
        """Record a new connection of ``session_id`` (the token subject) and return its record.

        Args:
            session_id: the session the connection carries (turns are filed under it).
            connection_id: unique per connection (for example a uuid4 hex).
            model: the upstream model.
            started_at: when it started (default now; naive means UTC).
            history: turns already known (a resume's loaded turns) to prefill the
                record's in-memory ``conversation``; they are not written again.
        """
        return ConnectionRecord(
            session_id=session_id,
            connection_id=connection_id,
            model=model,
            started_at=started_at or datetime.now(UTC),
            history=history,
            sink=self._enqueue,
            counters=self._counters,
            next_seq=self._next_seq,
            retention_seconds=self._retention_seconds,
            usage_interval=self._usage_interval,
        )

    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109 - a bound that answers, never raises
        """Wait until every queued record is written or dropped; ``False`` if time ran out."""
        if self._writer is None or self._writer.done():
            return self._queue.empty()
        try:
            async with asyncio.timeout(timeout):
                await self._queue.join()
        except TimeoutError:
            return False
        return True

    async def load_turns(
        self,
        session_id: str,
        *,
        max_turns: int = conversation.MAX_HISTORY_TURNS,
        max_bytes: int = conversation.MAX_HISTORY_BYTES,
        timeout: float = conversation.LOAD_TIMEOUT_SECONDS,  # noqa: ASYNC109 - a bound that answers, never raises
    ) -> list[Turn]:
        """The stored conversation of ``session_id``, newest kept, oldest first.

        Flushes first (for at most ``timeout``), so turns this task queued are part of
        what is read; the read then has ``timeout`` of its own, so the whole call takes at
        most twice that. Storage failures give ``[]`` and a warning
        (see ``history.load_turns``).
        """
        await self.flush(timeout)
        try:
            client = await self._table.client()
        except BotoCoreError as error:
            logger.warning(
                "conversation load failed; resuming without history",
                extra={"session_id": session_id, "error": type(error).__name__},
            )
            return []
        return await history.load_turns(
            session_id,
            client=client,
            table_name=self.table_name,
            max_turns=max_turns,
            max_bytes=max_bytes,
            timeout=timeout,
        )

    async def load_tool_calls(self, session_id: str) -> list[dict[str, Any]]:
        """The session's relay tool call records, oldest first (see ``history``)."""
        try:
            client = await self._table.client()
        except BotoCoreError:
            return []
        return await history.load_tool_calls(session_id, client=client, table_name=self.table_name)

    async def load_spent(self, session_id: str) -> Spent:
        """What the session used of its bill before (see ``history.load_spent``)."""
        try:
            client = await self._table.client()
        except BotoCoreError:
            return Spent()
        return await history.load_spent(
            session_id, client=client, table_name=self.table_name, now=time.time()
        )

    def stats(self) -> RecorderStats:
        """A snapshot of the counters (for metrics and the session-closed log line)."""
        c = self._counters
        return RecorderStats(
            enqueued=c.enqueued,
            written=c.written,
            failed_attempts=c.failed_attempts,
            dropped_queue_full=c.dropped_queue_full,
            dropped_write_failed=c.dropped_write_failed,
            dropped_on_close=c.dropped_on_close,
            dropped_after_close=c.dropped_after_close,
            ignored_events=c.ignored_events,
            queued=self._queue.qsize(),
            in_flight=self._in_flight,
        )

    # Queue (the only part the audio path touches)

    def _enqueue(self, op: RecordOp) -> None:
        if self._closed:
            self._counters.dropped_after_close += 1
            return
        try:
            self._queue.put_nowait(op)
        except asyncio.QueueFull:
            self._counters.dropped_queue_full += 1
            self._warn("queue full, records dropped", None)
            return
        self._counters.enqueued += 1

    def _next_seq(self) -> int:
        return next(self._seq) % SEQ_MODULUS

    # Writer

    async def _run(self) -> None:
        while True:
            # Idle until a record arrives; aclose() cancels this wait, so it needs no timeout.
            ops = [await self._queue.get()]
            while len(ops) < MAX_OPS_PER_CYCLE and not self._queue.empty():
                ops.append(self._queue.get_nowait())
            self._in_flight = len(ops)
            try:
                await self._write(ops)
            except asyncio.CancelledError:
                self._counters.dropped_on_close += self._in_flight  # outcome unknown
                raise
            except Exception:  # the writer task is a boundary: one bad batch must not end it
                logger.exception("session records: writer failed; batch dropped")
                self._counters.dropped_write_failed += self._in_flight
            finally:
                self._in_flight = 0
                for _ in ops:
                    self._queue.task_done()

    async def _write(self, ops: list[RecordOp]) -> None:
        # One put per key in a batch (BatchWriteItem refuses duplicates): a later put of the
        # same item (a tool call's end after its start) supersedes the earlier one.
        puts: dict[tuple[str, str], items.Turn | items.ToolCallRecord] = {}
        superseded = 0
        updates: dict[tuple[str, str], tuple[dict[str, Any], int]] = {}
        for op in ops:
            if isinstance(op, PutTurn):
                key = (op.item["pk"], op.item["sk"])
                superseded += key in puts
                puts[key] = op.item
            else:
                values, count = updates.get((op.pk, op.sk), ({}, 0))
                updates[(op.pk, op.sk)] = ({**values, **op.values}, count + 1)
        if superseded:
            self.settled(written=superseded)
        turns = list(puts.values())
        for start in range(0, len(turns), BATCH_WRITE_LIMIT):
            await self._table.put_items(turns[start : start + BATCH_WRITE_LIMIT])
        for (pk, sk), (values, count) in updates.items():
            await self._table.update_item(pk, sk, values, count)

    def settled(self, *, written: int = 0, dropped: int = 0) -> None:
        """Count records written or dropped by the table (``WriteOutcomes``)."""
        self._counters.written += written
        self._counters.dropped_write_failed += dropped
        self._in_flight -= written + dropped
        if dropped:
            self._warn("records dropped after failed writes", None)

    def failed_attempt(self, error: Exception | None) -> None:
        """Count and warn of one failed write attempt (``WriteOutcomes``)."""
        self._counters.failed_attempts += 1
        self._warn("write failed", error)

    def _warn(self, message: str, error: Exception | None) -> None:
        now = time.monotonic()
        if now - self._warned_at < self._warn_interval:
            return
        self._warned_at = now
        c = self._counters
        logger.warning(
            "session records: %s",
            message,
            extra={
                "table": self.table_name,
                "error": type(error).__name__ if error is not None else None,
                "error_code": error_code(error),
                "failed_attempts": c.failed_attempts,
                "dropped": self.stats().dropped,
                "queued": self._queue.qsize(),
            },
        )
