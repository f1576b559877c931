"""peek_type reads an event's type without decoding audio; error events have OpenAI's shape."""

from __future__ import annotations

import json

import pytest

from relay.events import error_event, peek_type

PEEKS = [
    (
        "sdk-order",
        b'{"type": "input_audio_buffer.append", "audio": "AAAA"}',
        "input_audio_buffer.append",
    ),
    ("compact", b'{"type":"response.create"}', "response.create"),
    (
        "type-last",
        b'{"audio": "AAAA", "type": "input_audio_buffer.append"}',
        "input_audio_buffer.append",
    ),
    (
        "nested-type-first",
        b'{"session": {"type": "realtime"}, "type": "session.update"}',
        "session.update",
    ),
    ("escaped-quote-decoy", b'{"x": "say \\"type", "type": "a.b"}', "a.b"),
    ("whitespace", b'  {"type": "a.b"}  ', "a.b"),
    ("unicode", '{"type": "a.b", "t": "héllo"}'.encode(), "a.b"),
    ("escape-in-type", b'{"type":"a\\u002eb"}', "a.b"),
]
NOT_EVENTS = [
    ("empty", b""),
    ("text", b"hello"),
    ("array", b"[1]"),
    ("number-type", b'{"type": 1}'),
    ("empty-type", b'{"type": ""}'),
    ("no-type", b'{"audio": "AAAA"}'),
    ("truncated", b'{"type": "input_audio_buffer.append", "audio": "AAAA"'),
    ("prefix-only", b'{"type":"'),
    ("null", b"null"),
    ("duplicate-type", b'{"type": "response.cancel", "type": "session.update"}'),
    ("escaped-duplicate-type", b'{"type": "response.cancel", "\\u0074ype": "session.update"}'),
    ("duplicate-nested-key", b'{"audio": "", "session": {"a": 1, "a": 2}, "type": "x"}'),
]


@pytest.mark.parametrize(("raw", "kind"), [p[1:] for p in PEEKS], ids=[p[0] for p in PEEKS])
def test_peek_type_finds_the_top_level_type(raw: bytes, kind: str) -> None:
    """The top-level type is found whatever the key order or decoys inside strings."""
    assert peek_type(raw) == kind


@pytest.mark.parametrize("raw", [n[1] for n in NOT_EVENTS], ids=[n[0] for n in NOT_EVENTS])
def test_peek_type_refuses_what_is_not_an_event(raw: bytes) -> None:
    """Anything that is not a JSON object with a non-empty string type gives None."""
    assert peek_type(raw) is None


def test_error_event_has_the_ga_shape() -> None:
    """Error events look like OpenAI's, so SDKs parse them as ErrorEvent."""
    event = json.loads(error_event("bad", code="invalid_json", event_id="evt_1"))
    assert event["type"] == "error"
    assert event["event_id"].startswith("event_")
    assert event["error"] == {
        "type": "invalid_request_error",
        "code": "invalid_json",
        "message": "bad",
        "param": None,
        "event_id": "evt_1",
    }
