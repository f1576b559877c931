"""The simulated model's tool calls, and the relay's greeting and runner on hostile input."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect

from relay.greeting import greeting_response
from relay.simulated_tools import function_call_events, requested_call
from relay.simulator import SimulatorOptions, listening_url, serve_simulator
from relay.tool_calls import ToolCallTracker
from relay.tool_runner import ToolRunner
from relay.tools.builtins import Builtins, ToolContext
from relay.tools.registry import ToolRegistry
from tests.relay.test_simulator import BEARER, next_event, silence, stream, tone


def user_text(text: str) -> dict[str, object]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


@pytest.mark.parametrize(
    ("text", "declared", "expected"),
    [
        ("Please take a note: ship Friday", {"take_note"}, ("take_note", {"text": "ship Friday"})),
        ("take a note: x", set(), None),
        (
            "post in the chat: the link",
            {"send_chat_message"},
            ("send_chat_message", {"message": "the link"}),
        ),
        ("could you leave the meeting", {"leave_meeting"}, ("leave_meeting", {})),
        ('call lookup with {"a": 1}', {"lookup"}, ("lookup", {"a": 1})),
        ("call lookup with {not json}", {"lookup"}, None),
        ("hello there", {"take_note"}, None),
    ],
    ids=["note", "undeclared", "chat", "leave", "any-call", "bad-json", "no-request"],
)
def test_simulated_model_calls_only_declared_tools(text, declared, expected):
    """The simulator asks for a tool only when the text says so and the session declares it."""
    call = requested_call(user_text(text), declared)
    if expected is None:
        assert call is None
    else:
        assert call is not None
        assert (call.name, json.loads(call.arguments)) == expected


def test_simulated_call_events_follow_ga():
    """added → arguments delta/done → item done, with one call_id and the final arguments."""
    call = requested_call(user_text("take a note: hi"), {"take_note"})
    assert call is not None
    events, item = function_call_events(
        call, response_id="r", item_id="i", call_id="c", output_index=1
    )
    assert [e["type"] for e in events] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    assert events[2]["name"] == "take_note"
    assert item == {**events[3]["item"]}
    assert item["status"] == "completed"
    assert json.loads(item["arguments"]) == {"text": "hi"}


def test_greeting_is_a_tool_free_response():
    """The greeting asks the model to say the operator's words, with tools off."""
    event = json.loads(greeting_response("Hi, I'm taking notes."))
    assert event["type"] == "response.create"
    assert event["response"]["tool_choice"] == "none"
    assert event["response"]["instructions"].endswith("Hi, I'm taking notes.")


@pytest.mark.parametrize(
    "raw",
    [b"{bad", b"[]", b'"x"', b"{" * 50_000 + b"}" * 50_000, b'{"response": 1}', b"x" * 2_000_000],
    ids=["bad-json", "array", "string", "deep", "wrong-shape", "oversized"],
)
async def test_runner_ignores_hostile_upstream_frames(raw):
    """Malformed or oversized upstream frames start nothing and raise nothing."""
    sent: list[bytes] = []

    async def send(frame: bytes) -> None:
        sent.append(frame)

    registry = ToolRegistry([], builtins=Builtins())
    runner = ToolRunner(
        registry, ToolCallTracker(registry.names), ToolContext("s"), send_upstream=send
    )
    runner.on_upstream("response.done", raw)
    assert runner.check_client("session.update", raw).refused is False
    assert runner.running == 0
    await runner.aclose()
    assert sent == []


async def test_simulator_calls_a_tool_after_speech_when_asked_to():
    """call_on_speech: an answer to speech (audio, no words) also calls the declared tool."""
    server = await serve_simulator(
        "127.0.0.1", 0, SimulatorOptions(pace=0.0, reply_ms=200, call_on_speech="take_note")
    )
    url = listening_url(server) + "?model=gpt-realtime-2.1"
    try:
        async with connect(url, additional_headers=BEARER) as ws:
            session = {"type": "realtime", "tools": [{"type": "function", "name": "take_note"}]}
            await ws.send(json.dumps({"type": "session.update", "session": session}))
            await stream(ws, tone(600) + silence(700))
            done = await next_event(ws, "response.done")
    finally:
        server.close()
        await server.wait_closed()
    [call] = [o for o in done["response"]["output"] if o["type"] == "function_call"]
    assert call["name"] == "take_note"
    assert json.loads(call["arguments"])["text"].startswith("(heard ")
