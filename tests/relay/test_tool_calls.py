"""ToolCallTracker through its public methods: which calls run, what goes upstream, what a
client may not do. GA event shapes as openai-python's ``types/realtime`` declares them."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from relay.tool_calls import (
    MAX_ARGUMENTS_CHARS,
    MAX_REMEMBERED_CALLS,
    ToolCallTracker,
    seed_events,
)
from relay.tool_guard import REFUSED_CODE

ARGS_DONE = "response.function_call_arguments.done"
TAKE_NOTE = {
    "type": "function",
    "name": "take_note",
    "description": "Save a note.",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
}


def tracker(**kw: Any) -> ToolCallTracker:
    return ToolCallTracker({"take_note", "leave_meeting"}, [TAKE_NOTE], **kw)


def call_item(call_id: str, name: str, arguments: str = '{"text":"hi"}') -> dict[str, Any]:
    return {
        "id": f"item_{call_id}",
        "type": "function_call",
        "status": "completed",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def feed_call(
    t: ToolCallTracker,
    *calls: tuple[str, str],
    status: str = "completed",
    response_id: str = "resp_1",
    extra_output: list[dict[str, Any]] | None = None,
) -> list[Any]:
    """The GA event sequence of one response holding ``calls``; returns what is to run."""
    ran: list[Any] = []
    ran += t.on_upstream_event(
        "response.created", {"type": "response.created", "response": {"id": response_id}}
    )
    for index, (call_id, name) in enumerate(calls):
        item = call_item(call_id, name)
        added = {**item, "status": "in_progress", "arguments": ""}
        ran += t.on_upstream_event(
            "response.output_item.added",
            {"response_id": response_id, "output_index": index, "item": added},
        )
        ran += t.on_upstream_event(
            "response.function_call_arguments.done",
            {
                "response_id": response_id,
                "item_id": item["id"],
                "output_index": index,
                "call_id": call_id,
                "name": name,
                "arguments": item["arguments"],
            },
        )
    output = [call_item(c, n) for c, n in calls] + (extra_output or [])
    ran += t.on_upstream_event(
        "response.done",
        {"response": {"id": response_id, "status": status, "output": output}},
    )
    return ran


def decoded(frames: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(f) for f in frames]


def test_completed_relay_call_runs_once_with_its_arguments():
    """A relay tool called in a completed response is run, with the model's arguments."""
    t = tracker()
    ran = feed_call(t, ("call_1", "take_note"))
    assert [(c.call_id, c.name, c.arguments, c.response_id) for c in ran] == [
        ("call_1", "take_note", '{"text":"hi"}', "resp_1")
    ]
    assert t.running == {"call_1"}


def test_output_then_response_create_are_sent_upstream():
    """The relay sends the function_call_output for that call_id, then response.create."""
    t = tracker()
    feed_call(t, ("call_1", "take_note"))
    events = decoded(t.tool_finished("call_1", '{"ok":true}'))
    assert [e["type"] for e in events] == ["conversation.item.create", "response.create"]
    assert events[0]["item"] == {
        "type": "function_call_output",
        "call_id": "call_1",
        "output": '{"ok":true}',
    }
    assert all(e["event_id"].startswith("event_relay_tool_") for e in events)
    assert t.running == frozenset()
    assert t.was_executed("call_1")


@pytest.mark.parametrize("status", ["cancelled", "incomplete", "failed"])
def test_interrupted_response_runs_nothing(status):
    """arguments.done also fires for a cancelled answer: nothing runs unless it completed."""
    t = tracker()
    assert feed_call(t, ("call_1", "leave_meeting"), status=status) == []
    assert t.tool_finished("call_1", "{}") == []


def test_client_owned_call_passes_through():
    """A function the relay does not own never runs in the relay."""
    t = tracker()
    assert feed_call(t, ("call_c", "lookup_crm")) == []
    assert t.running == frozenset()


def test_executed_call_is_never_run_again():
    """A call id known from the records (resume, rollover) or already run is not rerun."""
    t = tracker(executed=["call_old"])
    assert feed_call(t, ("call_old", "take_note")) == []
    assert len(feed_call(t, ("call_new", "take_note"), response_id="resp_2")) == 1
    t.tool_finished("call_new", "{}")
    # The same response.done delivered again (a replay) runs nothing.
    assert feed_call(t, ("call_new", "take_note"), response_id="resp_2") == []


