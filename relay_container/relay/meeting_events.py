"""Recall's real-time meeting events, parsed: one verified raw message in, a value out.

Recall sends every subscribed event of a bot to a real-time websocket endpoint as one text
message (docs/recall-realtime.md, "Payloads")::

    {"event": "participant_events.join",
     "data": {"data": {"participant": {"id": 7, "name": "Ada", "is_host": false, ...},
                       "timestamp": {"absolute": "…", "relative": 12.3},
                       "data": null | {"text": "…", "to": "…"}},
              "bot": {"id": "…", "metadata": {"session_id": "…", "bot_name": "…"}}, ...}}

:func:`parse_meeting_event` turns one into a :class:`MeetingEvent` or raises
:class:`MeetingEventError` with a reason safe to log (never the payload). It is strict
where the relay relies on a field (the event name, the participant id, the session the
bot's metadata names) and lenient elsewhere (a missing name is ``None``). Size is bounded
before decoding; names and texts are cleaned and cut.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Literal

from relay.conversation import clean_text

#: Largest message read (a chat line is ≤ 4096 characters on every platform; the rest of
#: the envelope is small). Larger ones are refused without decoding.
MAX_EVENT_BYTES: Final = 64 * 1024
MAX_NAME_CHARS: Final = 100
MAX_TEXT_CHARS: Final = 4096
MAX_ID_CHARS: Final = 128
#: Words read at most from one ``transcript.data`` (longer turns are cut).
MAX_WORDS: Final = 2000

Kind = Literal["join", "leave", "update", "speech_on", "speech_off", "chat", "transcript"]
#: Recall's event names → what the relay calls them. Other events are refused (not subscribed).
KINDS: Final[dict[str, Kind]] = {
    "participant_events.join": "join",
    "participant_events.leave": "leave",
    "participant_events.update": "update",
    "participant_events.speech_on": "speech_on",
    "participant_events.speech_off": "speech_off",
    "participant_events.chat_message": "chat",
    "transcript.data": "transcript",
}
#: The relay's path for Recall's real-time events (the trailing "/" is what Recall needs
#: before any query).
EVENTS_PATH: Final = "/recall/events/"
#: The events ``voicebot bot create`` subscribes (transcript.data needs a paid transcription
#: provider and adds nothing speech_on/off does not give; the parser still takes it).
SUBSCRIBED_EVENTS: Final = (
    "participant_events.join",
    "participant_events.leave",
    "participant_events.update",
    "participant_events.speech_on",
    "participant_events.speech_off",
    "participant_events.chat_message",
)


class MeetingEventError(ValueError):
    """A message that is not a meeting event the relay reads; ``str()`` is safe to log."""


@dataclass(frozen=True, slots=True)
class Participant:
    """Who an event is about (Recall's participant id is stable for the meeting)."""

    id: str
    name: str | None
    is_host: bool = False


@dataclass(frozen=True, slots=True)
class MeetingEvent:
    """One participant, speech, chat or transcript event of a bot's meeting."""

    kind: Kind
    session_id: str
    bot_id: str | None
    participant: Participant
    #: Recall's ``timestamp.relative`` (seconds since the recording started), if given.
    at: float | None = None
    #: Chat text, or a transcript's words joined; "" otherwise.
    text: str = ""
    #: A chat message's recipient as Recall says it ("everyone", a participant id, ...).
    to: str | None = None
    #: The bot's own name (from our metadata), to tell the bot apart in the roster.
    bot_name: str | None = None


def parse_meeting_event(payload: bytes | str) -> MeetingEvent:
    """One Recall real-time message as a :class:`MeetingEvent`.

    Raises:
        MeetingEventError: too big, not JSON, an event the relay does not read, or a
            missing/mistyped field the relay relies on.
    """
    if len(payload) > MAX_EVENT_BYTES:
        raise MeetingEventError(f"event larger than {MAX_EVENT_BYTES} bytes")
    try:
        message = json.loads(payload)
    except (ValueError, RecursionError):
        raise MeetingEventError("event is not JSON") from None
    envelope = _object(message, "event")
    name = envelope.get("event")
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        shown = name[:64] if isinstance(name, str) else type(name).__name__
        raise MeetingEventError(f"event {shown!r} is not one the relay reads")
    data = _object(envelope.get("data"), "data")
    inner = _object(data.get("data"), "data.data")
    bot = _object(data.get("bot"), "data.bot")
    metadata = _object(bot.get("metadata"), "data.bot.metadata")
    session_id = _identifier(metadata.get("session_id"), "data.bot.metadata.session_id")
    bot_id = bot.get("id")
    bot_name = metadata.get("bot_name")
    participant = _participant(_object(inner.get("participant"), "data.data.participant"))
    timestamp = inner.get("timestamp")
    relative = timestamp.get("relative") if isinstance(timestamp, dict) else None
    text, to = "", None
    if kind == "chat":
        chat = _object(inner.get("data"), "data.data.data")
        raw_text = chat.get("text")
        if not isinstance(raw_text, str):
            raise MeetingEventError("a chat message has no text")
        text = clean_text(raw_text, MAX_TEXT_CHARS)
        raw_to = chat.get("to")
        to = clean_text(str(raw_to), MAX_ID_CHARS) if isinstance(raw_to, str | int) else None
    elif kind == "transcript":
        text = _words(inner.get("words"))
    return MeetingEvent(
        kind=kind,
        session_id=session_id,
        bot_id=clean_text(bot_id, MAX_ID_CHARS) if isinstance(bot_id, str) else None,
        participant=participant,
        at=float(relative)
        if isinstance(relative, int | float) and not isinstance(relative, bool)
        else None,
        text=text,
        to=to,
        bot_name=clean_text(bot_name, MAX_NAME_CHARS) if isinstance(bot_name, str) else None,
    )


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MeetingEventError(f"{where} is not an object")
    return value


def _identifier(value: object, where: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS or not value.isprintable():
        raise MeetingEventError(f"{where} is not a short printable string")
    return value


def _participant(raw: dict[str, Any]) -> Participant:
    ident = raw.get("id")
    if isinstance(ident, bool) or not isinstance(ident, int | str):
        raise MeetingEventError("data.data.participant.id is missing")
    ident = clean_text(str(ident), MAX_ID_CHARS)
    if not ident:
        raise MeetingEventError("data.data.participant.id is blank")
    name = raw.get("name")
    cleaned = clean_text(name, MAX_NAME_CHARS) if isinstance(name, str) else ""
    return Participant(id=ident, name=cleaned or None, is_host=raw.get("is_host") is True)


def _words(raw: object) -> str:
    if not isinstance(raw, list):
        raise MeetingEventError("data.data.words is not a list")
    said = [
        w["text"] for w in raw[:MAX_WORDS] if isinstance(w, dict) and isinstance(w.get("text"), str)
    ]
    return clean_text(" ".join(said), MAX_TEXT_CHARS)
