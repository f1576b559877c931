"""Relay tools through a real relay: a GA fake model calls functions, the relay runs its own.

Everything over sockets: the client and the relay, the relay and a scripted GA upstream,
the relay and moto's DynamoDB. The model's function-call sequence is GA's
(``response.output_item.added`` → ``response.function_call_arguments.done`` →
``response.done`` with the ``function_call`` item).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import boto3
import pytest
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from relay.agent import AgentConfig
from relay.record_table import RetryPolicy
from relay.record_writer import SessionRecorder
from relay.server import Relay
from storage import schema
from tests.relay.conftest import (
    FakeUpstream,
    StartRelay,
    eventually,
    mint,
    open_client,
    recv_until,
)

#: What the fake model calls next, per connection: (name, call_id, arguments JSON).
CALL = ("take_note", "call_1", json.dumps({"text": "ship on Friday"}))


def function_call_events(
    name: str, call_id: str, arguments: str, status: str
) -> list[dict[str, Any]]:
    item = {
        "type": "function_call",
        "id": f"item_{call_id}",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }
    response_id = f"resp_{call_id}"
    return [
        {"type": "response.created", "response": {"id": response_id, "status": "in_progress"}},
        {"type": "response.output_item.added", "response_id": response_id, "item": item},
        {
            "type": "response.function_call_arguments.done",
            "response_id": response_id,
            "item_id": item["id"],
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
        },
        {
            "type": "response.done",
            "response": {"id": response_id, "status": status, "output": [item]},
        },
    ]


def calling_model(name: str, call_id: str, arguments: str, status: str = "completed") -> Any:
    """A GA model that answers each client response.create with one function call."""

    async def script(ws: ServerConnection, upstream: FakeUpstream) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(json.dumps({"type": "session.created", "session": {}}))
            async for message in ws:
                assert isinstance(message, str)
                upstream.received.append(message)
                event = json.loads(message)
                kind = event.get("type")
                if kind == "session.update":
                    await ws.send(json.dumps({"type": "session.updated", "session": {}}))
                elif kind == "conversation.item.create":
                    for ack in ("conversation.item.added", "conversation.item.done"):
                        await ws.send(json.dumps({"type": ack, "item": event.get("item", {})}))
                elif kind == "response.create" and not event.get("response"):
                    # The client's or the relay's plain response.create (not the greeting).
                    for out in function_call_events(name, call_id, arguments, status):
                        await ws.send(json.dumps(out))

    return script


def sent_to_model(upstream: FakeUpstream) -> list[dict[str, Any]]:
    return [json.loads(m) for m in upstream.received]


def outputs(upstream: FakeUpstream) -> list[dict[str, Any]]:
    return [
        e["item"]
        for e in sent_to_model(upstream)
        if e["type"] == "conversation.item.create"
        and e.get("item", {}).get("type") == "function_call_output"
    ]


AGENT = AgentConfig.model_validate(
    {
        "instructions": "You take notes.",
        "tools": [
            {"builtin": "take_note"},
            {"builtin": "list_notes"},
            {"builtin": "end_turn_silently"},
            {
                "type": "function",
                "name": "lookup_weather",
                "description": "the client's own function",
                "parameters": {"type": "object", "properties": {}},
            },
        ],
        "greeting": "Hello, I take notes.",
    }
)


@pytest.fixture
def dynamodb_env(dynamodb_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The relay's own DynamoDB clients (notes, bindings) reach moto through the environment."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint)
    return dynamodb_endpoint


async def start(
    start_relay: StartRelay, upstream: FakeUpstream, table: str, endpoint: str
) -> Relay:
    """A relay running AGENT (relay tools, a greeting) with its records in ``table``."""
    recorder = SessionRecorder(
        table,
        region="us-east-1",
        endpoint_url=endpoint,
        retry=RetryPolicy(max_attempts=2, base_delay=0.05, max_delay=0.1),
    )
    return await start_relay(upstream.url, recorder, AGENT, table_name=table)


def bind(
    endpoint: str, table: str, session_id: str, bot_id: str, overlay: dict[str, Any] | None
) -> None:
    """What ``voicebot bot create`` records for the relay (``SessionAgent``)."""
    item: dict[str, Any] = {
        schema.PARTITION_KEY: schema.session_pk(session_id),
        schema.SORT_KEY: schema.SESSION_AGENT_SK,
        "session_id": session_id,
        "bot_id": bot_id,
        "created_at": "2026-12-03T12:00:00.000000Z",
    }
    if overlay:
        item["overlay"] = overlay
    boto3.resource("dynamodb", endpoint_url=endpoint).Table(table).put_item(Item=item)


def notes_of(endpoint: str, table: str, bot_id: str) -> list[dict[str, Any]]:
    table_ = boto3.resource("dynamodb", endpoint_url=endpoint).Table(table)
    answer = table_.query(
        KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
        ExpressionAttributeValues={":pk": schema.bot_pk(bot_id), ":p": schema.NOTE_PREFIX},
    )
    return list(answer["Items"])


async def test_the_relay_runs_its_tool_and_the_model_speaks_the_result(
    start_relay: StartRelay, fake_upstream: FakeUpstream, table_name: str, dynamodb_env: str
) -> None:
    """take_note runs in the relay: the note is stored under the bot, the output and a
    response.create go to the model; the bot's persona and greeting reach it first."""
    fake_upstream.script = calling_model(*CALL)
    bind(dynamodb_env, table_name, "sess-notes", "bot-notes", {"instructions": "Be brief."})
    relay = await start(start_relay, fake_upstream, table_name, dynamodb_env)
    async with open_client(relay, mint("sess-notes")) as ws:
        await recv_until(ws, "session.updated")
        await ws.send(json.dumps({"type": "response.create"}))
        await eventually(lambda: len(outputs(fake_upstream)) == 1)
        await eventually(lambda: sent_to_model(fake_upstream)[-1]["type"] == "response.create")
    sent = sent_to_model(fake_upstream)
    assert sent[0]["session"]["instructions"] == "Be brief."  # the bot's persona
    declared = {tool["name"] for tool in sent[0]["session"]["tools"]}
    assert {"take_note", "list_notes", "end_turn_silently", "lookup_weather"} <= declared
    greeting = sent[1]
    assert greeting["type"] == "response.create"
    assert "Hello, I take notes." in greeting["response"]["instructions"]
    [output] = outputs(fake_upstream)
    assert output["call_id"] == "call_1"
    assert json.loads(output["output"])["ok"] is True
    await eventually(lambda: len(notes_of(dynamodb_env, table_name, "bot-notes")) == 1)
    assert notes_of(dynamodb_env, table_name, "bot-notes")[0]["text"] == "ship on Friday"