def test_several_relay_calls_get_one_response_create_after_the_last():
    """Parallel calls: each output goes up when ready; one response.create follows the last."""
    t = tracker()
    ran = feed_call(t, ("call_a", "take_note"), ("call_b", "leave_meeting"))
    assert {c.call_id for c in ran} == {"call_a", "call_b"}
    first = decoded(t.tool_finished("call_b", "{}"))
    assert [e["type"] for e in first] == ["conversation.item.create"]
    second = decoded(t.tool_finished("call_a", "{}"))
    assert [e["type"] for e in second] == ["conversation.item.create", "response.create"]


def test_mixed_response_leaves_response_create_to_the_client():
    """With a client call in the same response, the client (not the relay) asks for the answer."""
    t = tracker()
    ran = feed_call(t, ("call_a", "take_note"), extra_output=[call_item("call_c", "lookup_crm")])
    assert [c.call_id for c in ran] == ["call_a"]
    events = decoded(t.tool_finished("call_a", "{}"))
    assert [e["type"] for e in events] == ["conversation.item.create"]


def test_silent_tool_sends_output_but_no_response_create():
    """end_turn_silently: the output is recorded upstream, the model is not asked to speak."""
    t = ToolCallTracker({"end_turn_silently"})
    feed_call(t, ("call_s", "end_turn_silently"))
    events = decoded(t.tool_finished("call_s", '{"ok":true}', respond=False))
    assert [e["type"] for e in events] == ["conversation.item.create"]


def test_response_create_waits_for_an_active_response():
    """A result ready while the model is answering waits for that response.done."""
    t = tracker()
    feed_call(t, ("call_1", "take_note"))
    t.on_upstream_event("response.created", {"response": {"id": "resp_2"}})
    events = decoded(t.tool_finished("call_1", "{}"))
    assert [e["type"] for e in events] == ["conversation.item.create"]
    assert t.pending_response_create() is None
    t.on_upstream_event("response.done", {"response": {"id": "resp_2", "status": "completed"}})
    create = t.pending_response_create()
    assert create is not None
    assert json.loads(create)["type"] == "response.create"
    assert t.pending_response_create() is None


def test_slow_tool_response_is_out_of_band_and_tool_free():
    """The filler for a slow tool stays out of the conversation and cannot call tools."""
    t = tracker()
    feed_call(t, ("call_1", "take_note"))
    raw = t.slow_tool_response("call_1", "Say: one moment.")
    assert raw is not None
    event = json.loads(raw)
    assert event["type"] == "response.create"
    assert event["response"]["conversation"] == "none"
    assert event["response"]["tool_choice"] == "none"
    assert event["response"]["instructions"] == "Say: one moment."
    t.tool_finished("call_1", "{}")
    assert t.slow_tool_response("call_1", "x") is None


def test_slow_tool_response_not_while_the_model_speaks():
    """No filler while a response is in progress: the meeting is not silent then."""
    t = tracker()
    feed_call(t, ("call_1", "take_note"))
    t.on_upstream_event("response.created", {"response": {"id": "resp_2"}})
    assert t.slow_tool_response("call_1", "x") is None


def test_oversized_arguments_are_not_kept():
    """Arguments beyond the bound reach the executor empty (it answers an error)."""
    t = tracker()
    t.on_upstream_event("response.created", {"response": {"id": "r"}})
    huge = "x" * (MAX_ARGUMENTS_CHARS + 1)
    ran = t.on_upstream_event(
        "response.done",
        {
            "response": {
                "id": "r",
                "status": "completed",
                "output": [call_item("c", "take_note", huge)],
            }
        },
    )
    assert [c.arguments for c in ran] == [""]


def test_arguments_from_arguments_done_when_done_item_has_none():
    """A response.done item without arguments uses those of arguments.done."""
    t = tracker()
    t.on_upstream_event(
        "response.function_call_arguments.done",
        {"call_id": "c1", "name": "take_note", "arguments": '{"text":"x"}', "response_id": "r"},
    )
    item = call_item("c1", "take_note")
    del item["arguments"]
    ran = t.on_upstream_event(
        "response.done", {"response": {"id": "r", "status": "completed", "output": [item]}}
    )
    assert [c.arguments for c in ran] == ['{"text":"x"}']


