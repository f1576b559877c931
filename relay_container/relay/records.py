"""Session records: the relay's only DynamoDB writer, kept off the audio path.

What is written (shapes from ``storage.items``, keys from ``storage.schema``):

- ``SESSION#<id>`` / ``CONN#<started_at>#<connection_id>`` (``Connection``): model, start,
  end, close codes, and the usage of every ``response.done`` summed per connection;
- ``SESSION#<id>`` / ``TURN#<at_ms>#<seq>`` (``Turn``): final transcripts in order —
  ``conversation.item.input_audio_transcription.completed`` → ``user``,
  ``response.output_audio_transcript.done`` (or ``response.output_text.done`` in a text
  session) → ``assistant``. A user turn is stamped with the time its audio was committed
  (``input_audio_buffer.committed``), not the time its transcript arrived, because the
  transcription runs asynchronously and may finish after the agent has answered.
- every item carries ``expires_at`` = now + ``retention_days``.

How the relay uses it (all calls from the session are synchronous, O(1), never block,
never raise on bad input)::

    recorder = open_recorder(config.table_name, region=..., retention_days=...)
    recorder.start()                                   # owns one writer task
    record = recorder.connection_started(session_id=sub, connection_id=cid, model=model)
    # upstream pump, for each text frame; recorded_type() is the cheap filter:
    if (event_type := recorded_type(payload)) is not None:
        record.on_upstream_event(event_type, payload)
    record.connection_ended(close_code=1000, close_reason="", upstream_close_code=1000)
    await recorder.flush(timeout)                      # drain: push out what is queued
    await recorder.aclose()
    recorder.stats()                                   # counters for metrics and logs

Properties: session calls only ``put_nowait`` into one bounded queue; when it is full the
record is dropped and counted, never waited for. One writer task drains the queue in
batches (``BatchWriteItem`` of up to 25 turns, one ``UpdateItem`` per connection
summary, coalesced per batch), running boto3 in a worker thread with short botocore
timeouts and no botocore retries; it retries a failed write itself with exponential
backoff and full jitter for a bounded number of attempts, then drops and counts it, and
logs a rate-limited warning. A connection summary is rewritten whole (``SET`` of every
known attribute) at start, at most every ``usage_interval`` seconds while responses
complete, and at the end, so any later write repairs a lost earlier one.

What can be lost: on ``kill -9``, whatever is queued or in flight (with a healthy table,
the records of the last few tens of milliseconds; at most ``queue_size`` records plus one
batch) and up to ``usage_interval`` seconds of usage; during a storage outage, whatever
overflows the queue or exhausts its attempts (counted in :class:`RecorderStats`).

It refuses to read the table except to load a conversation for resume
(:meth:`SessionRecorder.load_turns`, delegating to ``relay.conversation``), to parse any
event type outside :data:`RECORDED_EVENT_TYPES`, and to read the environment: the table,
region and endpoint are arguments (boto3 itself still honours
``AWS_ENDPOINT_URL_DYNAMODB`` when ``endpoint_url`` is ``None``).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Protocol, Self, TypeGuard

import boto3
from boto3.dynamodb.types import TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from relay import conversation
from relay.conversation import TURN_TAKING_EVENT_TYPES, Turn, TurnTaking, TurnWindow
from storage import items, schema

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

# GA server events the recorder reads (openai-python types/realtime/*_event.py).
INPUT_COMMITTED: Final = "input_audio_buffer.committed"
INPUT_TRANSCRIPTION_COMPLETED: Final = "conversation.item.input_audio_transcription.completed"
OUTPUT_AUDIO_TRANSCRIPT_DONE: Final = "response.output_audio_transcript.done"
OUTPUT_TEXT_DONE: Final = "response.output_text.done"
RESPONSE_DONE: Final = "response.done"

#: Recorded events whose content is read (parsed once, checked, bounded).
PARSED_EVENT_TYPES: Final[frozenset[str]] = frozenset(
    {
        INPUT_COMMITTED,
        INPUT_TRANSCRIPTION_COMPLETED,
        OUTPUT_AUDIO_TRANSCRIPT_DONE,
        OUTPUT_TEXT_DONE,
        RESPONSE_DONE,
    }
)
#: The only upstream event types worth handing to :meth:`ConnectionRecord.on_upstream_event`
#: (the parsed ones, plus the turn-taking ones, whose type is all that is used); the
#: session filters with :func:`recorded_type`, so audio frames are never parsed here.
RECORDED_EVENT_TYPES: Final[frozenset[str]] = PARSED_EVENT_TYPES | TURN_TAKING_EVENT_TYPES
#: Bytes of a frame :func:`recorded_type` looks at: the top-level ``type`` of a server
#: event comes first, or after a short ``event_id``.
TYPE_PEEK_BYTES: Final = 160
_TYPE_KEY: Final = b'"type"'
_TYPE_FIRST: Final = b'{"type":"'
_LONGEST_RECORDED_TYPE: Final = max(len(t) for t in RECORDED_EVENT_TYPES)
_RECORDED_TYPE_BYTES: Final[dict[bytes, str]] = {t.encode(): t for t in RECORDED_EVENT_TYPES}

#: Recorded events larger than this are not parsed (ignored and counted): a real
#: ``response.done`` carries transcripts but no audio and stays far below it.
MAX_RECORDED_EVENT_BYTES: Final = 1024 * 1024
#: ``response.done`` usage fields summed per connection: stored name → path in ``usage``.
USAGE_FIELDS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("total_tokens", ("total_tokens",)),
    ("input_tokens", ("input_tokens",)),
    ("output_tokens", ("output_tokens",)),
    ("input_text_tokens", ("input_token_details", "text_tokens")),
    ("input_audio_tokens", ("input_token_details", "audio_tokens")),
    ("input_image_tokens", ("input_token_details", "image_tokens")),
    ("input_cached_tokens", ("input_token_details", "cached_tokens")),
    ("output_text_tokens", ("output_token_details", "text_tokens")),
    ("output_audio_tokens", ("output_token_details", "audio_tokens")),
)
#: A single response's token count above this is not believed (and not summed).
MAX_TOKENS_PER_RESPONSE: Final = 10**9
#: Close reasons are at most 123 bytes on the wire (RFC 6455 §5.5.1).
MAX_CLOSE_REASON_CHARS: Final = 123
#: Commit times remembered per connection while waiting for their transcripts.
MAX_PENDING_COMMITS: Final = 64
#: Turn sequence numbers wrap here (``schema.turn_sk`` pads to six digits); they only
#: break ties between turns of one session stamped in the same millisecond.
SEQ_MODULUS: Final = 1_000_000
#: Most records taken from the queue for one write cycle.
MAX_OPS_PER_CYCLE: Final = 100
BATCH_WRITE_LIMIT: Final = 25

#: DynamoDB error codes worth another attempt (anything 5xx is too).
RETRYABLE_ERROR_CODES: Final[frozenset[str]] = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "LimitExceededException",
    }
)


# Values


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded attempts with exponential backoff and full jitter (AWS architecture blog)."""

    max_attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 2.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(0.0, ceiling)


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


