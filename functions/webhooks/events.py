"""Pydantic models of the Recall events we store, and ``parse_event(body)``.

Owns understanding a verified body; it refuses to judge it: every field we do not use is
kept (``extra="allow"``), codes and sub-codes are open strings (Recall: "do not treat
``data.code``/``data.sub_code`` as an enum"), and an event type we do not know is still
an event (:class:`OtherEvent`). Only a body that is not a JSON object with an ``event``
string, or a status event whose ``updated_at`` is not a time, is a :class:`PayloadError`.

Shapes (reference/recall.md §4, API v1.11):

* status changes (Svix): ``{"event": "bot.in_call_recording" | "recording.done" | …,
  "data": {"data": {"code", "sub_code", "updated_at"}, "bot": {"id", "metadata"}, …}}``;
  ``bot.*`` ones are :class:`BotStatusEvent` (they move a bot's state), the others
  (recording, transcript and other media objects) :class:`MediaStatusEvent`;
* real-time endpoints: ``transcript.data`` / ``transcript.partial_data`` with
  ``data.data.words`` and ``participant``, and ``participant_events.*`` with
  ``data.data.participant`` and ``timestamp`` (:class:`TranscriptEvent`,
  :class:`ParticipantEvent`).

Models are built on first use (``defer_build``), not at import: a cold start pays for the
schema only when the first delivery arrives.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from functions.webhooks.errors import PayloadError

#: Longest summary kept in a history item (transcript text, participant name).
MAX_SUMMARY_CHARS: Final = 500
TRANSCRIPT_EVENTS: Final = frozenset({"transcript.data", "transcript.partial_data"})
PARTICIPANT_EVENT_PREFIX: Final = "participant_events."

_OPEN = ConfigDict(extra="allow", defer_build=True, frozen=True)


def iso_utc(moment: datetime) -> str:
    """Fixed-width ISO 8601 UTC with microseconds, so lexical order is time order."""
    return _as_utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _as_utc(moment: datetime) -> datetime:
    """A naive time is taken as UTC (Recall always sends ``Z``; this is tolerance)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class ObjectRef(BaseModel):
    """``data.bot`` / ``data.recording`` / ``data.transcript`` / …: an id and metadata."""

    model_config = _OPEN

    id: str | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class StatusData(BaseModel):
    """``data.data`` of a status-change event."""

    model_config = _OPEN

    code: str
    sub_code: str | None = None
    updated_at: datetime

    @field_validator("updated_at", mode="after")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return _as_utc(value)


class Timestamp(BaseModel):
    """``{"relative": seconds, "absolute": iso}``, both optional."""

    model_config = _OPEN

    relative: float | None = None
    absolute: datetime | None = None

    @field_validator("absolute", mode="after")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _as_utc(value)


class Participant(BaseModel):
    """A meeting participant as real-time events describe them."""

    model_config = _OPEN

    id: int | str | None = None
    name: str | None = None
    is_host: bool | None = None
    platform: str | None = None
    email: str | None = None


class Word(BaseModel):
    """One transcribed word."""

    model_config = _OPEN

    text: str = ""
    start_timestamp: Timestamp | None = None
    end_timestamp: Timestamp | None = None


class TranscriptData(BaseModel):
    """``data.data`` of ``transcript.data`` / ``transcript.partial_data``."""

    model_config = _OPEN

    words: list[Word] = []
    participant: Participant | None = None


class ParticipantEventData(BaseModel):
    """``data.data`` of ``participant_events.*`` (``data`` is set for chat messages)."""

    model_config = _OPEN

    participant: Participant | None = None
    timestamp: Timestamp | None = None
    data: dict[str, Any] | None = None


class EventBody(BaseModel):
    """``data``: the inner ``data`` plus the objects the event is about."""

    model_config = _OPEN

    data: Any = None
    bot: ObjectRef | None = None
    recording: ObjectRef | None = None
    transcript: ObjectRef | None = None
    realtime_endpoint: ObjectRef | None = None


class Envelope(BaseModel):
    """The outermost shape every Recall event shares."""

    model_config = _OPEN

    event: str
    data: EventBody = Field(default_factory=EventBody)

    @field_validator("data", mode="before")
    @classmethod
    def _null_data_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class RecallEvent:
    """A parsed event: its name, the bot it is about, and when it happened."""

    __slots__ = ("envelope",)

    def __init__(self, envelope: Envelope) -> None:
        """Wrap a validated envelope."""
        self.envelope = envelope

    @property
    def name(self) -> str:
        """The event type, e.g. ``bot.done``."""
        return self.envelope.event

    @property
    def bot_id(self) -> str | None:
        """``data.bot.id``, if the event names a bot (Desktop SDK recordings do not)."""
        bot = self.envelope.data.bot
        return bot.id if bot is not None and bot.id else None

    @property
    def bot_metadata(self) -> dict[str, str]:
        """``data.bot.metadata``, string values only (Recall allows only strings)."""
        bot = self.envelope.data.bot
        metadata = bot.metadata if bot is not None and bot.metadata else {}
        return {k: v for k, v in metadata.items() if isinstance(v, str)}

    @property
    def session_id(self) -> str | None:
        """Our relay session id, carried in the bot's metadata by the CLI."""
        return self.bot_metadata.get("session_id") or None

    @property
    def occurred_at(self) -> datetime | None:
        """When the event happened by Recall's clock, if the payload says."""
        return None

    @property
    def status(self) -> StatusData | None:
        """The status change this event carries, if any."""
        return None

    @property
    def summary(self) -> str | None:
        """A short human-readable line for timelines (words, participant), if any."""
        return None


