"""Session records: what the relay writes to DynamoDB, and how it behaves when storage fails.

Every test talks to a real moto server over HTTP (the shared one, or a dedicated one a
test stops and restarts); nothing here mocks boto3.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from relay.conversation import MAX_TURN_CHARS, TRUNCATION_MARK
from relay.events import RECORDED_EVENT_TYPES, recorded_type
from relay.record_items import MAX_RECORDED_EVENT_BYTES, ConnectionRecord
from relay.record_table import RetryPolicy
from relay.record_writer import SessionRecorder, open_recorder
from relay.recorder import NullRecorder, Recorder, RecorderStats
from storage import schema
from storage.items import plain
from tests.conftest import TIMEOUT, create_table, free_port, wait_for_port

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
STARTED_AT = datetime(2026, 11, 29, 20, 0, 0, 123000, tzinfo=UTC)


# GA server events, as OpenAI sends them (openai-python types/realtime/*_event.py)


def committed(item_id: str) -> str:
    return json.dumps(
        {
            "type": "input_audio_buffer.committed",
            "event_id": f"event_c_{item_id}",
            "previous_item_id": None,
            "item_id": item_id,
        }
    )


def transcription_completed(item_id: str, transcript: Any) -> str:
    return json.dumps(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "event_id": f"event_t_{item_id}",
            "item_id": item_id,
            "content_index": 0,
            "transcript": transcript,
            "usage": {"type": "duration", "seconds": 1.4},
        }
    )


def transcript_done(item_id: str, transcript: Any, response_id: str = "resp_1") -> str:
    return json.dumps(
        {
            "type": "response.output_audio_transcript.done",
            "event_id": f"event_a_{item_id}",
            "response_id": response_id,
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
            "transcript": transcript,
        }
    )


def response_done(usage: Any, response_id: str = "resp_1", status: str = "completed") -> str:
    return json.dumps(
        {
            "type": "response.done",
            "event_id": f"event_d_{response_id}",
            "response": {
                "object": "realtime.response",
                "id": response_id,
                "status": status,
                "status_details": None,
                "output": [
                    {
                        "id": "item_a",
                        "type": "message",
                        "role": "assistant",
                        "status": "completed",
                        "content": [{"type": "output_audio", "transcript": "…"}],
                    }
                ],
                "conversation_id": "conv_1",
                "output_modalities": ["audio"],
                "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}}},
                "usage": usage,
            },
        }
    )


def usage(inp: int, out: int, cached: int = 0) -> dict[str, Any]:
    return {
        "total_tokens": inp + out,
        "input_tokens": inp,
        "output_tokens": out,
        "input_token_details": {
            "text_tokens": inp // 4,
            "audio_tokens": inp - inp // 4,
            "image_tokens": 0,
            "cached_tokens": cached,
            "cached_tokens_details": {"text_tokens": cached, "audio_tokens": 0},
        },
        "output_token_details": {"text_tokens": out // 5, "audio_tokens": out - out // 5},
    }


def feed(record: ConnectionRecord, *raws: str) -> None:
    """Hand events to the record the way the session's upstream pump does."""
    for raw in raws:
        payload = raw.encode()
        if (event_type := recorded_type(payload)) is not None:
            record.on_upstream_event(event_type, payload)


# Reading the table back


@functools.cache
def table_reader(endpoint: str) -> Any:
    """One boto3 resource per endpoint (building one costs a few hundred ms)."""
    return boto3.resource("dynamodb", endpoint_url=endpoint, region_name="us-east-1")


def read_partition(endpoint: str, table: str, session_id: str) -> list[dict[str, Any]]:
    """Every item of one session, in sort-key order."""
    response = (
        table_reader(endpoint)
        .Table(table)
        .query(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": schema.session_pk(session_id)},
        )
    )
    return [plain(item) for item in response["Items"]]


def turns_of(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(i["role"], i["text"]) for i in items if str(i["sk"]).startswith(schema.TURN_PREFIX)]


def connections_of(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in items if str(i["sk"]).startswith(schema.CONNECTION_PREFIX)]


