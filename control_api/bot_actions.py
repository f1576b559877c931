"""A bot's other operations: leave its meeting, read what was recorded about it.

Run in a worker thread (boto3 and httpx block); every failure is an
:class:`~control_api.errors.ApiError`.
"""

from __future__ import annotations

from typing import Any

from control_api.errors import ApiError
from control_api.models import Leaving
from control_api.runtime import (
    RECALL_MAX_WAIT_SECONDS,
    Runtime,
    aws_call,
    bot_records,
    secret_value,
)


def leave(runtime: Runtime, bot_id: str) -> Leaving:
    from cli.errors import CliError
    from cli.meeting_exit import Exit, leave_meeting
    from cli.recall_api import RecallClient, RetryPolicy, base_url

    state = aws_call(bot_records(runtime).state, bot_id)
    if state is None:
        raise ApiError(404, "unknown_bot", f"no bot {bot_id}")
    recorded = state.get("region")
    region = recorded if isinstance(recorded, str) else runtime.settings.recall_region
    key = secret_value(runtime.secrets.recall_key)
    try:
        with RecallClient(
            api_key=key,
            region=region,
            base=base_url(region, runtime.settings.recall_api_base),
            policy=RetryPolicy(max_attempts=3, max_total_wait=RECALL_MAX_WAIT_SECONDS),
            timeout=10.0,
            transport=runtime.recall_transport,
        ) as recall:
            how = leave_meeting(
                recall, bot_id, table=runtime.table, state=dict(state), reason="api"
            )
    except CliError as exc:
        raise ApiError(502, "recall_error", str(exc)) from None
    status = "leaving_after_minutes" if how is Exit.AFTER_MINUTES else "leaving"
    return Leaving(bot_id=bot_id, region=region, status=status)


def details(runtime: Runtime, bot_id: str) -> Any:
    details = aws_call(bot_records(runtime).details, bot_id)
    if details is None:
        raise ApiError(404, "unknown_bot", f"no bot {bot_id}")
    return details
