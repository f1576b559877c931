"""relay.conversation: turns loaded back from the table, replayed as GA seeds, turn taking."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
from array import array
from collections.abc import AsyncIterator
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer
from openai.types.realtime import (
    ConversationItemCreateEvent,
    RealtimeConversationItemAssistantMessage,
    RealtimeConversationItemUserMessage,
)
from websockets.asyncio.client import ClientConnection, connect

from relay.conversation import (
    MAX_TURN_CHARS,
    Turn,
    TurnTaking,
    TurnWindow,
    keep_newest,
    make_turn,
    seed_events,
    turn_from_item,
)
from relay.events import (
    INPUT_COMMITTED,
    RESPONSE_CREATED,
    RESPONSE_DONE,
    SPEECH_STARTED,
    SPEECH_STOPPED,
    TRANSCRIPTION_COMPLETED,
    TRANSCRIPTION_FAILED,
    recorded_type,
)
from relay.history import load_turns
from relay.record_table import dynamodb_client
from relay.record_writer import SessionRecorder
from relay.simulator import SimulatorOptions, listening_url, serve_simulator
from storage import schema
from tests.conftest import TIMEOUT, free_port

BEARER = {"Authorization": "Bearer sk-test"}


def dialogue(n: int) -> list[Turn]:
    """``n`` alternating turns, oldest first."""
    return [
        Turn(role="user" if i % 2 == 0 else "assistant", text=f"turn {i}: " + "word " * (i % 7))
        for i in range(n)
    ]


def put_items(endpoint: str, table: str, items: list[dict[str, Any]]) -> None:
    """Write raw items the way another relay task (or a corrupt writer) might have."""
    client = dynamodb_client(region="us-east-1", endpoint_url=endpoint)
    serializer = TypeSerializer()
    for start in range(0, len(items), 25):
        client.batch_write_item(
            RequestItems={
                table: [
                    {"PutRequest": {"Item": {k: serializer.serialize(v) for k, v in i.items()}}}
                    for i in items[start : start + 25]
                ]
            }
        )


def turn_item(session_id: str, at_ms: int, seq: int, **attributes: Any) -> dict[str, Any]:
    return {
        "pk": schema.session_pk(session_id),
        "sk": schema.turn_sk(at_ms, seq),
        "session_id": session_id,
        **attributes,
    }


@pytest.fixture
async def client(dynamodb_endpoint: str) -> Any:
    """A reader on the shared moto server, as the relay builds one."""
    return await asyncio.to_thread(
        dynamodb_client, region="us-east-1", endpoint_url=dynamodb_endpoint
    )


# Loading


async def test_load_turns_returns_the_session_in_order(
    client: Any, dynamodb_endpoint: str, table_name: str
) -> None:
    """A resumed session gets exactly its own turns, in spoken order, malformed ones skipped."""
    base = 1_780_000_000_000
    items = [
        turn_item("bot-1", base + 30, 0, role="assistant", text="third", at="t3"),
        turn_item("bot-1", base + 10, 5, role="user", text="first", at="t1", item_id="item_1"),
        turn_item("bot-1", base + 20, 1, role="user", text="second", at="t2"),
        turn_item("bot-1", base + 20, 2, role="system", text="not a turn"),
        turn_item("bot-1", base + 21, 0, role="user", text=42),
        turn_item("bot-1", base + 22, 0, role="user"),
        turn_item("bot-1", base + 23, 0, role=["user"], text="bad role"),
        turn_item("bot-1", base + 24, 0, role="assistant", text="   "),
        turn_item("bot-2", base + 15, 0, role="user", text="another session"),
        {
            "pk": schema.session_pk("bot-1"),
            "sk": schema.connection_sk("2026-11-29T20:00:00.000Z", "c1"),
            "session_id": "bot-1",
            "connection_id": "c1",
            "started_at": "2026-11-29T20:00:00.000Z",
        },
    ]
    await asyncio.to_thread(put_items, dynamodb_endpoint, table_name, items)

    turns = await load_turns("bot-1", client=client, table_name=table_name, timeout=TIMEOUT)

    assert turns == [
        Turn(role="user", text="first", at="t1", item_id="item_1"),
        Turn(role="user", text="second", at="t2"),
        Turn(role="assistant", text="third", at="t3"),
    ]
    assert await load_turns("nobody", client=client, table_name=table_name, timeout=TIMEOUT) == []


async def test_load_turns_keeps_the_newest_within_count_and_bytes(
    client: Any, dynamodb_endpoint: str, table_name: str
) -> None:
    """A long meeting resumes with its most recent turns, bounded, across query pages."""
    items = [
        turn_item("bot-3", 1_780_000_000_000 + i, 0, role="user", text=f"line {i:03d}")
        for i in range(150)
    ]
    await asyncio.to_thread(put_items, dynamodb_endpoint, table_name, items)

    everything = await load_turns(
        "bot-3", client=client, table_name=table_name, timeout=TIMEOUT, max_turns=150
    )
    assert [t.text for t in everything] == [f"line {i:03d}" for i in range(150)]
    newest = await load_turns(
        "bot-3", client=client, table_name=table_name, timeout=TIMEOUT, max_turns=5
    )
    assert [t.text for t in newest] == [f"line {i:03d}" for i in range(145, 150)]
    by_bytes = await load_turns(
        "bot-3", client=client, table_name=table_name, timeout=TIMEOUT, max_bytes=35
    )
    assert [t.text for t in by_bytes] == ["line 146", "line 147", "line 148", "line 149"]


async def test_unreachable_storage_resumes_without_history(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Storage down at resume time: the client still gets a session, with a warning logged."""
    caplog.set_level(logging.WARNING, logger="relay.conversation")
    dead = await asyncio.to_thread(
        dynamodb_client,
        region="us-east-1",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        connect_timeout=0.5,
        read_timeout=0.5,
    )
    assert await load_turns("bot-4", client=dead, table_name="t", timeout=TIMEOUT) == []
    assert [r.getMessage() for r in caplog.records] == [
        "conversation load failed; resuming without history"
    ]