@dataclass(slots=True)
class _Counters:
    enqueued: int = 0
    written: int = 0
    failed_attempts: int = 0
    dropped_queue_full: int = 0
    dropped_write_failed: int = 0
    dropped_on_close: int = 0
    dropped_after_close: int = 0
    ignored_events: int = 0


@dataclass(frozen=True, slots=True)
class _PutTurn:
    item: items.Turn


@dataclass(frozen=True, slots=True)
class _UpdateConnection:
    pk: str
    sk: str
    values: dict[str, Any]


_Op = _PutTurn | _UpdateConnection
_Sink = Callable[[_Op], None]


# One connection


class ConnectionRecord:
    """What one relay connection records: its summary, its turns, its usage.

    Made by :meth:`SessionRecorder.connection_started`. Every method is synchronous and
    cheap: it parses at most one recorded event and hands records to the recorder's
    queue. It stays usable after :meth:`connection_ended` (events that arrive late, for
    example while a re-attach grace period holds the upstream open, are still recorded).
    ``conversation`` keeps the newest turns in memory (seeded with ``history``) for a
    rollover to replay without reading the table, and ``turn_taking`` tells it when the
    conversation is between turns.
    """

    __slots__ = (
        "_commits",
        "_counters",
        "_ended",
        "_next_seq",
        "_responses",
        "_retention_seconds",
        "_sink",
        "_usage",
        "_usage_interval",
        "_usage_written_at",
        "connection_id",
        "conversation",
        "model",
        "session_id",
        "started_at",
        "turn_taking",
    )

    def __init__(
        self,
        *,
        session_id: str,
        connection_id: str,
        model: str,
        started_at: datetime,
        history: Iterable[Turn],
        sink: _Sink,
        counters: _Counters,
        next_seq: Callable[[], int],
        retention_seconds: int,
        usage_interval: float,
    ) -> None:
        """Record the connection's start (see :meth:`SessionRecorder.connection_started`)."""
        self.session_id = session_id
        self.connection_id = connection_id
        self.model = model
        self.started_at = _iso(started_at)
        self.conversation = TurnWindow(history)
        self.turn_taking = TurnTaking()
        self._sink = sink
        self._counters = counters
        self._next_seq = next_seq
        self._retention_seconds = retention_seconds
        self._usage_interval = usage_interval
        self._commits: dict[str, tuple[int, int]] = {}
        self._usage: dict[str, int] = {}
        self._responses = 0
        self._usage_written_at = -math.inf
        self._ended: dict[str, Any] = {}
        self._write_summary()

    # Session-facing API

    def on_upstream_event(self, event_type: str, raw: str | bytes) -> None:
        """Record what an upstream event of a type in :data:`RECORDED_EVENT_TYPES` carries.

        Other types return at once. Malformed, mistyped or oversized events are ignored
        and counted (``ignored_events``); nothing here raises on event content.
        """
        if event_type not in PARSED_EVENT_TYPES:
            self.turn_taking.observe(event_type)  # nothing to read in these
            return
        if len(raw) > MAX_RECORDED_EVENT_BYTES:
            self._counters.ignored_events += 1
            return
        try:
            event = json.loads(raw)
        except (ValueError, RecursionError):  # bad JSON, bad UTF-8, absurd nesting
            self._counters.ignored_events += 1
            return
        if not isinstance(event, dict) or event.get("type") != event_type:
            self._counters.ignored_events += 1
            return
        self.turn_taking.observe(event_type)
        now_ms = _now_ms()
        if event_type == INPUT_COMMITTED:
            self._remember_commit(event.get("item_id"), now_ms)
        elif event_type == INPUT_TRANSCRIPTION_COMPLETED:
            item_id = event.get("item_id")
            commit = self._commits.pop(item_id, None) if isinstance(item_id, str) else None
            self._add_turn("user", event.get("transcript"), commit or (now_ms, None), item_id)
        elif event_type == OUTPUT_AUDIO_TRANSCRIPT_DONE:
            self._add_turn(
                "assistant", event.get("transcript"), (now_ms, None), event.get("item_id")
            )
        elif event_type == OUTPUT_TEXT_DONE:
            self._add_turn("assistant", event.get("text"), (now_ms, None), event.get("item_id"))
        else:
            self._add_response(event.get("response"))

    def connection_ended(
        self,
        *,
        close_code: int | None,
        close_reason: str = "",
        upstream_close_code: int | None = None,
        ended_at: datetime | None = None,
    ) -> None:
        """Record how the connection ended; the first call wins, later ones are ignored."""
        if self._ended:
            return
        ended: dict[str, Any] = {"ended_at": _iso(ended_at)}
        if _is_int(close_code):
            ended["close_code"] = close_code
        if isinstance(close_reason, str) and close_reason:
            ended["close_reason"] = conversation.clean_text(close_reason, MAX_CLOSE_REASON_CHARS)
        if _is_int(upstream_close_code):
            ended["upstream_close_code"] = upstream_close_code
        self._ended = ended
        self._write_summary()

    @property
    def usage(self) -> dict[str, int]:
        """Usage summed over this connection's ``response.done`` events so far."""
        return dict(self._usage)

    # Private

    def _remember_commit(self, item_id: object, now_ms: int) -> None:
        if not isinstance(item_id, str) or len(item_id) > conversation.MAX_ITEM_ID_CHARS:
            self._counters.ignored_events += 1
            return
        # The turn's place is taken now, so it sorts before the answer it triggers even
        # when its transcript arrives after that answer.
        self._commits[item_id] = (now_ms, self._next_seq())
        if len(self._commits) > MAX_PENDING_COMMITS:  # transcripts that never came
            del self._commits[next(iter(self._commits))]

    def _add_turn(
        self, role: str, text: object, place: tuple[int, int | None], item_id: object
    ) -> None:
        if not isinstance(text, str):
            self._counters.ignored_events += 1
            return
        at_ms, seq = place
        turn = conversation.make_turn(role, text, _iso_ms(at_ms), item_id)
        if turn is None:  # nothing was said (an empty transcript is normal)
            return
        self.conversation.append(turn)
        item: items.Turn = {
            "pk": schema.session_pk(self.session_id),
            "sk": schema.turn_sk(at_ms, self._next_seq() if seq is None else seq),
            "session_id": self.session_id,
            "role": turn.role,
            "text": turn.text,
            "at": turn.at,
            "expires_at": self._expires_at(),
        }
        if turn.item_id is not None:
            item["item_id"] = turn.item_id
        self._sink(_PutTurn(item))

    def _add_response(self, response: object) -> None:
        if not isinstance(response, dict):
            self._counters.ignored_events += 1
            return
        self._responses += 1
        usage = response.get("usage")
        if isinstance(usage, dict):
            for name, path in USAGE_FIELDS:
                value = _dig(usage, path)
                if _is_int(value) and 0 <= value <= MAX_TOKENS_PER_RESPONSE:
                    self._usage[name] = self._usage.get(name, 0) + value
        # After the end no later write would carry it, so late usage goes out at once.
        if self._ended or time.monotonic() - self._usage_written_at >= self._usage_interval:
            self._write_summary()

    def _write_summary(self) -> None:
        values: dict[str, Any] = {
            "session_id": self.session_id,
            "connection_id": self.connection_id,
            "started_at": self.started_at,
            "model": self.model,
            "expires_at": self._expires_at(),
        }
        if self._responses:
            values["responses"] = self._responses
            values["usage"] = dict(self._usage)
            self._usage_written_at = time.monotonic()
        values.update(self._ended)
        self._sink(
            _UpdateConnection(
                pk=schema.session_pk(self.session_id),
                sk=schema.connection_sk(self.started_at, self.connection_id),
                values=values,
            )
        )

    def _expires_at(self) -> int:
        return int(time.time()) + self._retention_seconds


