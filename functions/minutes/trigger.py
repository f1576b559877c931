"""When a meeting has ended: table changes (DynamoDB stream records) in, job requests out.

Pure: it reads a stream record's images (DynamoDB's typed JSON) and decides; it touches
no network. Two signals end a meeting, whichever comes first:

* a bot's ``STATE`` reaching ``done`` or ``fatal`` (the webhook store writes it when
  ``bot.done`` / ``bot.fatal`` arrives) → a :class:`BotJob` at once;
* a relay connection's ``CONN#`` item gaining ``ended_at`` (the relay writes it when the
  page's connection closes) → a :class:`SessionCheck` after a grace period, because a
  connection that drops may re-attach or reconnect (``docs/design/sessions.md``): the
  check runs the job only if no connection of the session is open and the newest ended
  at least the grace period before;
* a new leave request (``BOT#<id>`` / ``LEAVE``, ``storage.leaving``) → a :class:`BotJob`
  with trigger ``leave_requested`` at once (minutes, the chat, then leave), and a
  :class:`LeaveDeadline` later in case the job never gets to leaving.

The job itself is claimed exactly once (``storage.minutes``), so both signals, and
duplicates of either, are harmless. A :class:`JobMessage` is the queue message, validated
on the way in: a message that does not parse is refused, not guessed at.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from storage import schema
from storage.leaving import LEAVE_SK
from storage.minutes import FINAL_STATUSES

MAX_MESSAGE_BYTES: Final = 4096

_Id = Annotated[str, Field(min_length=1, max_length=schema.MAX_ID_BYTES)]


class BotJob(BaseModel):
    """Build (or finish delivering) one bot's minutes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["bot"] = "bot"
    bot_id: _Id
    trigger: Literal["bot.done", "bot.fatal", "session_ended", "requested", "leave_requested"]


class SessionCheck(BaseModel):
    """Check whether a session's last connection has ended; if so, run its bot's job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["session"] = "session"
    session_id: _Id


class LeaveDeadline(BaseModel):
    """Make a bot that was asked to leave leave now, unless a job already did."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["leave_deadline"] = "leave_deadline"
    bot_id: _Id


Message = BotJob | SessionCheck | LeaveDeadline
JobMessage = Annotated[Message, Field(discriminator="kind")]
_MESSAGE: Final[TypeAdapter[Message]] = TypeAdapter(JobMessage)


class BadMessageError(ValueError):
    """A queue message that is not a job request (never retried: it would fail again)."""


def parse_message(body: str) -> Message:
    """The job request in a queue message body.

    Raises:
        BadMessageError: oversized, not JSON, or not one of the shapes.
    """
    if len(body) > MAX_MESSAGE_BYTES:
        raise BadMessageError("message too large")
    try:
        message = _MESSAGE.validate_json(body)
    except ValidationError as exc:
        raise BadMessageError(f"not a job request ({exc.error_count()} problems)") from None
    if isinstance(message, BotJob | LeaveDeadline) and not schema.is_valid_id(message.bot_id):
        raise BadMessageError("invalid bot id")
    if isinstance(message, SessionCheck) and not schema.is_valid_id(message.session_id):
        raise BadMessageError("invalid session id")
    return message


def message_body(message: Message) -> str:
    """The queue message body of a job request."""
    return message.model_dump_json()


def from_stream_record(record: dict[str, Any]) -> BotJob | SessionCheck | None:
    """The job request a DynamoDB stream record calls for, if any."""
    if record.get("eventName") not in ("INSERT", "MODIFY"):
        return None
    change = record.get("dynamodb")
    if not isinstance(change, dict):
        return None
    new = change.get("NewImage")
    old = change.get("OldImage") or {}
    if not isinstance(new, dict) or not isinstance(old, dict):
        return None
    pk, sk = _string(new, schema.PARTITION_KEY), _string(new, schema.SORT_KEY)
    if pk is None or sk is None:
        return None
    if sk == LEAVE_SK and pk.startswith("BOT#"):
        bot_id = _string(new, "bot_id") or pk.removeprefix("BOT#")
        is_new = record.get("eventName") == "INSERT"
        return (
            BotJob(bot_id=bot_id, trigger="leave_requested")
            if is_new and schema.is_valid_id(bot_id)
            else None
        )
    if sk == schema.STATE_SK and pk.startswith("BOT#"):
        status = _string(new, "status")
        if status in FINAL_STATUSES and _string(old, "status") != status:
            bot_id = _string(new, "bot_id") or pk.removeprefix("BOT#")
            if schema.is_valid_id(bot_id):
                trigger: Literal["bot.done", "bot.fatal"] = (
                    "bot.done" if status == "done" else "bot.fatal"
                )
                return BotJob(bot_id=bot_id, trigger=trigger)
        return None
    ended_now = _string(new, "ended_at") is not None and _string(old, "ended_at") is None
    if sk.startswith(schema.CONNECTION_PREFIX) and pk.startswith("SESSION#") and ended_now:
        session_id = _string(new, "session_id") or pk.removeprefix("SESSION#")
        if schema.is_valid_id(session_id):
            return SessionCheck(session_id=session_id)
    return None


#: SQS caps a message's delay at 15 minutes.
MAX_DELAY_SECONDS: Final = 900


def planned(request: Message, *, grace: int, leave_deadline: int) -> list[tuple[Message, int]]:
    """The queue messages (with their delays in seconds) a stream-born request becomes."""
    if isinstance(request, SessionCheck):
        return [(request, min(grace, MAX_DELAY_SECONDS))]
    if isinstance(request, BotJob) and request.trigger == "leave_requested":
        deadline = LeaveDeadline(bot_id=request.bot_id)
        return [(request, 0), (deadline, min(leave_deadline, MAX_DELAY_SECONDS))]
    return [(request, 0)]


def _string(image: dict[str, Any], name: str) -> str | None:
    value = image.get(name)
    if isinstance(value, dict):
        text = value.get("S")
        if isinstance(text, str):
            return text
    return None