async def test_recorder_load_flushes_its_own_queue_first(
    dynamodb_endpoint: str, table_name: str
) -> None:
    """Turns this task has only just queued are part of what a resume reads."""
    async with SessionRecorder(
        table_name, region="us-east-1", endpoint_url=dynamodb_endpoint
    ) as recorder:
        record = recorder.connection_started(session_id="bot-5", connection_id="c", model="m")
        for i in range(30):
            record.on_upstream_event(
                "response.output_text.done",
                json.dumps({"type": "response.output_text.done", "text": f"reply {i}"}),
            )
        turns = await recorder.load_turns("bot-5", timeout=TIMEOUT)
    assert [t.text for t in turns] == [f"reply {i}" for i in range(30)]


# Seeding


def test_seed_events_are_ga_conversation_item_creates() -> None:
    """Each turn becomes a GA conversation.item.create message the official SDK accepts."""
    turns = [
        Turn(role="user", text="What's the budget?"),
        Turn(role="assistant", text="About 40k."),
        Turn(role="user", text='Héllo «quotes» "and" \\ back\nslashes 日本'),
    ]
    events = seed_events(turns)

    parsed = [ConversationItemCreateEvent.model_validate(json.loads(e)) for e in events]
    assert [p.type for p in parsed] == ["conversation.item.create"] * 3
    assert len({p.event_id for p in parsed}) == 3
    first, second, third = (p.item for p in parsed)
    assert isinstance(first, RealtimeConversationItemUserMessage)
    assert isinstance(second, RealtimeConversationItemAssistantMessage)
    assert isinstance(third, RealtimeConversationItemUserMessage)
    assert [(c.type, c.text) for c in first.content] == [("input_text", "What's the budget?")]
    assert [(c.type, c.text) for c in second.content] == [("output_text", "About 40k.")]
    assert third.content[0].text == turns[2].text
    assert all(json.loads(e)["item"]["type"] == "message" for e in events)
    assert all(p.previous_item_id is None for p in parsed)  # appended in order


def test_seed_events_keep_the_newest_turns_within_the_byte_bound() -> None:
    """A long history is cut from the oldest end so the seeds fit the bound, order kept."""
    turns = dialogue(300)
    events = seed_events(turns, max_bytes=8_000)

    sizes = [len(e.encode("utf-8")) for e in events]
    assert sum(sizes) <= 8_000
    assert sum(sizes) > 8_000 - max(sizes) - 200  # and it is not needlessly short
    texts = [json.loads(e)["item"]["content"][0]["text"] for e in events]
    assert texts == [t.text.strip() for t in turns[-len(events) :]]
    assert [json.loads(e)["event_id"] for e in events][-1] == "relay_seed_299"


