"""parse_event on recorded-shape Recall payloads, tolerant variants and hostile bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from functions.webhooks.errors import PayloadError
from functions.webhooks.events import (
    BotStatusEvent,
    MediaStatusEvent,
    OtherEvent,
    ParticipantEvent,
    RecallEvent,
    TranscriptEvent,
    parse_event,
)
from storage.times import key_time
from tests.webhooks.conftest import PAYLOADS, body_of, payload

BOT_ID = "8b9c2a3e-1f4d-4c7a-9e21-5d6f7a8b9c0d"
SESSION = "sess-01J9Z7K2M3N4P5Q6R7S8T9V0W1"
#: When the tests' deliveries arrive: just after the recorded payloads' times.
RECEIVED = datetime(2026, 11, 29, 18, 50, tzinfo=UTC)

KINDS: dict[str, type[RecallEvent]] = {
    "bot.joining_call": BotStatusEvent,
    "bot.in_waiting_room": BotStatusEvent,
    "bot.in_call_recording": BotStatusEvent,
    "bot.call_ended": BotStatusEvent,
    "bot.done": BotStatusEvent,
    "bot.fatal": BotStatusEvent,
    "recording.done": MediaStatusEvent,
    "transcript.done": MediaStatusEvent,
    "transcript.data": TranscriptEvent,
    "transcript.partial_data": TranscriptEvent,
    "participant_events.join": ParticipantEvent,
    "participant_events.chat_message": ParticipantEvent,
    "bot.breakout_room_opened": OtherEvent,
    "calendar.update": OtherEvent,
}


def test_every_recorded_payload_has_a_kind():
    """Each file in payloads/ is covered by the table below (no silent additions)."""
    recorded = {p.stem for p in PAYLOADS.glob("*.json") if not p.stem.startswith("apigw")}
    assert recorded == set(KINDS)


@pytest.mark.parametrize(("name", "kind"), KINDS.items(), ids=list(KINDS))
def test_recorded_payload_parses_to_its_kind(name: str, kind: type[RecallEvent]):
    """Each Recall event shape is recognised as the right kind, with its name."""
    event = parse_event((PAYLOADS / f"{name}.json").read_bytes(), RECEIVED)
    assert type(event) is kind
    assert event.name == name


def test_bot_status_event_carries_state_fields():
    """A bot status change exposes code, sub-code, time, bot and our session id."""
    event = parse_event(body_of(payload("bot.call_ended")), RECEIVED)
    assert isinstance(event, BotStatusEvent)
    assert event.status.code == "call_ended"
    assert event.status.sub_code == "call_ended_by_host"
    assert event.occurred_at == datetime(2026, 11, 29, 18, 45, 1, tzinfo=UTC)
    assert event.bot_id == BOT_ID
    assert event.session_id == SESSION


def test_transcript_without_bot_is_still_understood():
    """transcript.done without data.bot (as Recall's sample schema has it) parses, no bot id."""
    event = parse_event(body_of(payload("transcript.done")), RECEIVED)
    assert isinstance(event, MediaStatusEvent)
    assert event.bot_id is None


def test_realtime_transcript_summary_and_finality():
    """transcript.data is final and summarised as 'speaker: words'; partial_data is not final."""
    final = parse_event(body_of(payload("transcript.data")), RECEIVED)
    partial = parse_event(body_of(payload("transcript.partial_data")), RECEIVED)
    assert isinstance(final, TranscriptEvent)
    assert isinstance(partial, TranscriptEvent)
    assert final.is_final
    assert not partial.is_final
    assert final.summary == "Ann Example: Can you hear me?"
    assert final.occurred_at == datetime(2026, 11, 29, 18, 4, 2, 480000, tzinfo=UTC)


def test_participant_chat_summary():
    """A chat message is summarised with the sender and the text."""
    event = parse_event(body_of(payload("participant_events.chat_message")), RECEIVED)
    assert event.summary == "Bo Sample: Agenda is in the doc"
    assert event.occurred_at == datetime(2026, 11, 29, 18, 5, tzinfo=UTC)


def _tolerant_variants() -> list[tuple[str, dict[str, object]]]:
    unknown_code = payload("bot.fatal")
    unknown_code["data"]["data"]["code"] = "teleported"
    unknown_code["data"]["data"]["sub_code"] = "zoom_something_new_2027"
    extra = payload("bot.done")
    extra["new_top_level"] = {"x": [1, 2]}
    extra["data"]["data"]["reason"] = "new field"
    extra["data"]["bot"]["new_field"] = True
    naive = payload("bot.done", updated_at="2026-11-29T18:45:09")
    offset = payload("bot.done", updated_at="2026-11-29T20:45:09+02:00")
    meta = payload("bot.done")
    meta["data"]["bot"]["metadata"] = {"session_id": "s", "n": 5, "nested": {"a": 1}}
    no_bot = payload("recording.done")
    no_bot["data"]["bot"] = None
    null_data = {"event": "bot.something", "data": None}
    int_ids = payload("participant_events.join")
    int_ids["data"]["bot"]["id"] = 12345
    return [
        ("unknown-code-and-sub-code", unknown_code),
        ("extra-fields-everywhere", extra),
        ("naive-updated-at", naive),
        ("offset-updated-at", offset),
        ("non-string-metadata", meta),
        ("bot-null", no_bot),
        ("data-null", null_data),
        ("integer-bot-id", int_ids),
    ]


@pytest.mark.parametrize(
    "event", [v for _, v in _tolerant_variants()], ids=[i for i, _ in _tolerant_variants()]
)
def test_tolerates_variations(event: dict[str, object]):
    """New fields, new codes, null objects and other time formats never make a body unparseable."""
    parsed = parse_event(json.dumps(event).encode(), RECEIVED)
    assert parsed.name == event["event"]
    if isinstance(parsed, BotStatusEvent):
        assert parsed.occurred_at.tzinfo is not None


def test_naive_and_offset_times_normalise_to_the_same_utc_instant():
    """'18:45:09' (taken as UTC) and '20:45:09+02:00' order as the same moment."""
    naive = parse_event(body_of(payload("bot.done", updated_at="2026-11-29T18:45:09")), RECEIVED)
    offset = parse_event(
        body_of(payload("bot.done", updated_at="2026-11-29T20:45:09+02:00")), RECEIVED
    )
    assert isinstance(naive, BotStatusEvent)
    assert isinstance(offset, BotStatusEvent)
    assert (
        key_time(naive.occurred_at) == key_time(offset.occurred_at) == "2026-11-29T18:45:09.000000Z"
    )


def _status(**changes: object) -> bytes:
    event = payload("bot.done")
    event["data"]["data"].update(changes)
    return body_of(event)


HOSTILE: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("not-json", b"hello"),
    ("truncated-json", b'{"event": "bot.done", "data": {'),
    ("json-array", b"[1, 2]"),
    ("json-string", b'"bot.done"'),
    ("json-null", b"null"),
    ("no-event", b'{"data": {}}'),
    ("event-not-string", b'{"event": 5, "data": {}}'),
    ("data-not-object", b'{"event": "bot.done", "data": 5}'),
    ("bot-not-object", b'{"event": "bot.done", "data": {"bot": "b1"}}'),
    ("not-utf8", b'{"event": "bot.\xff"}'),
    ("updated-at-missing", _status(updated_at=None)),
    ("updated-at-garbage", _status(updated_at="last tuesday")),
    ("code-not-string", _status(code=7)),
    ("words-not-list", body_of({"event": "transcript.data", "data": {"data": {"words": 5}}})),
]


@pytest.mark.parametrize("body", [b for _, b in HOSTILE], ids=[i for i, _ in HOSTILE])
def test_rejects_unparseable_body(body: bytes):
    """A body that is not a Recall event raises PayloadError describing where, not what."""
    with pytest.raises(PayloadError) as caught:
        parse_event(body, RECEIVED)
    assert caught.value.message
    assert "last tuesday" not in caught.value.message
