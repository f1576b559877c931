"""ToolGuard on its own: the client may neither invoke nor change a relay tool.

The end-to-end cases (a tracker that has seen the model's calls) are in
test_tool_calls.py; these pin the guard's seam: what it asks for and what it rewrites.
"""

from __future__ import annotations

import json

from relay.tool_guard import REFUSED_CODE, ToolGuard

TAKE_NOTE = {"type": "function", "name": "take_note", "parameters": {"type": "object"}}


def no_call_ids() -> list[str]:
    raise AssertionError("the guard asked for call ids it does not need")


def test_output_for_a_relay_call_id_is_refused_with_the_client_event_id():
    guard = ToolGuard({"take_note"}, [TAKE_NOTE])
    event = {
        "type": "conversation.item.create",
        "event_id": "evt_1",
        "item": {"type": "function_call_output", "call_id": "call_1", "output": "{}"},
    }
    verdict = guard.check(str(event["type"]), event, lambda: {"call_1"})
    assert verdict.refused
    assert verdict.forward is None
    answer = json.loads(verdict.refusal or b"")
    assert answer["error"]["code"] == REFUSED_CODE
    assert answer["error"]["event_id"] == "evt_1"


def test_a_client_tools_list_gets_the_relay_declarations_back():
    guard = ToolGuard({"take_note"}, [TAKE_NOTE])
    mine = {"type": "function", "name": "lookup_crm"}
    event = {"type": "session.update", "session": {"type": "realtime", "tools": [mine]}}
    verdict = guard.check(str(event["type"]), event, no_call_ids)
    assert not verdict.refused
    forwarded = json.loads(verdict.forward or b"")
    assert forwarded["session"]["tools"] == [mine, TAKE_NOTE]
    assert forwarded["session"]["type"] == "realtime"


def test_forcing_or_redefining_a_relay_tool_is_refused():
    guard = ToolGuard({"take_note"}, [TAKE_NOTE])
    forcing = {"type": "response.create", "response": {"tool_choice": {"name": "take_note"}}}
    redefining = {"type": "session.update", "session": {"tools": [{"name": "take_note"}]}}
    for event in (forcing, redefining):
        assert guard.check(str(event["type"]), event, no_call_ids).refused


def test_hostile_shapes_pass_untouched_and_unparsed():
    guard = ToolGuard({"take_note"}, [TAKE_NOTE])
    for event in (
        {"type": "session.update", "session": "not an object"},
        {"type": "response.create", "response": {"tool_choice": {"name": {"x": 1}}}},
        {"type": "conversation.item.create", "item": ["not", "an", "item"]},
        {"type": "input_audio_buffer.clear"},
    ):
        verdict = guard.check(str(event["type"]), event, no_call_ids)
        assert not verdict.refused
        assert verdict.forward is None