HOSTILE_UPSTREAM = [
    ("response.done", {"response": "nope"}),
    ("response.done", {"response": {"status": "completed", "output": "nope"}}),
    ("response.done", {"response": {"status": "completed", "output": [None, 3, "x"]}}),
    (
        "response.done",
        {"response": {"status": "completed", "output": [{"type": "function_call", "name": 5}]}},
    ),
    (
        "response.done",
        {
            "response": {
                "status": "completed",
                "output": [call_item("c" * 500, "take_note")],
            }
        },
    ),
    ("response.output_item.added", {"item": ["not", "a", "dict"]}),
    ("response.function_call_arguments.done", {"call_id": 1, "arguments": None}),
]


@pytest.mark.parametrize(
    ("event_type", "event"),
    HOSTILE_UPSTREAM,
    ids=[
        "response-not-object",
        "output-not-list",
        "output-junk",
        "name-not-string",
        "call-id-too-long",
        "item-not-object",
        "arguments-not-string",
    ],
)
def test_malformed_upstream_events_run_nothing(event_type, event):
    """Malformed upstream events are ignored, never raise and never run a tool."""
    t = tracker()
    assert t.on_upstream_event(event_type, event) == []
    assert t.running == frozenset()


def test_remembered_calls_are_bounded():
    """Memory stays bounded however many calls a session makes."""
    t = tracker(executed=[f"c{i}" for i in range(MAX_REMEMBERED_CALLS + 10)])
    assert not t.was_executed("c0")
    assert t.was_executed(f"c{MAX_REMEMBERED_CALLS + 9}")


# Client guard


def refusal(verdict) -> dict[str, Any]:
    assert verdict.refused
    assert verdict.forward is None
    event: dict[str, Any] = json.loads(verdict.refusal)
    assert event["type"] == "error"
    assert event["error"]["code"] == REFUSED_CODE
    return event


def test_client_output_for_a_relay_call_is_refused():
    """A client cannot answer a relay call itself (it would fake the tool's result)."""
    t = tracker()
    feed_call(t, ("call_1", "take_note"))
    event = {
        "type": "conversation.item.create",
        "event_id": "evt_9",
        "item": {"type": "function_call_output", "call_id": "call_1", "output": "{}"},
    }
    answer = refusal(t.check_client_event("conversation.item.create", event))
    assert answer["error"]["event_id"] == "evt_9"


def test_client_output_for_its_own_call_passes():
    """A client's output for a client-owned call is forwarded untouched."""
    t = tracker()
    feed_call(t, ("call_c", "lookup_crm"))
    event = {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": "call_c", "output": "{}"},
    }
    verdict = t.check_client_event("conversation.item.create", event)
    assert not verdict.refused
    assert verdict.forward is None


CLIENT_ATTACKS = [
    (
        "conversation.item.create",
        {
            "item": {
                "type": "function_call",
                "call_id": "x",
                "name": "leave_meeting",
                "arguments": "{}",
            }
        },
    ),
    ("session.update", {"session": {"type": "realtime", "tools": [TAKE_NOTE]}}),
    (
        "session.update",
        {"session": {"tools": [{"type": "function", "name": "take_note", "description": "evil"}]}},
    ),
    ("session.update", {"session": {"tool_choice": {"type": "function", "name": "leave_meeting"}}}),
    (
        "response.create",
        {"response": {"tool_choice": {"type": "function", "name": "leave_meeting"}}},
    ),
    ("response.create", {"response": {"tools": [TAKE_NOTE]}}),
    (
        "response.create",
        {"response": {"input": [{"type": "function_call", "name": "take_note", "call_id": "z"}]}},
    ),
]


@pytest.mark.parametrize(
    ("event_type", "event"),
    CLIENT_ATTACKS,
    ids=[
        "create-relay-call",
        "redeclare-in-session",
        "redefine-in-session",
        "force-in-session",
        "force-in-response",
        "redeclare-in-response",
        "relay-call-in-response-input",
    ],
)
def test_client_cannot_invoke_or_redefine_relay_tools(event_type, event):
    """Invoking, forcing, declaring or redefining a relay tool is refused with an error."""
    refusal(tracker().check_client_event(event_type, {"type": event_type, **event}))