def accounted(stats: RecorderStats) -> bool:
    """Every enqueued record has exactly one outcome so far."""
    return stats.enqueued == (
        stats.written
        + stats.dropped_write_failed
        + stats.dropped_on_close
        + stats.queued
        + stats.in_flight
    )


async def until(predicate: Any, what: str) -> None:
    """Poll ``predicate`` with a deadline (no sleep-and-hope)."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class LoopWatch:
    """Proves synchronous calls never yield to the event loop (so they cannot wait on I/O)."""

    def __init__(self) -> None:
        self.ran = False
        asyncio.get_running_loop().call_soon(self._mark)

    def _mark(self) -> None:
        self.ran = True


# Fixtures


@pytest.fixture
async def recorder(dynamodb_endpoint: str, table_name: str) -> AsyncIterator[SessionRecorder]:
    """A started recorder on a fresh table of the shared moto server."""
    rec = SessionRecorder(
        table_name,
        region="us-east-1",
        endpoint_url=dynamodb_endpoint,
        retry=FAST_RETRY,
        usage_interval=0.0,
    )
    rec.start()
    try:
        yield rec
    finally:
        await rec.aclose(timeout=TIMEOUT)


class MotoProcess:
    """A moto server of this test's own, which the test may stop and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, time.monotonic() + 3 * TIMEOUT, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def own_moto() -> Iterator[MotoProcess]:
    """A dedicated moto server (never the shared one), stopped by PID at the end."""
    server = MotoProcess()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Blackhole:
    """A TCP server that accepts connections and never answers: storage that hangs."""

    def __init__(self) -> None:
        self.accepted = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        try:
            await reader.read()  # until the peer or close() ends it
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        async with asyncio.timeout(TIMEOUT):
            for writer in self._writers:
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
            await self._server.wait_closed()


@pytest.fixture
async def blackhole() -> AsyncIterator[Blackhole]:
    """Storage that accepts and never answers."""
    hole = Blackhole()
    yield hole
    await hole.close()


# What gets written


async def test_records_connection_turns_and_summed_usage(
    recorder: SessionRecorder, dynamodb_endpoint: str, table_name: str
) -> None:
    """A conversation leaves a connection item (model, times, close codes, usage) and its turns."""
    record = recorder.connection_started(
        session_id="bot-1", connection_id="c1", model="gpt-realtime-2.1", started_at=STARTED_AT
    )
    feed(
        record,
        committed("item_u1"),
        transcription_completed("item_u1", "Hello agent, what's on the agenda?"),
        transcript_done("item_a1", "Budget first, then hiring.", "resp_1"),
        response_done(usage(100, 50, cached=10), "resp_1"),
        committed("item_u2"),
        # The second answer is done before the user's transcript arrives (async ASR).
        transcript_done("item_a2", "Sure, I'll summarise.", "resp_2"),
        transcription_completed("item_u2", "Please summarise it."),
        response_done(usage(200, 70, cached=90), "resp_2"),
    )
    record.connection_ended(close_code=1000, close_reason="bye", upstream_close_code=1000)

    assert await recorder.flush(TIMEOUT)

    items = await asyncio.to_thread(read_partition, dynamodb_endpoint, table_name, "bot-1")
    assert turns_of(items) == [
        ("user", "Hello agent, what's on the agenda?"),
        ("assistant", "Budget first, then hiring."),
        ("user", "Please summarise it."),
        ("assistant", "Sure, I'll summarise."),
    ]
    turn = next(i for i in items if i.get("item_id") == "item_u1")
    assert turn["session_id"] == "bot-1"
    assert turn["at"].endswith("Z")
    assert turn["expires_at"] > time.time() + 29 * 86_400
    [conn] = connections_of(items)
    assert conn["sk"] == schema.connection_sk("2026-11-29T20:00:00.123000Z", "c1")
    assert conn["model"] == "gpt-realtime-2.1"
    assert conn["started_at"] == "2026-11-29T20:00:00.123000Z"
    assert conn["ended_at"] >= conn["started_at"]
    assert (conn["close_code"], conn["close_reason"], conn["upstream_close_code"]) == (
        1000,
        "bye",
        1000,
    )
    assert conn["responses"] == 2
    assert conn["usage"] == {
        "total_tokens": 420,
        "input_tokens": 300,
        "output_tokens": 120,
        "input_text_tokens": 25 + 50,
        "input_audio_tokens": 75 + 150,
        "input_image_tokens": 0,
        "input_cached_tokens": 100,
        # the cached breakdown prices a resumed session's usage (docs/bill.md)
        "input_cached_text_tokens": 100,
        "input_cached_audio_tokens": 0,
        "output_text_tokens": 10 + 14,
        "output_audio_tokens": 40 + 56,
    }
    assert conn["expires_at"] > time.time() + 29 * 86_400
    stats = recorder.stats()
    assert stats.written == stats.enqueued
    assert stats.dropped == 0
    assert stats.ignored_events == 0


