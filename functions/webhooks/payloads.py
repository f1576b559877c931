"""What Recall sends, as pydantic models: the envelope every event shares and its parts.

Owns the wire shapes only (docs/recall-webhooks.md, API v1.11); ``functions.webhooks.events``
wraps a validated :class:`Envelope` in the event classes and decides what to refuse.
Every model keeps the fields we do not use (``extra="allow"``), so nothing Recall adds is
lost; names, codes and sub-codes are short printable labels (:data:`Label`). Models are
built on first use (``defer_build``), not at import: a cold start pays for the schema only
when the first delivery arrives.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from storage.times import as_utc

TRANSCRIPT_EVENTS: Final = frozenset({"transcript.data", "transcript.partial_data"})
PARTICIPANT_EVENT_PREFIX: Final = "participant_events."
#: Recall (founded 2020) sends no earlier event time; anything before is a broken clock.
EARLIEST_EVENT_TIME: Final = datetime(2020, 1, 1, tzinfo=UTC)
#: How far an event's time may be ahead of our receive time (clock skew, generously).
MAX_CLOCK_AHEAD: Final = timedelta(days=1)
#: Longest event name, code or sub-code (Recall's are short snake_case words).
MAX_LABEL_CHARS: Final = 256

_OPEN = ConfigDict(extra="allow", defer_build=True, frozen=True)


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must be printable text (no control, format or surrogate characters)")
    return value


#: An event name, status code or sub-code: short printable text, stored and shown as is.
Label = Annotated[str, StringConstraints(max_length=MAX_LABEL_CHARS), AfterValidator(_printable)]


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

    code: Label
    sub_code: Label | None = None
    updated_at: datetime

    @field_validator("updated_at", mode="after")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        # Naive is taken as UTC (Recall sends Z). ValueError, not OverflowError, for a time
        # outside years 1-9999 in UTC, so pydantic reports it instead of crashing.
        return as_utc(value)


class Timestamp(BaseModel):
    """``{"relative": seconds, "absolute": iso}``, both optional."""

    model_config = _OPEN

    relative: float | None = None
    absolute: datetime | None = None

    @field_validator("absolute", mode="after")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)


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

    event: Label
    data: EventBody = Field(default_factory=EventBody)

    @field_validator("data", mode="before")
    @classmethod
    def _null_data_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value
