"""Pydantic models of the Recall events we store, and ``parse_event(body)``.

Owns understanding a verified body; it refuses to judge it: every field we do not use is
kept (``extra="allow"``), codes and sub-codes are open strings (Recall: "do not treat
``data.code``/``data.sub_code`` as an enum"), and an event type we do not know is still
an event (:class:`OtherEvent`). A :class:`PayloadError` (the body is then stored raw and
acknowledged) is raised only for what we could not store or order safely:

* not JSON (including JSON nested too deep to parse), not an object, no ``event`` string;
* a status event whose ``updated_at`` is not a time;
* an event whose own time is implausible: before :data:`EARLIEST_EVENT_TIME` or more than
  :data:`MAX_CLOCK_AHEAD` after we received it (a time from year 9999 would freeze the
  bot's state forever; one from year 999 would file the bot under a day nobody lists);
* a bot id (or our session id in its metadata) that cannot be part of a key
  (:func:`storage.schema.is_valid_id`: too long, control or bidi characters);
* an event name, code or sub-code that is not a short printable label.

Free text (transcript words, participant names, chat) is never refused: the store keeps
it (lone surrogates replaced, see :func:`storage.items.storable_text`).

Shapes (docs/recall-webhooks.md, API v1.11):

* status changes (Svix): ``{"event": "bot.in_call_recording" | "recording.done" | …,
  "data": {"data": {"code", "sub_code", "updated_at"}, "bot": {"id", "metadata"}, …}}``;
  ``bot.*`` ones are :class:`BotStatusEvent` (they move a bot's state), the others
  (recording, transcript and other media objects) :class:`MediaStatusEvent`;
* real-time endpoints: ``transcript.data`` / ``transcript.partial_data`` with
  ``data.data.words`` and ``participant``, and ``participant_events.*`` with
  ``data.data.participant`` and ``timestamp`` (:class:`TranscriptEvent`,
  :class:`ParticipantEvent`).

The wire models themselves are ``functions.webhooks.payloads``; they are built on first
use (``defer_build``), not at import: a cold start pays for the schema only when the first
delivery arrives.
"""

from __future__ import annotations

import json
from datetime import datetime

from pydantic import ValidationError

from functions.webhooks.errors import PayloadError
from functions.webhooks.payloads import (
    EARLIEST_EVENT_TIME,
    MAX_CLOCK_AHEAD,
    PARTICIPANT_EVENT_PREFIX,
    TRANSCRIPT_EVENTS,
    Envelope,
    ParticipantEventData,
    StatusData,
    TranscriptData,
)
from storage import schema
from storage.items import MAX_SUMMARY_CHARS, storable_text
from storage.times import as_utc


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
        return storable_text(line, MAX_SUMMARY_CHARS)


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
        return storable_text(": ".join(parts), MAX_SUMMARY_CHARS) if parts else None


class OtherEvent(RecallEvent):
    """Any other event type (new ones appear): kept and listed, never rejected."""

    __slots__ = ()


def parse_event(body: bytes, received_at: datetime) -> RecallEvent:
    """Understand a verified delivery body received at ``received_at``.

    Raises:
        PayloadError: the body is not something we can store and order safely (see the
            module docstring). The message says where it went wrong, never the content.
    """
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PayloadError(f"body is not JSON ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise PayloadError("body is not a JSON object")
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as exc:
        raise PayloadError(f"not a Recall event: {_describe(exc)}") from None
    event = _specific(envelope)
    _check_keys(event)
    _check_time(event, received_at)
    return event


def _specific(envelope: Envelope) -> RecallEvent:
    """The event class the envelope's name and inner data call for."""
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


def _check_keys(event: RecallEvent) -> None:
    """Refuse ids that would become part of a key but cannot be one."""
    bot = event.envelope.data.bot
    if bot is not None and bot.id and not schema.is_valid_id(bot.id):
        raise PayloadError(
            f"data.bot.id is not a valid id (1-{schema.MAX_ID_BYTES} bytes of printable text, "
            "no whitespace)"
        )
    session_id = event.session_id
    if session_id is not None and not schema.is_valid_id(session_id):
        raise PayloadError("data.bot.metadata.session_id is not a valid id")


def _check_time(event: RecallEvent, received_at: datetime) -> None:
    """Refuse an event time that would misorder the bot's state or history."""
    occurred_at = event.occurred_at
    if occurred_at is None:
        return
    if occurred_at < EARLIEST_EVENT_TIME:
        raise PayloadError(f"the event's time is before {EARLIEST_EVENT_TIME.date()}")
    if occurred_at > as_utc(received_at) + MAX_CLOCK_AHEAD:
        raise PayloadError("the event's time is more than a day ahead of its delivery")


def _describe(exc: ValidationError) -> str:
    """Where validation failed and why, without the offending values."""
    problems = [
        f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)[:3]
    ]
    # Locations can hold keys of the body: keep them encodable and short.
    return storable_text("; ".join(problems), MAX_SUMMARY_CHARS)