async def test_usage_is_stored_before_the_connection_ends(
    recorder: SessionRecorder, dynamodb_endpoint: str, table_name: str
) -> None:
    """A relay killed mid-call still leaves the usage of the responses it saw."""
    record = recorder.connection_started(session_id="bot-2", connection_id="c1", model="m")
    feed(record, response_done(usage(10, 5)), response_done({"total_tokens": 7}))
    assert await recorder.flush(TIMEOUT)

    [conn] = connections_of(
        await asyncio.to_thread(read_partition, dynamodb_endpoint, table_name, "bot-2")
    )
    assert conn["responses"] == 2
    assert conn["usage"]["total_tokens"] == 22
    assert "ended_at" not in conn


async def test_usage_writes_are_spaced_but_the_end_carries_the_total(
    dynamodb_endpoint: str, table_name: str
) -> None:
    """Many responses cost a few writes, and the ended connection holds their exact sum."""
    async with SessionRecorder(
        table_name, region="us-east-1", endpoint_url=dynamodb_endpoint, usage_interval=3600
    ) as rec:
        record = rec.connection_started(session_id="bot-3", connection_id="c1", model="m")
        feed(record, *(response_done(usage(10, 1), f"resp_{i}") for i in range(40)))
        record.connection_ended(close_code=1001, close_reason="draining")
        record.connection_ended(close_code=1011, close_reason="ignored: first call wins")
        # A response finishing after the end (re-attach grace period) is written at once.
        feed(record, response_done(usage(10, 1), "resp_late"))
        assert await rec.flush(TIMEOUT)
        stats = rec.stats()
    # start, the first response.done, the end, the late one: the other 39 only update memory.
    assert stats.enqueued == 4
    [conn] = connections_of(
        await asyncio.to_thread(read_partition, dynamodb_endpoint, table_name, "bot-3")
    )
    assert (conn["responses"], conn["usage"]["total_tokens"]) == (41, 451)
    assert (conn["close_code"], conn["close_reason"]) == (1001, "draining")
    assert "upstream_close_code" not in conn


async def test_many_turns_keep_their_order(recorder: SessionRecorder) -> None:
    """Turns read back in the order they were spoken, across many write batches."""
    record = recorder.connection_started(session_id="bot-4", connection_id="c1", model="m")
    spoken = []
    for i in range(60):
        feed(record, committed(f"u{i}"), transcription_completed(f"u{i}", f"question {i}"))
        feed(record, transcript_done(f"a{i}", f"answer {i}"))
        spoken += [("user", f"question {i}"), ("assistant", f"answer {i}")]
    assert await recorder.flush(TIMEOUT)

    turns = await recorder.load_turns("bot-4", max_turns=500, max_bytes=10**6, timeout=TIMEOUT)
    assert [(t.role, t.text) for t in turns] == spoken
    assert [(t.role, t.text) for t in record.conversation.turns()] == spoken


async def test_flush_drains_everything_queued(recorder: SessionRecorder) -> None:
    """After flush returns True, every record queued before it is in the table."""
    records = [
        recorder.connection_started(session_id=f"bot-5-{n}", connection_id="c", model="m")
        for n in range(10)
    ]
    for i in range(30):
        for record in records:
            feed(record, transcript_done(f"a{i}", f"line {i}"))
    assert await recorder.flush(TIMEOUT)

    stats = recorder.stats()
    assert (stats.enqueued, stats.written, stats.queued, stats.in_flight) == (310, 310, 0, 0)
    for n in (0, 9):
        assert len(await recorder.load_turns(f"bot-5-{n}", timeout=TIMEOUT)) == 30


