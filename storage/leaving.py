"""Keys and item shape of a deliberate leave: ``BOT#<bot_id>`` / ``LEAVE``.

Whoever makes a bot leave on purpose (the relay's ``leave_meeting`` tool, the control
API's leave, ``voicebot bot leave``) writes this item once, for a bot created with
``minutes_to_chat`` (``storage.minutes.SessionBot``), instead of calling Recall itself:
the minutes function sees the insert on the table's stream, builds the minutes (the same
exactly-once claim as ``bot.done``), posts them in the meeting chat and then makes the bot
leave (``docs/minutes.md``). The item then records who did the leaving:

* :func:`leave_request_put`: the request, written only if none exists (a second request
  changes nothing);
* :func:`leave_claim_update`: one worker claims the leave (the job that built the
  minutes, or the deadline that fires if the minutes are slow), only once;
* :func:`leave_release_update`: a worker whose ``leave_call`` failed gives the claim back
  so the retry can leave.

It refuses to call Recall or decide when to leave.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, NotRequired, TypedDict

from storage import schema, times
from storage.minutes import UpdateParams

LEAVE_SK: Final = "LEAVE"
#: Why a bot was asked to leave (shown in ``bot show``; free text is not stored).
LEAVE_REASONS: Final = frozenset({"tool", "api", "cli", "usage_limit"})


class LeaveRequest(TypedDict):
    """``BOT#<id>`` / ``LEAVE``."""

    pk: str
    sk: str
    bot_id: str
    reason: str  # one of LEAVE_REASONS
    requested_at: str
    leaving_at: NotRequired[str]  # a worker claimed the leave (chat, then leave_call)
    leaving_by: NotRequired[str]  # which: "job" or "deadline"
    chat_messages: NotRequired[int]  # how many chat messages were posted before leaving


def leave_key(bot_id: str) -> dict[str, str]:
    """The key of a bot's ``LEAVE`` item."""
    return {schema.PARTITION_KEY: schema.bot_pk(bot_id), schema.SORT_KEY: LEAVE_SK}


def leave_request_put(*, bot_id: str, reason: str, now: datetime) -> dict[str, Any]:
    """``PutItem`` parameters (without ``TableName``, values plain) for a leave request.

    Conditional on no request existing: a ``ConditionalCheckFailedException`` means the
    bot was already asked to leave.
    """
    if reason not in LEAVE_REASONS:
        raise ValueError(f"unknown leave reason {reason!r}")
    item: LeaveRequest = {
        **leave_key(bot_id),  # type: ignore[typeddict-item]
        "bot_id": bot_id,
        "reason": reason,
        "requested_at": times.key_time(now),
    }
    return {
        "Item": item,
        "ConditionExpression": "attribute_not_exists(#pk)",
        "ExpressionAttributeNames": {"#pk": schema.PARTITION_KEY},
    }


def leave_claim_update(*, bot_id: str, now: datetime, by: str) -> UpdateParams:
    """Claim the leave of a requested bot, once (fails if not requested or claimed)."""
    return {
        "Key": leave_key(bot_id),
        "UpdateExpression": "SET #at = :at, #by = :by",
        "ConditionExpression": "attribute_exists(#pk) AND attribute_not_exists(#at)",
        "ExpressionAttributeNames": {
            "#pk": schema.PARTITION_KEY,
            "#at": "leaving_at",
            "#by": "leaving_by",
        },
        "ExpressionAttributeValues": {":at": times.key_time(now), ":by": by},
    }


def leave_done_update(*, bot_id: str, chat_messages: int) -> UpdateParams:
    """Record how many chat messages went out before the bot left."""
    return {
        "Key": leave_key(bot_id),
        "UpdateExpression": "SET #chat = :chat",
        "ConditionExpression": "attribute_exists(#at)",
        "ExpressionAttributeNames": {"#chat": "chat_messages", "#at": "leaving_at"},
        "ExpressionAttributeValues": {":chat": chat_messages},
    }


def leave_release_update(*, bot_id: str) -> UpdateParams:
    """Give a leave claim back (its ``leave_call`` failed; the retry claims it again)."""
    return {
        "Key": leave_key(bot_id),
        "UpdateExpression": "REMOVE #at, #by",
        "ConditionExpression": "attribute_exists(#pk)",
        "ExpressionAttributeNames": {
            "#pk": schema.PARTITION_KEY,
            "#at": "leaving_at",
            "#by": "leaving_by",
        },
        "ExpressionAttributeValues": {},
    }