class StatusEvent(RecallEvent):
    """A status change: ``data.data = {code, sub_code, updated_at}``."""

    __slots__ = ("_status",)

    def __init__(self, envelope: Envelope, status: StatusData) -> None:
        """Wrap a validated envelope and its status."""
        super().__init__(envelope)
        self._status = status

    @property
    def status(self) -> StatusData:
        """The new status."""
        return self._status

    @property
    def occurred_at(self) -> datetime:
        """``data.data.updated_at``: what orders a bot's states."""
        return self._status.updated_at


class BotStatusEvent(StatusEvent):
    """``bot.*`` status change: the only kind that moves a bot's current state."""

    __slots__ = ()


class MediaStatusEvent(StatusEvent):
    """``recording.*``, ``transcript.*``, ``<media>.processing|done|failed|deleted``."""

    __slots__ = ()


class TranscriptEvent(RecallEvent):
    """``transcript.data`` (final) or ``transcript.partial_data`` from a real-time endpoint."""

    __slots__ = ("transcript",)

    def __init__(self, envelope: Envelope, transcript: TranscriptData) -> None:
        """Wrap a validated envelope and its words."""
        super().__init__(envelope)
        self.transcript = transcript

    @property
    def is_final(self) -> bool:
        """Finality comes from the event name; the payload has no ``is_final``."""
        return self.name == "transcript.data"

    @property
    def occurred_at(self) -> datetime | None:
        """The first word's absolute start time."""
        for word in self.transcript.words:
            if word.start_timestamp is not None and word.start_timestamp.absolute is not None:
                return word.start_timestamp.absolute
        return None

    @property
    def summary(self) -> str:
        """``speaker: words``."""
        text = " ".join(w.text for w in self.transcript.words if w.text)
        speaker = self.transcript.participant.name if self.transcript.participant else None
        line = f"{speaker}: {text}" if speaker else text
        return line[:MAX_SUMMARY_CHARS]


class ParticipantEvent(RecallEvent):
    """``participant_events.join|leave|update|speech_on|…|chat_message`` (real time)."""

    __slots__ = ("detail",)

    def __init__(self, envelope: Envelope, detail: ParticipantEventData) -> None:
        """Wrap a validated envelope and its participant data."""
        super().__init__(envelope)
        self.detail = detail

    @property
    def occurred_at(self) -> datetime | None:
        """``data.data.timestamp.absolute``."""
        return self.detail.timestamp.absolute if self.detail.timestamp else None

    @property
    def summary(self) -> str | None:
        """The participant's name, and the chat text for chat messages."""
        name = self.detail.participant.name if self.detail.participant else None
        text = self.detail.data.get("text") if self.detail.data else None
        parts = [p for p in (name, text if isinstance(text, str) else None) if p]
        return ": ".join(parts)[:MAX_SUMMARY_CHARS] if parts else None


class OtherEvent(RecallEvent):
    """Any other event type (new ones appear): kept and listed, never rejected."""

    __slots__ = ()


def parse_event(body: bytes) -> RecallEvent:
    """Understand a verified delivery body.

    Raises:
        PayloadError: not a JSON object with an ``event`` string, or a status event whose
            ``data.data`` is malformed. The message says what was wrong, not the content.
    """
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"body is not JSON ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise PayloadError("body is not a JSON object")
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as exc:
        raise PayloadError(f"not a Recall event: {_describe(exc)}") from None

    name = envelope.event
    inner = envelope.data.data
    try:
        if isinstance(inner, dict) and "code" in inner:
            status = StatusData.model_validate(inner)
            if name.startswith("bot."):
                return BotStatusEvent(envelope, status)
            return MediaStatusEvent(envelope, status)
        if name in TRANSCRIPT_EVENTS and isinstance(inner, dict):
            return TranscriptEvent(envelope, TranscriptData.model_validate(inner))
        if name.startswith(PARTICIPANT_EVENT_PREFIX) and isinstance(inner, dict):
            return ParticipantEvent(envelope, ParticipantEventData.model_validate(inner))
    except ValidationError as exc:
        raise PayloadError(f"malformed {name} event: {_describe(exc)}") from None
    return OtherEvent(envelope)


def _describe(exc: ValidationError) -> str:
    """Where validation failed and why, without the offending values."""
    problems = [
        f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)[:3]
    ]
    return "; ".join(problems)