async def test_a_cancelled_call_never_runs(
    start_relay: StartRelay, fake_upstream: FakeUpstream, table_name: str, dynamodb_env: str
) -> None:
    """arguments.done also fires for a response the participants interrupted: nothing runs."""
    fake_upstream.script = calling_model(*CALL, status="cancelled")
    bind(dynamodb_env, table_name, "sess-cancel", "bot-cancel", None)
    relay = await start(start_relay, fake_upstream, table_name, dynamodb_env)
    async with open_client(relay, mint("sess-cancel")) as ws:
        await recv_until(ws, "session.updated")
        await ws.send(json.dumps({"type": "response.create"}))
        assert (await recv_until(ws, "response.done"))[-1]["response"]["status"] == "cancelled"
        await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))  # a later event
        await eventually(lambda: sent_to_model(fake_upstream)[-1]["type"] != "response.create")
    assert outputs(fake_upstream) == []
    assert notes_of(dynamodb_env, table_name, "bot-cancel") == []


async def test_a_client_function_passes_through_untouched(
    start_relay: StartRelay, fake_upstream: FakeUpstream, table_name: str, dynamodb_env: str
) -> None:
    """lookup_weather is the client's: it sees the call and answers it; the relay runs nothing."""
    fake_upstream.script = calling_model("lookup_weather", "call_w", "{}")
    relay = await start(start_relay, fake_upstream, table_name, dynamodb_env)
    async with open_client(relay, mint("sess-client-fn")) as ws:
        await recv_until(ws, "session.updated")
        await ws.send(json.dumps({"type": "response.create"}))
        done = (await recv_until(ws, "response.done"))[-1]
        assert done["response"]["output"][0]["name"] == "lookup_weather"
        answer = {"type": "function_call_output", "call_id": "call_w", "output": '{"t": 21}'}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": answer}))
        await eventually(lambda: len(outputs(fake_upstream)) == 1)
    assert outputs(fake_upstream) == [answer]  # the client's own, byte for byte in content


@pytest.mark.parametrize(
    "event",
    [
        {
            "type": "conversation.item.create",
            "item": {
                "type": "function_call",
                "call_id": "x",
                "name": "take_note",
                "arguments": "{}",
            },
        },
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "tool_choice": {"type": "function", "name": "take_note"},
            },
        },
        {
            "type": "response.create",
            "response": {"tools": [{"type": "function", "name": "take_note", "parameters": {}}]},
        },
    ],
    ids=["invoke", "force", "redefine"],
)
async def test_a_client_cannot_invoke_force_or_redefine_a_relay_tool(
    start_relay: StartRelay,
    fake_upstream: FakeUpstream,
    table_name: str,
    dynamodb_env: str,
    event: dict[str, Any],
) -> None:
    """Refused with an error event; the model never sees it; the session goes on."""
    relay = await start(start_relay, fake_upstream, table_name, dynamodb_env)
    async with open_client(relay, mint("sess-forger")) as ws:
        await recv_until(ws, "session.updated")
        before = len(fake_upstream.received)
        await ws.send(json.dumps(event))
        error = (await recv_until(ws, "error"))[-1]  # after the greeting's audio, if any
        assert error["error"]["code"] == "relay_tool_refused"
        await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        await eventually(lambda: len(fake_upstream.received) > before)
    assert all("take_note" not in m for m in fake_upstream.received[before:])


