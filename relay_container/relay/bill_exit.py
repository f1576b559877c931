"""Leaving when the bill runs out: the session's meter, and the bot's leave request.

``relay.usage_meter`` decides (sans I/O) when a limit is reached and the goodbye is said;
this module is the shell's part. :func:`meter_for` builds a session's meter from its setup
and what it spent before (a resume), and :func:`leave_meeting` makes the session's bot
leave its meeting through the relay's one leave path (``MeetingExit``: Recall's
``leave_call`` now, or the minutes in the chat first for a bot created with
``minutes_to_chat``), bounded, at most once per session (the meter says ``leave`` once),
and logs and counts the limit by name.
A session without a bot (an SDK client) or a relay without ``RECALL_API_KEY`` only ends.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from relay.config import RelayConfig
from relay.metrics import Metrics
from relay.recall_retry import region_base_url
from relay.session_setup import SessionSetup
from relay.tools.errors import ToolFailure
from relay.tools.meeting_exit import MeetingExit
from relay.tools.recall import RecallBotApi
from relay.usage_meter import Limit, Spent, UsageMeter

logger = logging.getLogger(__name__)

#: Bound of the leave request (its retries included).
LEAVE_TIMEOUT_SECONDS: Final = 10.0
#: How the client's socket closes after the bot left (a normal closure: do not reconnect).
CLOSE_CODE: Final = 1000
#: The counter of each limit (CloudWatch metric names).
COUNTER_OF: Final = {
    Limit.MINUTES.value: "BillLimitMinutes",
    Limit.TOKENS.value: "BillLimitTokens",
    Limit.COST.value: "BillLimitCost",
}


def bill_exit(config: RelayConfig) -> MeetingExit | None:
    """How bots leave when their bill runs out (None: no RECALL_API_KEY; ``RelayConfig``
    already checked the region)."""
    if not config.recall_api_key:
        return None
    base = region_base_url(config.recall_region, config.recall_api_base)
    recall = RecallBotApi(api_key=config.recall_api_key, region=config.recall_region, base=base)
    return MeetingExit(recall, config.table_name)


def meter_for(setup: SessionSetup, model: str, spent: Spent, now: float) -> UsageMeter | None:
    """The session's meter (None: its bill sets no limit)."""
    return UsageMeter(setup.bill, model, spent=spent, now=now) if setup.bill.any else None


def close_reason(limit: str) -> str:
    """The close reason the client gets (at most 123 bytes)."""
    return f"the session reached its limit ({limit}); the bot left the meeting"


async def leave_meeting(
    meeting_exit: MeetingExit | None,
    bot_id: str | None,
    limit: str,
    *,
    session_id: str,
    metrics: Metrics,
    timeout: float = LEAVE_TIMEOUT_SECONDS,  # noqa: ASYNC109 - a bound that answers, never raises
) -> bool:
    """Ask Recall to take ``bot_id`` out of its meeting; True when Recall agreed.
    Never raises: a failure is logged (Recall's own ``automatic_leave`` cap remains)."""
    metrics.count(COUNTER_OF.get(limit, "BillLimitMinutes"))
    fields = {"session_id": session_id, "bot_id": bot_id, "limit": limit}
    if meeting_exit is None or bot_id is None:
        logger.warning("bill limit reached; no bot to take out of a meeting", extra=fields)
        return False
    try:
        async with asyncio.timeout(timeout):
            how = await meeting_exit.leave(bot_id, session_id, "usage_limit")
    except (ToolFailure, TimeoutError) as error:
        logger.warning(
            "bill limit reached; the bot's leave request failed",
            extra={**fields, "error": str(error) or type(error).__name__},
        )
        return False
    logger.info(
        "bill limit reached; the bot is leaving its meeting", extra={**fields, "status": str(how)}
    )
    return True
