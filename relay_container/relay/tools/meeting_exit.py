"""MeetingExit: the relay's one way to make a session's bot leave its meeting on purpose.

Every deliberate leave in the relay goes through :meth:`MeetingExit.leave` (the
``leave_meeting`` tool, and a usage limit reached: ``relay.bill_exit``). For a bot created
with ``minutes_to_chat`` (``SESSION#<id>`` / ``BOT``, ``storage.minutes.SessionBot``) it
does not call Recall: it writes the bot's leave request (``storage.leaving``), once, and
the minutes function builds the minutes, posts them in the meeting chat and then makes
the bot leave, within a bound (docs/minutes.md). For any other bot, or when the table
cannot be read or written, it calls Recall's ``leave_call`` at once, so a bot always
leaves. boto3 runs in a worker thread with short timeouts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from relay.tools.recall import RecallBotApi
from storage import leaving, minutes

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

_BOTO_CONFIG: Final = Config(
    connect_timeout=2, read_timeout=3, retries={"max_attempts": 2, "mode": "standard"}
)


class Exit(StrEnum):
    """How the bot is leaving."""

    LEFT = "left"  # Recall was asked to take the bot out now
    AFTER_MINUTES = "after_minutes"  # the minutes function posts the minutes, then leaves


class MeetingExit:
    """Leave for one Recall key, with the table that says which bots want chat minutes."""

    def __init__(
        self,
        recall: RecallBotApi,
        table_name: str | None = None,
        *,
        endpoint_url: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``table_name`` ``None``: every leave is immediate (no minutes in the chat)."""
        self._recall = recall
        self._clock = clock
        self._table: Table | None = None
        if table_name:
            resource = boto3.resource("dynamodb", endpoint_url=endpoint_url, config=_BOTO_CONFIG)
            self._table = resource.Table(table_name)

    async def aclose(self) -> None:
        """Close the Recall client's connections."""
        await self._recall.aclose()

    async def leave(self, bot_id: str, session_id: str, reason: str) -> Exit:
        """Make ``bot_id`` (serving ``session_id``) leave; ``reason`` is a ``LEAVE_REASONS``.

        Raises:
            ToolFailure: Recall refused or failed (an immediate leave only).
        """
        if self._table is not None:
            try:
                if await asyncio.to_thread(self._request, bot_id, session_id, reason):
                    return Exit.AFTER_MINUTES
            except (BotoCoreError, ClientError):
                pass  # the table is unreachable: leave now rather than not at all
        await self._recall.leave_call(bot_id)
        return Exit.LEFT

    def _request(self, bot_id: str, session_id: str, reason: str) -> bool:
        """Write the leave request if the bot wants chat minutes; whether it does."""
        assert self._table is not None
        pointer = self._table.get_item(
            Key=minutes.session_bot_key(session_id), ConsistentRead=True
        ).get("Item")
        if not pointer or pointer.get("minutes_to_chat") is not True:
            return False
        if pointer.get("bot_id") != bot_id:
            return False
        put: dict[str, Any] = leaving.leave_request_put(
            bot_id=bot_id, reason=reason, now=self._clock()
        )
        try:
            self._table.put_item(**put)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
        return True  # asked now, or already asked: either way the minutes function leaves