async def test_a_resumed_session_knows_its_tool_calls_and_never_runs_one_twice(
    start_relay: StartRelay, fake_upstream: FakeUpstream, table_name: str, dynamodb_env: str
) -> None:
    """Relay A runs call_1; on relay B the model is seeded with the call and its output, no
    greeting is spoken again, and the same call_id from the model does not run again."""
    fake_upstream.script = calling_model(*CALL)
    bind(dynamodb_env, table_name, "sess-resume", "bot-resume", None)
    relay_a = await start(start_relay, fake_upstream, table_name, dynamodb_env)
    relay_b = await start(start_relay, fake_upstream, table_name, dynamodb_env)
    token = mint("sess-resume")
    async with open_client(relay_a, token) as ws:
        await recv_until(ws, "session.updated")
        await ws.send(json.dumps({"type": "response.create"}))
        await eventually(lambda: len(outputs(fake_upstream)) == 1)
        await relay_a.recorder.flush(5.0)
    first_connection = len(fake_upstream.received)
    async with open_client(relay_b, token) as ws:
        await recv_until(ws, "session.created")
        await eventually(
            lambda: any(
                json.loads(m).get("item", {}).get("type") == "function_call_output"
                for m in fake_upstream.received[first_connection:]
            )
        )
        await ws.send(json.dumps({"type": "response.create"}))  # the model calls call_1 again
        await recv_until(ws, "response.done")
        await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        await eventually(
            lambda: json.loads(fake_upstream.received[-1])["type"] == "input_audio_buffer.clear"
        )
    second = [json.loads(m) for m in fake_upstream.received[first_connection:]]
    seeded = [e["item"] for e in second if e["type"] == "conversation.item.create"]
    assert [i["type"] for i in seeded] == ["function_call", "function_call_output"]
    assert seeded[0]["call_id"] == "call_1"
    assert len(notes_of(dynamodb_env, table_name, "bot-resume")) == 1  # not run twice
    assert [i for i in seeded if i["type"] == "function_call_output"] == [seeded[1]]
    greetings = [e for e in second if e["type"] == "response.create" and e.get("response")]
    assert greetings == []  # the conversation had begun: no second greeting


def remember(
    endpoint: str, table: str, memory_key: str, bot_id: str, summary: str, day: int
) -> None:
    """What the minutes job files under a memory key after a meeting (``MemoryEntry``)."""
    from datetime import UTC, datetime

    from storage import minutes

    record = {
        "summary": summary,
        "decisions": ["ship on Friday"],
        "action_items": [{"task": "write the release notes", "owner": "Dana"}],
        "open_questions": [],
    }
    entry = minutes.memory_entry(
        memory_key=memory_key,
        bot_id=bot_id,
        built_at=datetime(2026, 11, day, 10, 0, tzinfo=UTC),
        minutes_json=json.dumps(record),
    )
    item: dict[str, Any] = dict(entry)
    boto3.resource("dynamodb", endpoint_url=endpoint).Table(table).put_item(Item=item)


async def test_a_bot_with_a_memory_key_starts_with_earlier_minutes_and_can_look_back(
    start_relay: StartRelay, fake_upstream: FakeUpstream, table_name: str, dynamodb_env: str
) -> None:
    """`bot create --memory KEY`: the session's instructions carry the newest minutes under
    KEY (bounded), and the model's recall_meetings call is answered by the relay."""
    from storage import minutes

    query = json.dumps({"query": "pricing", "limit": 3})
    fake_upstream.script = calling_model("recall_meetings", "call_m", query)
    for day, summary in ((1, "Kick-off: the pricing page."), (2, "Review of the roadmap.")):
        remember(dynamodb_env, table_name, "team-blue", f"bot-{day}", summary, day)
    pointer: dict[str, Any] = dict(minutes.session_bot_item("sess-memory", "bot-3", "team-blue"))
    boto3.resource("dynamodb", endpoint_url=dynamodb_env).Table(table_name).put_item(Item=pointer)
    relay = await start(start_relay, fake_upstream, table_name, dynamodb_env)
    async with open_client(relay, mint("sess-memory")) as ws:
        await recv_until(ws, "session.updated")
        await ws.send(json.dumps({"type": "response.create"}))
        await eventually(lambda: len(outputs(fake_upstream)) == 1)
    session = sent_to_model(fake_upstream)[0]["session"]
    assert "Review of the roadmap." in session["instructions"]  # newest first
    assert "Kick-off: the pricing page." in session["instructions"]
    assert len(session["instructions"]) <= len(AGENT.instructions) + 2 + 6000  # bounded
    assert "recall_meetings" in {tool["name"] for tool in session["tools"]}
    [output] = outputs(fake_upstream)
    found = json.loads(output["output"])
    assert [m["summary"] for m in found["meetings"]] == ["Kick-off: the pricing page."]