def recorded_type(payload: bytes) -> str | None:
    """The type of an upstream event if it is one of :data:`RECORDED_EVENT_TYPES`, else None.

    The upstream pump's filter: it looks at the first :data:`TYPE_PEEK_BYTES` bytes only
    and decodes nothing, so an audio delta costs one bounded ``find``. A false match (the
    text appearing inside another value) is harmless: :meth:`ConnectionRecord.on_upstream_event`
    checks the parsed type.
    """
    if payload.startswith(_TYPE_FIRST):  # what OpenAI and our simulator send
        start = len(_TYPE_FIRST)
    else:
        at = payload.find(_TYPE_KEY, 0, TYPE_PEEK_BYTES)
        if at < 0:
            return None
        start = at + len(_TYPE_KEY)
        while start < TYPE_PEEK_BYTES and payload[start : start + 1] in (b" ", b":"):
            start += 1
        if payload[start : start + 1] != b'"':
            return None
        start += 1
    end = payload.find(b'"', start, start + _LONGEST_RECORDED_TYPE + 1)
    if end < 0:
        return None
    return _RECORDED_TYPE_BYTES.get(payload[start:end])


# The recorders


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

    def stats(self) -> RecorderStats:
        """A snapshot of the counters."""
        ...


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


def dynamodb_client(
    *,
    region: str | None,
    endpoint_url: str | None = None,
    connect_timeout: float = 2.0,
    read_timeout: float = 2.0,
) -> DynamoDBClient:
    """A DynamoDB client with short timeouts and no retries of its own (blocking: use a thread).

    A fresh ``boto3`` session each time, because the default one is not thread-safe.
    """
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": 1},
        max_pool_connections=4,
    )
    client: DynamoDBClient = boto3.session.Session().client(
        "dynamodb", region_name=region, endpoint_url=endpoint_url, config=config
    )
    return client


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
        retry: RetryPolicy = RetryPolicy(),
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
        self._region = region
        self._endpoint_url = endpoint_url
        self._retention_seconds = retention_days * 86_400
        self._queue: asyncio.Queue[_Op] = asyncio.Queue(maxsize=queue_size)
        self._retry = retry
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._usage_interval = usage_interval
        self._warn_interval = warn_interval
        self._warned_at = -math.inf
        self._counters = _Counters()
        self._in_flight = 0
        self._seq = itertools.count()
        self._serializer = TypeSerializer()
        self._client: DynamoDBClient | None = None
        self._client_lock = asyncio.Lock()
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
        (see ``conversation.load_turns``).
        """
        await self.flush(timeout)
        try:
            client = await self._ensure_client()
        except BotoCoreError as error:
            logger.warning(
                "conversation load failed; resuming without history",
                extra={"session_id": session_id, "error": type(error).__name__},
            )
            return []
        return await conversation.load_turns(
            session_id,
            client=client,
            table_name=self.table_name,
            max_turns=max_turns,
            max_bytes=max_bytes,
            timeout=timeout,
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

    def _enqueue(self, op: _Op) -> None:
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

    async def _write(self, ops: list[_Op]) -> None:
        turns: list[items.Turn] = []
        updates: dict[tuple[str, str], tuple[dict[str, Any], int]] = {}
        for op in ops:
            if isinstance(op, _PutTurn):
                turns.append(op.item)
            else:
                values, count = updates.get((op.pk, op.sk), ({}, 0))
                updates[(op.pk, op.sk)] = ({**values, **op.values}, count + 1)
        for start in range(0, len(turns), BATCH_WRITE_LIMIT):
            await self._put_turns(turns[start : start + BATCH_WRITE_LIMIT])
        for (pk, sk), (values, count) in updates.items():
            await self._update_connection(pk, sk, values, count)

    async def _put_turns(self, chunk: list[items.Turn]) -> None:
        pending: list[Any] = [
            {"PutRequest": {"Item": {k: self._serializer.serialize(v) for k, v in item.items()}}}
            for item in chunk
        ]
        for attempt in range(1, self._retry.max_attempts + 1):
            try:
                client = await self._ensure_client()
                response = await asyncio.to_thread(
                    client.batch_write_item, RequestItems={self.table_name: pending}
                )
            except (BotoCoreError, ClientError) as error:
                self._failed_attempt(error)
                if not _retryable(error):
                    break
            else:
                unprocessed = response.get("UnprocessedItems", {}).get(self.table_name, [])
                self._settle(written=len(pending) - len(unprocessed))
                pending = list(unprocessed)
                if not pending:
                    return
                self._failed_attempt(None)  # throttled: part of the batch came back
            if attempt < self._retry.max_attempts:
                await asyncio.sleep(self._retry.delay(attempt))
        self._settle(dropped=len(pending))

    async def _update_connection(
        self, pk: str, sk: str, values: dict[str, Any], count: int
    ) -> None:
        names = {f"#a{i}": name for i, name in enumerate(values)}
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {schema.PARTITION_KEY: {"S": pk}, schema.SORT_KEY: {"S": sk}},
            "UpdateExpression": "SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(values))),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {
                f":v{i}": self._serializer.serialize(value)
                for i, value in enumerate(values.values())
            },
        }
        for attempt in range(1, self._retry.max_attempts + 1):
            try:
                client = await self._ensure_client()
                await asyncio.to_thread(functools.partial(client.update_item, **request))
            except (BotoCoreError, ClientError) as error:
                self._failed_attempt(error)
                if not _retryable(error):
                    break
            else:
                self._settle(written=count)
                return
            if attempt < self._retry.max_attempts:
                await asyncio.sleep(self._retry.delay(attempt))
        self._settle(dropped=count)

    async def _ensure_client(self) -> DynamoDBClient:
        async with self._client_lock:
            if self._client is None:
                self._client = await asyncio.to_thread(
                    dynamodb_client,
                    region=self._region,
                    endpoint_url=self._endpoint_url,
                    connect_timeout=self._connect_timeout,
                    read_timeout=self._read_timeout,
                )
            return self._client

    def _settle(self, *, written: int = 0, dropped: int = 0) -> None:
        self._counters.written += written
        self._counters.dropped_write_failed += dropped
        self._in_flight -= written + dropped
        if dropped:
            self._warn("records dropped after failed writes", None)

    def _failed_attempt(self, error: Exception | None) -> None:
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
                "error_code": _error_code(error),
                "failed_attempts": c.failed_attempts,
                "dropped": self.stats().dropped,
                "queued": self._queue.qsize(),
            },
        )


class NullRecorder:
    """The recorder without a table (``TABLE_NAME`` unset): nothing is written or read.

    Connections still parse their recorded events into their in-memory
    ``conversation``, so a rollover can seed a fresh upstream session without storage.
    """

    def __init__(self) -> None:
        """No state but the counters."""
        self._counters = _Counters()
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
            sink=_discard,
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

    def stats(self) -> RecorderStats:
        """Only ``ignored_events`` can move."""
        return RecorderStats(ignored_events=self._counters.ignored_events)


# Private helpers


def _discard(op: _Op) -> None:
    del op


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _dig(mapping: dict[str, Any], path: tuple[str, ...]) -> object:
    value: object = mapping
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _iso_ms(epoch_ms: int) -> str:
    """Fixed-width ISO 8601 UTC with milliseconds, so lexical order is time order."""
    stamp = datetime.fromtimestamp(epoch_ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{epoch_ms % 1000:03d}Z"


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return _iso_ms(_now_ms())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _iso_ms(int(moment.timestamp() * 1000))


def _error_code(error: Exception | None) -> str | None:
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code")
        return code if isinstance(code, str) else None
    return None


def _retryable(error: Exception) -> bool:
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return _error_code(error) in RETRYABLE_ERROR_CODES or (
            isinstance(status, int) and status >= 500
        )
    return True  # connection refused, timeouts: the table may come back