def test_seed_events_respect_the_count_bound() -> None:
    """No more events than asked for, the newest ones."""
    events = seed_events(dialogue(50), max_events=7)
    assert [json.loads(e)["event_id"] for e in events] == [f"relay_seed_{i}" for i in range(43, 50)]


def test_a_turn_larger_than_the_bound_is_not_seeded() -> None:
    """A bound smaller than the newest turn yields no seeds rather than a broken one."""
    assert seed_events([Turn(role="user", text="x" * 500)], max_bytes=100) == []
    assert seed_events([]) == []


def test_seeds_are_valid_utf8_even_from_broken_text() -> None:
    """Text carrying lone surrogates still makes events a WebSocket can send."""
    turn = Turn(role="assistant", text="bad \udc80 half")
    [event] = seed_events([turn])
    event.encode("utf-8")  # would raise on a lone surrogate
    assert json.loads(event)["item"]["content"][0]["text"] == "bad \ufffd half"


# Turns and the window


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"role": "user", "text": "hi", "at": "t"}, Turn(role="user", text="hi", at="t")),
        ({"role": "assistant", "text": " hi \n"}, Turn(role="assistant", text="hi")),
        ({"role": "system", "text": "hi"}, None),
        ({"role": "tool", "text": "hi"}, None),
        ({"role": {"x": 1}, "text": "hi"}, None),
        ({"role": None, "text": "hi"}, None),
        ({"text": "hi"}, None),
        ({"role": "user"}, None),
        ({"role": "user", "text": 5}, None),
        ({"role": "user", "text": b"hi"}, None),
        ({"role": "user", "text": ""}, None),
        ({"role": "user", "text": "hi", "at": 123, "item_id": ["x"]}, Turn(role="user", text="hi")),
        (
            {"role": "user", "text": "y" * (MAX_TURN_CHARS * 3)},
            Turn(role="user", text="y" * (MAX_TURN_CHARS - 1) + "…"),
        ),
    ],
    ids=[
        "user",
        "assistant-padded",
        "system",
        "tool",
        "role-object",
        "role-null",
        "role-missing",
        "text-missing",
        "text-number",
        "text-bytes",
        "text-empty",
        "bad-at-and-item-id",
        "text-huge",
    ],
)
def test_stored_items_become_turns_or_nothing(item: dict[str, Any], expected: Turn | None) -> None:
    """Whatever a stored item holds, it yields a clean bounded turn or is skipped."""
    assert turn_from_item(item) == expected


def test_window_keeps_the_newest_turns_within_count_and_bytes() -> None:
    """The in-memory conversation a rollover replays never outgrows its bounds."""
    window = TurnWindow(max_turns=4, max_bytes=30)
    for turn in dialogue(10):
        window.append(turn)
        assert len(window) <= 4
        assert sum(t.size for t in window.turns()) <= 30
    assert window.turns()[-1] == dialogue(10)[-1]
    assert keep_newest(dialogue(10), max_turns=3) == dialogue(10)[-3:]
    assert keep_newest(dialogue(10), max_turns=0) == []


def test_make_turn_needs_words() -> None:
    """Silence transcribed as blanks is not a turn."""
    assert make_turn("user", " \n\t ") is None
    assert make_turn("assistant", "ok") == Turn(role="assistant", text="ok")


# Turn taking

TURN = [SPEECH_STARTED, SPEECH_STOPPED, INPUT_COMMITTED]


@pytest.mark.parametrize(
    ("events", "between"),
    [
        ([], True),
        ([SPEECH_STARTED], False),
        (TURN, False),
        ([*TURN, TRANSCRIPTION_COMPLETED], True),
        ([*TURN, RESPONSE_CREATED, TRANSCRIPTION_COMPLETED], False),
        ([*TURN, RESPONSE_CREATED, TRANSCRIPTION_COMPLETED, RESPONSE_DONE], True),
        ([*TURN, RESPONSE_CREATED, RESPONSE_DONE, TRANSCRIPTION_COMPLETED], True),
        ([*TURN, TRANSCRIPTION_FAILED], True),
        ([RESPONSE_CREATED, SPEECH_STARTED, RESPONSE_DONE], False),
        ([RESPONSE_DONE, RESPONSE_DONE], True),
        ([RESPONSE_DONE, RESPONSE_CREATED], False),
        ([RESPONSE_CREATED] * 1000 + [RESPONSE_DONE] * 64, True),
        (["response.output_audio.delta", "error", "session.updated"], True),
    ],
    ids=[
        "fresh",
        "user-speaking",
        "transcript-pending",
        "transcribed",
        "answering",
        "answered",
        "transcript-after-answer",
        "transcription-failed",
        "barge-in",
        "unmatched-done",
        "done-then-created",
        "runaway-created-is-bounded",
        "other-events",
    ],
)
def test_turn_taking_tells_when_a_rollover_may_switch(events: list[str], between: bool) -> None:
    """A rollover waits until nobody speaks, nothing is answered and no transcript is due."""
    state = TurnTaking()
    for event_type in events:
        state.observe(event_type)
    assert state.between_turns is between