async def test_session_turns_survive_reattach_and_resume(recorder: SessionRecorder) -> None:
    """A session's later connections add to one conversation, which loads whole and in order."""
    first = recorder.connection_started(session_id="bot-6", connection_id="c1", model="m")
    feed(first, committed("u1"), transcription_completed("u1", "one"))
    first.connection_ended(close_code=1006)
    feed(first, transcript_done("a1", "two"))  # arrives during the re-attach grace period
    history = await recorder.load_turns("bot-6", timeout=TIMEOUT)
    second = recorder.connection_started(
        session_id="bot-6", connection_id="c2", model="m", history=history
    )
    feed(second, committed("u2"), transcription_completed("u2", "three"))
    assert await recorder.flush(TIMEOUT)

    loaded = await recorder.load_turns("bot-6", timeout=TIMEOUT)
    assert [t.text for t in loaded] == ["one", "two", "three"]
    assert [t.text for t in second.conversation.turns()] == ["one", "two", "three"]


# Never stalling the audio path


async def test_queue_overflow_drops_and_counts_without_blocking() -> None:
    """With no room left, records are dropped and counted; the calls never wait."""
    rec = SessionRecorder("t", region="us-east-1", queue_size=5)  # writer not started
    watch = LoopWatch()
    record = rec.connection_started(session_id="bot-7", connection_id="c1", model="m")
    for i in range(20):
        feed(record, transcript_done(f"a{i}", f"line {i}"))
    stats = rec.stats()
    assert not watch.ran  # not one await: nothing in there can wait for storage
    assert (stats.enqueued, stats.queued, stats.dropped_queue_full) == (5, 5, 16)
    assert len(record.conversation) == 20  # the in-memory conversation is not bounded by it

    await rec.aclose(timeout=0.1)
    assert rec.stats().dropped_on_close == 5
    record.connection_ended(close_code=1000)
    assert rec.stats().dropped_after_close == 1
    assert rec.stats().dropped == 16 + 5 + 1
    assert accounted(rec.stats())


async def test_hanging_storage_never_blocks_the_session(
    blackhole: Blackhole, caplog: pytest.LogCaptureFixture
) -> None:
    """Storage that never answers: calls return at once, overflow is counted, flush gives up."""
    caplog.set_level(logging.WARNING, logger="relay.record_writer")
    endpoint = await blackhole.start()
    rec = SessionRecorder(
        "t",
        region="us-east-1",
        endpoint_url=endpoint,
        queue_size=10,
        retry=FAST_RETRY,
        connect_timeout=0.5,
        read_timeout=1.0,
    )
    rec.start()
    record = rec.connection_started(session_id="bot-8", connection_id="c1", model="m")
    await until(lambda: rec.stats().in_flight > 0 and blackhole.accepted > 0, "a stuck write")

    watch = LoopWatch()
    for i in range(50):
        feed(record, committed(f"u{i}"), transcription_completed(f"u{i}", f"words {i}"))
    assert not watch.ran
    stats = rec.stats()
    assert stats.queued == 10
    assert stats.dropped_queue_full == 40
    assert len(record.conversation) == 50

    assert not await rec.flush(0.2)
    await rec.aclose(timeout=0.2)
    final = rec.stats()
    assert final.enqueued + final.dropped_queue_full == 51
    assert accounted(final)
    assert any("queue full" in r.getMessage() for r in caplog.records)


