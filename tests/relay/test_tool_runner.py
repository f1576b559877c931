"""The tool path over real sockets: the simulated GA model calls a relay tool, the runner
executes it against moto's DynamoDB, sends the output and response.create, and the model
answers; a client-owned function and a client's attempt to answer a relay call."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from relay.agent import AgentConfig
from relay.tool_calls import UPSTREAM_EVENT_TYPES, ToolCall, ToolCallTracker
from relay.tool_runner import ToolRunner
from relay.tools.builtins import ToolContext
from relay.tools.notes import NoteStore
from relay.tools.registry import ToolRegistry, ToolResult, build_registry
from tests.conftest import TIMEOUT
from tests.relay.tool_endpoint import SECRET, ToolEndpoint

BOT_ID = "6f7d2a8e-1c1b-4c1e-9a8f-0d9d4c1b2a3e"
KEY = {"Authorization": "Bearer sk-simulated"}
CLIENT_FN = {"type": "function", "name": "lookup_crm", "parameters": {"type": "object"}}


@pytest.fixture
async def registry(table_name: str, dynamodb_endpoint: str) -> AsyncIterator[ToolRegistry]:
    tools = AgentConfig.model_validate(
        {"tools": [{"builtin": "take_note"}, {"builtin": "end_turn_silently"}]}
    ).tools
    reg = build_registry(tools, table_name=table_name, dynamodb_endpoint=dynamodb_endpoint)
    try:
        yield reg
    finally:
        await reg.aclose()


class Session:
    """What the relay's upstream leg does for tools, driven against the simulator."""

    def __init__(self, ws: ClientConnection, registry: ToolRegistry, **kw: Any) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.results: list[tuple[ToolCall, ToolResult]] = []
        self.log: list[str] = []
        self.tracker = ToolCallTracker(registry.names, registry.declarations(), **kw)
        self.runner = ToolRunner(
            registry,
            self.tracker,
            ToolContext(session_id="sess-1", bot_id=BOT_ID),
            send_upstream=lambda frame: ws.send(frame, text=True),
            on_start=lambda call: self.log.append(f"start {call.call_id}"),
            on_result=self.finished,
        )

    def finished(self, call: ToolCall, result: ToolResult) -> None:
        self.log.append(f"done {call.call_id}")
        self.results.append((call, result))

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def say(self, text: str) -> None:
        """A participant's text turn, then ask for an answer."""
        await self.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": text}],
                },
            }
        )
        await self.send({"type": "response.create"})

    async def until(self, count: int) -> list[dict[str, Any]]:
        """Pump upstream events until ``count`` response.done have arrived."""
        async with asyncio.timeout(TIMEOUT):
            while sum(e["type"] == "response.done" for e in self.events) < count:
                raw = await self.ws.recv()
                event = json.loads(raw)
                self.events.append(event)
                if event["type"] in UPSTREAM_EVENT_TYPES:
                    self.runner.on_upstream(event["type"], raw)
        return [e for e in self.events if e["type"] == "response.done"]


@pytest.fixture
async def session(simulator_url: str, registry: ToolRegistry) -> AsyncIterator[Session]:
    async with connect(f"{simulator_url}?model=gpt-realtime-2.1", additional_headers=KEY) as ws:
        s = Session(ws, registry)
        await s.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "tools": [*registry.declarations(), CLIENT_FN]},
            }
        )
        try:
            yield s
        finally:
            await s.runner.aclose()


async def test_model_takes_a_note_and_speaks_the_result(session, table_name, dynamodb_endpoint):
    """The model's take_note call is run once, its output sent, and the model answers again."""
    await session.say("Please take a note: ship on Friday")
    done = await session.until(2)
    first_output = [o["type"] for o in done[0]["response"]["output"]]
    assert first_output == ["message", "function_call"]
    assert done[1]["response"]["status"] == "completed"
    [(call, result)] = session.results
    assert call.name == "take_note"
    assert result.ok
    notes = await NoteStore(table_name, endpoint_url=dynamodb_endpoint).recent(BOT_ID)
    assert [n["text"] for n in notes] == ["ship on Friday"]
    assert len(session.runner.latencies_ms) == 1
    # Recorded as started before it ran, so a task that dies mid-call never reruns it.
    assert session.log == [f"start {call.call_id}", f"done {call.call_id}"]


async def test_client_function_is_not_run_by_the_relay(session):
    """A call of the client's own function passes through: the relay runs nothing."""
    await session.say('Please call lookup_crm with {"email": "a@b.c"}')
    [done] = await session.until(1)
    assert [o["name"] for o in done["response"]["output"] if o["type"] == "function_call"] == [
        "lookup_crm"
    ]
    assert session.runner.running == 0
    assert session.results == []


async def test_client_cannot_answer_the_relay_call(session):
    """Once the relay owns a call, a client's function_call_output for it is refused."""
    await session.say("take a note: first")
    done = await session.until(2)
    call_id = done[0]["response"]["output"][1]["call_id"]
    forged = {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": call_id, "output": "{}"},
    }
    verdict = session.runner.check_client("conversation.item.create", json.dumps(forged))
    assert verdict.refused


async def test_resumed_session_does_not_run_a_call_twice(simulator_url, registry):
    """A call id already recorded (resume, rollover) is never executed again."""
    async with connect(f"{simulator_url}?model=gpt-realtime-2.1", additional_headers=KEY) as ws:
        first = Session(ws, registry)
        await first.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "tools": registry.declarations()},
            }
        )
        await first.say("take a note: once")
        done = await first.until(2)
        call_id = done[0]["response"]["output"][1]["call_id"]
        await first.runner.aclose()
        # The same response.done replayed to a session seeded from the records.
        second = Session(ws, registry, executed=[call_id])
        second.runner.on_upstream("response.done", json.dumps(done[0]))
        assert second.runner.running == 0
        await second.runner.aclose()
    assert len(first.results) == 1


async def test_slow_tool_gets_a_filler_then_the_answer(simulator_url):
    """While a slow tool runs the model is asked to speak; the result follows that filler."""
    endpoint = ToolEndpoint()
    endpoint.start()
    tools = AgentConfig.model_validate(
        {
            "tools": [
                {"name": "slow_lookup", "description": "Slow.", "url": endpoint.url("/slow")}
            ],
            "slow_tools": {"after_ms": 50, "say": "filler", "filler": "One moment."},
        }
    )
    registry = build_registry(tools.tools, slow_tools=tools.slow_tools, signing_secret=SECRET)
    sent: list[dict[str, Any]] = []
    try:
        async with connect(f"{simulator_url}?model=gpt-realtime-2.1", additional_headers=KEY) as ws:
            s = Session(ws, registry)
            original = s.runner._send

            async def spy(frame: bytes) -> None:
                sent.append(json.loads(frame))
                await original(frame)

            s.runner._send = spy
            await s.send(
                {
                    "type": "session.update",
                    "session": {"type": "realtime", "tools": registry.declarations()},
                }
            )
            await s.say("call slow_lookup with {}")
            await s.until(2)  # the call, then the filler while the tool is held
            assert [e["type"] for e in sent] == ["response.create"]
            assert sent[0]["response"]["conversation"] == "none"
            assert "One moment." in sent[0]["response"]["instructions"]
            endpoint.release.set()
            done = await s.until(3)  # the answer with the result
            assert done[-1]["response"]["status"] == "completed"
            assert [e["type"] for e in sent] == [
                "response.create",
                "conversation.item.create",
                "response.create",
            ]
            await s.runner.aclose()
    finally:
        await registry.aclose()
        endpoint.close()