def test_turn_taking_without_transcription_does_not_wait_for_transcripts() -> None:
    """With input transcription off, a committed turn is not waited on."""
    state = TurnTaking(expect_transcripts=False)
    for event_type in TURN:
        state.observe(event_type)
    assert state.between_turns


# Resume, end to end with the simulated model


def tone(ms: int) -> bytes:
    return array(
        "h", (int(8000 * math.sin(2 * math.pi * 220 * i / 24000)) for i in range(24 * ms))
    ).tobytes()


async def send_audio(ws: ClientConnection, pcm: bytes) -> None:
    step = 20 * 48
    for i in range(0, len(pcm), step):
        chunk = base64.b64encode(pcm[i : i + step]).decode()
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))


@pytest.fixture
async def sim_url() -> AsyncIterator[str]:
    """The simulated GA model on a loopback port, replying fast."""
    server = await serve_simulator("127.0.0.1", 0, SimulatorOptions(pace=0.0, reply_ms=400))
    try:
        yield listening_url(server)
    finally:
        server.close()
        await server.wait_closed()


GA_SESSION = {
    "type": "realtime",
    "audio": {
        "input": {
            "transcription": {"model": "gpt-4o-mini-transcribe"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 200},
        }
    },
}


async def test_a_recorded_conversation_seeds_a_fresh_upstream_session(
    sim_url: str, dynamodb_endpoint: str, table_name: str
) -> None:
    """What one upstream session said is recorded, and a new session is seeded with all of it."""
    async with SessionRecorder(
        table_name, region="us-east-1", endpoint_url=dynamodb_endpoint
    ) as recorder:
        record = recorder.connection_started(session_id="bot-9", connection_id="c1", model="m")
        busy_seen = False

        def pump(raw: str | bytes) -> None:
            """What the session's upstream pump does with each text frame."""
            nonlocal busy_seen
            payload = raw.encode() if isinstance(raw, str) else raw
            if (event_type := recorded_type(payload)) is not None:
                record.on_upstream_event(event_type, payload)
            busy_seen = busy_seen or not record.turn_taking.between_turns

        async with connect(sim_url, additional_headers=BEARER) as ws:
            await ws.send(json.dumps({"type": "session.update", "session": GA_SESSION}))
            for _ in range(2):  # two spoken turns, each answered
                await send_audio(ws, tone(400) + bytes(48 * 400))
                async with asyncio.timeout(TIMEOUT):
                    while True:
                        raw = await ws.recv()
                        pump(raw)
                        if json.loads(raw)["type"] == "response.done":
                            break
            # The user's transcript may trail the answer: wait for the second one.
            async with asyncio.timeout(TIMEOUT):
                while sum(t.role == "user" for t in record.conversation.turns()) < 2:
                    pump(await ws.recv())
        record.connection_ended(close_code=1000)
        assert busy_seen
        assert record.turn_taking.between_turns
        spoken = [(t.role, t.text) for t in record.conversation.turns()]
        assert [role for role, _ in spoken] == ["user", "assistant", "user", "assistant"]

        history = await recorder.load_turns("bot-9", timeout=TIMEOUT)
        assert [(t.role, t.text) for t in history] == spoken

    async with connect(sim_url, additional_headers=BEARER) as ws:
        await ws.send(json.dumps({"type": "session.update", "session": GA_SESSION}))
        for event in seed_events(history):
            await ws.send(event)
        added: list[dict[str, Any]] = []
        async with asyncio.timeout(TIMEOUT):
            while len(added) < len(history):
                event = json.loads(await ws.recv())
                assert event["type"] != "error", event
                if event["type"] == "conversation.item.added":
                    added.append(event["item"])
    assert [(i["role"], i["content"][0]["text"]) for i in added] == spoken