async def test_storage_outage_is_counted_logged_and_survived(
    own_moto: MotoProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """Storage stopped mid-session: calls stay instant, failures are counted and logged,
    nothing raises, and records flow again once storage is back."""
    caplog.set_level(logging.WARNING, logger="relay.record_writer")
    await asyncio.to_thread(create_table, own_moto.endpoint, "records")
    rec = SessionRecorder(
        "records",
        region="us-east-1",
        endpoint_url=own_moto.endpoint,
        retry=FAST_RETRY,
        connect_timeout=0.5,
        read_timeout=1.0,
        warn_interval=0.0,
    )
    rec.start()
    record = rec.connection_started(session_id="bot-9", connection_id="c1", model="m")
    feed(record, committed("u0"), transcription_completed("u0", "before the outage"))
    assert await rec.flush(TIMEOUT)
    assert rec.stats().written == 2

    # When storage goes away
    await asyncio.to_thread(own_moto.stop)
    watch = LoopWatch()
    for i in range(1, 6):
        feed(record, committed(f"u{i}"), transcription_completed(f"u{i}", f"during {i}"))
    feed(record, response_done(usage(5, 5)))
    assert not watch.ran
    # Then every write fails, is retried a bounded number of times and dropped.
    assert await rec.flush(TIMEOUT)
    during = rec.stats()
    assert during.failed_attempts >= FAST_RETRY.max_attempts
    assert during.dropped_write_failed == 6
    assert accounted(during)
    assert any(r.getMessage() == "session records: write failed" for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no escaped exception

    # And once it is back (empty, as a restarted moto is), new records are written.
    await asyncio.to_thread(own_moto.start)
    await asyncio.to_thread(create_table, own_moto.endpoint, "records")
    feed(record, committed("u9"), transcription_completed("u9", "after the outage"))
    record.connection_ended(close_code=1000)
    assert await rec.flush(TIMEOUT)
    await rec.aclose(timeout=TIMEOUT)

    items = await asyncio.to_thread(read_partition, own_moto.endpoint, "records", "bot-9")
    assert turns_of(items) == [("user", "after the outage")]
    [conn] = connections_of(items)  # the summary is rewritten whole: the lost start heals
    assert (conn["model"], conn["close_code"], conn["responses"]) == ("m", 1000, 1)
    assert accounted(rec.stats())
    assert rec.stats().dropped_write_failed == 6


async def test_missing_table_is_dropped_without_retries(
    dynamodb_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A table that does not exist is a permanent failure: counted and logged, not retried."""
    caplog.set_level(logging.WARNING, logger="relay.record_writer")
    async with SessionRecorder(
        "no-such-table", region="us-east-1", endpoint_url=dynamodb_endpoint, retry=FAST_RETRY
    ) as rec:
        record = rec.connection_started(session_id="bot-10", connection_id="c1", model="m")
        feed(record, transcript_done("a1", "hello"))
        assert await rec.flush(TIMEOUT)
        stats = rec.stats()
    assert (stats.failed_attempts, stats.dropped_write_failed, stats.written) == (2, 2, 0)
    assert any(
        getattr(r, "error_code", None) == "ResourceNotFoundException" for r in caplog.records
    )


# Hostile upstream events

AUDIO_DONE = "response.output_audio_transcript.done"
USER_DONE = "conversation.item.input_audio_transcription.completed"
COMMITTED = "input_audio_buffer.committed"
HUGE = "blah " * 60_000  # 300,000 characters, well under the parse bound

HOSTILE_EVENTS: list[tuple[str, str | bytes, int, list[str]]] = [
    # (event type, raw frame, ignored_events expected, turn texts expected)
    ("response.output_audio_transcript.done", "{", 1, []),
    ("response.output_audio_transcript.done", b"\xff\xfe\x00", 1, []),
    ("response.output_audio_transcript.done", "[]", 1, []),
    ("response.output_audio_transcript.done", '"transcript"', 1, []),
    ("response.output_audio_transcript.done", "null", 1, []),
    ("response.output_audio_transcript.done", "[" * 100_000 + "]" * 100_000, 1, []),
    ("response.output_audio_transcript.done", '{"type":"x"}', 1, []),
    ("response.output_audio_transcript.done", transcript_done("a", 42), 1, []),
    ("response.output_audio_transcript.done", transcript_done("a", ["hi"]), 1, []),
    ("response.output_audio_transcript.done", transcript_done("a", None), 1, []),
    ("response.output_audio_transcript.done", transcript_done("a", "   "), 0, []),
    ("response.output_audio_transcript.done", transcript_done("a", ""), 0, []),
    (
        "response.output_audio_transcript.done",
        json.dumps({"type": AUDIO_DONE, "transcript": "ok", "item_id": {"x": 1}}),
        0,
        ["ok"],
    ),
    (
        "conversation.item.input_audio_transcription.completed",
        json.dumps({"type": USER_DONE, "transcript": "no item id"}),
        0,
        ["no item id"],
    ),
    (
        "conversation.item.input_audio_transcription.completed",
        json.dumps({"type": USER_DONE, "item_id": ["u"], "transcript": "odd id"}),
        0,
        ["odd id"],
    ),
    ("input_audio_buffer.committed", json.dumps({"type": COMMITTED}), 1, []),
    (
        "input_audio_buffer.committed",
        json.dumps({"type": COMMITTED, "item_id": "x" * 10_000}),
        1,
        [],
    ),
    ("response.done", json.dumps({"type": "response.done"}), 1, []),
    ("response.done", json.dumps({"type": "response.done", "response": []}), 1, []),
    (
        "response.output_text.done",
        json.dumps({"type": "response.output_text.done", "text": "typed reply"}),
        0,
        ["typed reply"],
    ),
    (
        "response.output_audio_transcript.done",
        '{"type": "response.output_audio_transcript.done", "transcript": "half \\ud800 x"}',
        0,
        ["half \ufffd x"],
    ),
    (
        "response.output_audio_transcript.done",
        "x" * (MAX_RECORDED_EVENT_BYTES + 1),
        1,
        [],
    ),
    ("response.output_audio.delta", "not even json", 0, []),  # not a recorded type
    (AUDIO_DONE, json.dumps({"type": "response.output_audio.delta", "transcript": "x"}), 1, []),
]


@pytest.mark.parametrize(
    ("event_type", "raw", "ignored", "texts"),
    HOSTILE_EVENTS,
    ids=[
        "truncated-json",
        "invalid-utf8",
        "array",
        "string",
        "null",
        "deep-nesting",
        "no-transcript",
        "transcript-int",
        "transcript-list",
        "transcript-null",
        "transcript-blank",
        "transcript-empty",
        "item-id-object",
        "user-no-item-id",
        "user-item-id-list",
        "commit-no-item-id",
        "commit-huge-item-id",
        "response-missing",
        "response-list",
        "text-modality",
        "lone-surrogate",
        "oversized-frame",
        "unrecorded-type",
        "type-mismatch",
    ],
)
def test_hostile_events_never_raise(
    event_type: str, raw: str | bytes, ignored: int, texts: list[str]
) -> None:
    """Malformed upstream events are ignored and counted; the session never sees an exception."""
    recorder = NullRecorder()
    record = recorder.connection_started(session_id="s", connection_id="c", model="m")
    record.on_upstream_event(event_type, raw)
    assert recorder.stats().ignored_events == ignored
    assert [t.text for t in record.conversation.turns()] == texts


@pytest.mark.parametrize(
    "bad_usage",
    [
        {"total_tokens": "12", "input_tokens": None},
        {"total_tokens": True, "output_tokens": 1.5},
        {"total_tokens": -5, "input_tokens": 10**30},
        {"input_token_details": "cached", "output_token_details": [1, 2]},
        {"input_token_details": {"cached_tokens": {"nested": 1}}},
        "usage",
        None,
    ],
    ids=["strings", "bool-float", "negative-huge", "details-wrong-type", "nested", "str", "null"],
)
def test_hostile_usage_is_not_summed(bad_usage: Any) -> None:
    """Usage fields of the wrong type or absurd size are skipped; the valid ones still count."""
    recorder = NullRecorder()
    record = recorder.connection_started(session_id="s", connection_id="c", model="m")
    record.on_upstream_event("response.done", response_done(bad_usage))
    record.on_upstream_event("response.done", response_done({"total_tokens": 3}))
    assert record.usage == {"total_tokens": 3}
    assert recorder.stats().ignored_events == 0


async def test_huge_and_broken_transcripts_are_stored_bounded(
    recorder: SessionRecorder, dynamodb_endpoint: str, table_name: str
) -> None:
    """A 300,000-character transcript is stored cut to the bound; broken UTF-8 is repaired."""
    record = recorder.connection_started(session_id="bot-11", connection_id="c1", model="m")
    feed(record, transcript_done("a1", HUGE))
    record.on_upstream_event(
        AUDIO_DONE, '{"type": "response.output_audio_transcript.done", "transcript": "x\\udfff y"}'
    )
    assert await recorder.flush(TIMEOUT)

    texts = [
        text
        for _, text in turns_of(
            await asyncio.to_thread(read_partition, dynamodb_endpoint, table_name, "bot-11")
        )
    ]
    assert len(texts[0]) == MAX_TURN_CHARS
    assert texts[0].endswith(TRUNCATION_MARK)
    assert texts[1] == "x\ufffd y"
    assert recorder.stats().dropped == 0


# The pump's filter

AUDIO_DELTA = json.dumps(
    {
        "type": "response.output_audio.delta",
        "event_id": "event_1",
        "response_id": "resp_1",
        "item_id": "item_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "AAAA" * 320,
    },
    separators=(",", ":"),
).encode()


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (transcript_done("a", "hi").encode(), AUDIO_DONE),
        (response_done(usage(1, 1)).encode(), "response.done"),
        (committed("u").encode(), COMMITTED),
        (b'{"event_id":"event_Bx12","type":"response.done","response":{}}', "response.done"),
        (b'{ "type" : "response.output_text.done", "text": "x"}', "response.output_text.done"),
        (AUDIO_DELTA, None),
        (b'{"type":"response.output_audio_transcript.delta","delta":"hi"}', None),
        (b'{"type":"response.done.extra"}', None),
        (b'{"type":5,"x":"response.done"}', None),
        (b'{"type":"resp', None),
        (b'{"type"', None),
        (b'{"event_id":"' + b"e" * 200 + b'","type":"response.done"}', None),
        (b"", None),
        (b"\xff\xfe garbage", None),
        (b'{"x":"\\"type\\":\\"response.done\\""}', None),
    ],
    ids=[
        "transcript-done",
        "response-done",
        "committed",
        "event-id-first",
        "spaces",
        "audio-delta",
        "transcript-delta",
        "longer-name",
        "type-not-string",
        "cut-short",
        "key-only",
        "type-beyond-peek",
        "empty",
        "binary",
        "escaped-in-value",
    ],
)
def test_pump_filter_finds_recorded_types_only(payload: bytes, expected: str | None) -> None:
    """The upstream pump hands over only recorded events, reading a few bytes of each frame."""
    assert recorded_type(payload) == expected
    if expected is not None:
        assert expected in RECORDED_EVENT_TYPES


def test_a_false_match_of_the_filter_records_nothing() -> None:
    """Text that only looks like a recorded type (inside another value) is not recorded."""
    recorder = NullRecorder()
    record = recorder.connection_started(session_id="s", connection_id="c", model="m")
    payload = b'{"event_id":"e","x":{"type":"response.output_text.done","text":"no"},"type":"y"}'
    kind = recorded_type(payload)
    assert kind == "response.output_text.done"  # fooled: a nested key came first
    record.on_upstream_event(kind, payload)
    assert record.conversation.turns() == []
    assert recorder.stats().ignored_events == 1


# Without a table


async def test_without_a_table_nothing_is_written_but_the_conversation_is_kept() -> None:
    """TABLE_NAME unset: the same calls work, write nothing, and still keep turns for rollover."""
    rec = open_recorder(None, region="us-east-1")
    assert isinstance(rec, NullRecorder)
    rec.start()
    record = rec.connection_started(session_id="s", connection_id="c", model="m")
    feed(
        record,
        committed("u1"),
        transcription_completed("u1", "hi"),
        transcript_done("a1", "hello"),
        response_done(usage(3, 4)),
    )
    record.connection_ended(close_code=1000)
    assert await rec.flush(0.1)
    assert await rec.load_turns("s") == []
    await rec.aclose()
    assert [(t.role, t.text) for t in record.conversation.turns()] == [
        ("user", "hi"),
        ("assistant", "hello"),
    ]
    assert record.usage["total_tokens"] == 7
    assert rec.stats() == RecorderStats()


def test_open_recorder_with_a_table_is_a_session_recorder() -> None:
    """TABLE_NAME set: the relay gets the DynamoDB writer; both kinds fit the session's seam."""
    assert isinstance(open_recorder("table", region="us-east-1"), SessionRecorder)
    seams: list[Recorder] = [SessionRecorder("t"), NullRecorder()]  # checked by mypy
    assert len(seams) == 2
