"""relay.meeting, sans I/O: the roster, who spoke a turn, what the model is told, bounds."""

from __future__ import annotations

import json

from relay.meeting import ITEM_BURST, MAX_PARTICIPANTS, Meeting, MeetingPolicy
from relay.meeting_events import Kind, MeetingEvent, Participant


def ev(
    kind: Kind, ident: int, name: str | None = None, text: str = "", to: str | None = None
) -> MeetingEvent:
    who = Participant(id=str(ident), name=name or f"P{ident}")
    return MeetingEvent(
        kind=kind, session_id="s", bot_id="b", participant=who, bot_name="Ava", text=text, to=to
    )


def texts(meeting: Meeting, event: MeetingEvent, now: float) -> list[str]:
    return [
        json.loads(item)["item"]["content"][0]["text"]
        for item in meeting.on_event(event, now).items
    ]


def test_the_bot_is_not_in_the_roster_and_joins_and_leaves_are_told() -> None:
    meeting = Meeting()
    assert texts(meeting, ev("join", 99, "ava"), 0.0) == []  # the bot, any case
    assert texts(meeting, ev("join", 1, "Grace"), 0.0) == [
        "Grace joined the meeting (1 person here)."
    ]
    assert texts(meeting, ev("join", 2, "Linus"), 0.0) == [
        "Linus joined the meeting (2 people here)."
    ]
    assert texts(meeting, ev("leave", 1, "Grace"), 0.0) == [
        "Grace left the meeting (1 person here)."
    ]
    assert meeting.humans == 1


def test_the_previous_speakers_tail_does_not_take_the_next_turn() -> None:
    meeting = Meeting()
    for ident in (1, 2):
        meeting.on_event(ev("join", ident), 0.0)
    meeting.on_event(ev("speech_on", 1), 0.0)
    assert meeting.turn_speaker(5.0) == "P1"  # committed while P1 still "speaks"
    meeting.on_event(ev("speech_off", 1), 8.0)  # a late speech_off: 3 s of tail
    meeting.on_event(ev("speech_on", 2), 8.5)
    assert meeting.turn_speaker(9.0) == "P2"


def test_in_crosstalk_who_spoke_longest_in_the_turn_has_it() -> None:
    meeting = Meeting()
    for ident in (1, 2):
        meeting.on_event(ev("join", ident), 0.0)
    meeting.on_event(ev("speech_on", 1), 0.0)
    meeting.on_event(ev("speech_on", 2), 1.0)
    meeting.on_event(ev("speech_off", 2), 1.5)  # "mm-hm"
    assert meeting.turn_speaker(4.0) == "P1"


def test_is_speaking_items_are_once_per_speaker_per_turn() -> None:
    meeting = Meeting()
    meeting.on_event(ev("join", 1, "Grace"), 0.0)
    assert texts(meeting, ev("speech_on", 1), 0.0) == ["Grace is speaking."]
    assert texts(meeting, ev("speech_on", 1), 0.1) == []
    meeting.turn_speaker(1.0)
    assert texts(meeting, ev("speech_on", 1), 2.0) == ["Grace is speaking."]


def test_the_roster_and_the_items_are_bounded() -> None:
    meeting = Meeting()
    told = sum(len(meeting.on_event(ev("join", i), 0.0).items) for i in range(2 * MAX_PARTICIPANTS))
    assert meeting.humans == MAX_PARTICIPANTS
    assert told == ITEM_BURST  # a burst, then nothing more at the same instant
    assert meeting.items_dropped > 0


def test_chat_policy() -> None:
    addressed = Meeting(MeetingPolicy(chat="addressed", wake_phrases=("Ava",)))
    for ident in (1, 2, 3):
        addressed.on_event(ev("join", ident), 0.0)
    assert addressed.on_event(ev("chat", 1, text="lunch?"), 0.0).chat is None
    line = addressed.on_event(ev("chat", 2, text="ava: agenda?"), 0.0).chat
    assert line is not None
    assert (line.sender, line.direct) == ("P2", False)
    direct = addressed.on_event(ev("chat", 3, text="psst", to="99"), 0.0).chat
    assert direct is not None
    assert direct.direct
    everything = Meeting(MeetingPolicy(chat="all", wake_phrases=("Ava",)))
    assert everything.on_event(ev("chat", 1, text="lunch?"), 0.0).chat is not None
    off = Meeting(MeetingPolicy(chat="off"))
    assert off.on_event(ev("chat", 1, text="Ava?"), 0.0).chat is None
