"""``leave_meeting``: how ``voicebot bot leave`` and the control API's leave make a bot leave.

One function for both (the control API runs the CLI's code). For a bot created with
``minutes_to_chat`` (``storage.minutes.SessionBot``, on the bot's session) it writes the
bot's leave request (``storage.leaving``) instead of calling Recall: the minutes
function then builds the minutes, posts them in the meeting chat and makes the bot leave,
within a bound (docs/minutes.md). Any other bot, or a table that cannot be read or
written, leaves at once through Recall's ``leave_call``: a bot always leaves. The relay's
``leave_meeting`` tool does the same (``relay.tools.meeting_exit``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from cli.stack import AWS_FAILURES
from storage import leaving, minutes

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

    from cli.recall_api import RecallClient


class Exit(StrEnum):
    """How the bot is leaving."""

    LEFT = "left"  # Recall was asked to take the bot out now
    AFTER_MINUTES = "after_minutes"  # the minutes function posts the minutes, then leaves


def leave_meeting(
    recall: RecallClient,
    bot_id: str,
    *,
    table: Table | None,
    state: dict[str, Any] | None,
    reason: str,
    now: datetime | None = None,
) -> Exit:
    """Make ``bot_id`` leave (``state``: its ``STATE`` item, if read; ``reason``: who asks)."""
    session_id = (state or {}).get("session_id")
    if table is not None and isinstance(session_id, str) and session_id:
        try:
            if _request(table, bot_id, session_id, reason, now or datetime.now(UTC)):
                return Exit.AFTER_MINUTES
        except AWS_FAILURES:
            pass  # the table is unreachable: leave now rather than not at all
    recall.leave_call(bot_id)
    return Exit.LEFT


def _request(table: Table, bot_id: str, session_id: str, reason: str, now: datetime) -> bool:
    from botocore.exceptions import ClientError

    pointer = table.get_item(Key=minutes.session_bot_key(session_id), ConsistentRead=True).get(
        "Item"
    )
    if not pointer or pointer.get("minutes_to_chat") is not True or pointer.get("bot_id") != bot_id:
        return False
    put: dict[str, Any] = leaving.leave_request_put(bot_id=bot_id, reason=reason, now=now)
    try:
        table.put_item(**put)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
    return True  # asked now, or already asked: either way the minutes function leaves