def test_client_tools_get_relay_tools_merged_back():
    """A client's tools list keeps its own tools and cannot drop the relay's."""
    own = {"type": "function", "name": "lookup_crm", "parameters": {}}
    event = {"type": "session.update", "session": {"type": "realtime", "tools": [own]}}
    verdict = tracker().check_client_event("session.update", event)
    assert not verdict.refused
    assert verdict.forward is not None
    sent = json.loads(verdict.forward)
    assert sent["session"]["tools"] == [own, TAKE_NOTE]
    assert sent["session"]["type"] == "realtime"


@pytest.mark.parametrize(
    "event",
    [
        {"type": "session.update", "session": "x"},
        {"type": "session.update", "session": {"tools": "x"}},
        {"type": "conversation.item.create", "item": None},
        {"type": "conversation.item.create", "item": {"type": "message"}},
        {"type": "session.update", "session": {"instructions": "hi"}},
    ],
    ids=["session-not-object", "tools-not-list", "no-item", "message-item", "no-tools"],
)
def test_unrelated_or_malformed_client_events_pass_as_they_are(event):
    """Events that touch no relay tool are forwarded byte for byte (forward is None)."""
    verdict = tracker().check_client_event(event["type"], event)
    assert not verdict.refused
    assert verdict.forward is None


def test_seed_events_replay_a_finished_call():
    """A resumed model is told the call and its output, in that order, for that call_id."""
    events = decoded(seed_events("call_1", "take_note", '{"text":"x"}', '{"ok":true}'))
    assert [e["item"]["type"] for e in events] == ["function_call", "function_call_output"]
    assert {e["item"]["call_id"] for e in events} == {"call_1"}
    assert events[0]["item"]["name"] == "take_note"
    assert events[1]["item"]["output"] == '{"ok":true}'


def test_response_create_waits_for_every_overlapping_response():
    """An out-of-band response overlapping another: the answer waits for both to finish."""
    t = tracker()
    feed_call(t, ("call_1", "take_note"))
    t.on_upstream_event("response.created", {"response": {"id": "resp_a"}})
    t.on_upstream_event("response.created", {"response": {"id": "resp_b"}})
    t.tool_finished("call_1", "{}")
    t.on_upstream_event("response.done", {"response": {"id": "resp_a", "status": "completed"}})
    assert t.pending_response_create() is None
    t.on_upstream_event("response.done", {"response": {"id": "resp_b", "status": "completed"}})
    assert t.pending_response_create() is not None


def test_random_event_streams_keep_the_invariants():
    """Shuffled, replayed and junk events: a call runs at most once, only when completed."""
    rng = random.Random(15)
    names = ["take_note", "leave_meeting", "lookup_crm", 7, None, "x" * 100]
    statuses = ["completed", "cancelled", "incomplete", "failed", None, 3]
    for _ in range(200):
        t = tracker()
        ran: list[str] = []
        completed_ids: set[str] = set()
        for _ in range(40):
            call_id = rng.choice(["c1", "c2", "c3", "", None, 5])
            name = rng.choice(names)
            status = rng.choice(statuses)
            kind = rng.choice(
                ["response.created", "response.output_item.added", ARGS_DONE, "response.done"]
            )
            item: dict[str, Any] = {"type": rng.choice(["function_call", "message"])}
            item["call_id"] = call_id
            item |= {"name": name, "arguments": rng.choice(['{"text":"x"}', None, "[", 3])}
            event: dict[str, Any] = {
                "response": {
                    "id": rng.choice(["r1", "r2", None]),
                    "status": status,
                    "output": [item],
                },
                "item": item,
                "call_id": call_id,
                "name": name,
                "arguments": item["arguments"],
            }
            for call in t.on_upstream_event(kind, event):
                assert kind == "response.done"
                assert status == "completed"
                assert call.name in ("take_note", "leave_meeting")
                ran.append(call.call_id)
                completed_ids.add(call.call_id)
            if ran and rng.random() < 0.3:
                t.tool_finished(rng.choice(ran), "{}", respond=rng.random() < 0.5)
            t.pending_response_create()
        assert len(ran) == len(set(ran)), ran
