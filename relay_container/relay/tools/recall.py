"""RecallBotApi: the relay's asynchronous client for the two bot calls its tools make.

``POST /api/v1/bot/{id}/leave_call/`` and ``POST /api/v1/bot/{id}/send_chat_message/``
(``{"to": "everyone", "message": …}``; docs/recall-api.md), with ``Authorization: <key>``
(no ``Bearer``). Retries follow ``relay.recall_retry``, the rules the CLI uses: 409, 429
and 5xx are retried, ``Retry-After`` honoured, attempts and total wait bounded, a request
that may have reached Recall is not repeated. A failure becomes a
:class:`~relay.tools.errors.ToolFailure` whose message the model can repeat; the key is
never logged or echoed. It refuses to build a URL from anything but a bot id it checked.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from relay.recall_retry import (
    RETRYABLE_STATUSES,
    RetryPolicy,
    describe_failure,
    plan_retry,
    recall_message,
)
from relay.tools.errors import ToolFailure

#: A tool runs inside a few seconds: a 30 s ``Retry-After`` means "not now", not "wait".
TOOL_RETRY_POLICY: Final = RetryPolicy(max_attempts=3, max_total_wait=5.0, max_delay=2.0)
#: Recall's bot ids are UUIDs; anything else never reaches a URL path.
_BOT_ID: Final = re.compile(r"^[A-Za-z0-9-]{1,64}$")
#: Recall's own limit (Google Meet shows at most 500 characters).
MAX_CHAT_MESSAGE_CHARS: Final = 4096


class RecallBotApi:
    """Leave a call or post in the meeting chat, for one Recall region and key."""

    def __init__(
        self,
        *,
        api_key: str,
        region: str,
        base: str,
        policy: RetryPolicy = TOOL_RETRY_POLICY,
        timeout: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Bind to ``base`` (see ``relay.recall_retry.region_base_url``) with ``api_key``."""
        self.region = region
        self._policy = policy
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=base,
            headers={"Authorization": api_key, "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            # No proxy or CA settings from the environment: config is read in config.py.
            trust_env=False,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def leave_call(self, bot_id: str) -> None:
        """The bot leaves its meeting."""
        await self._post(f"/api/v1/bot/{_checked(bot_id)}/leave_call/", None)

    async def send_chat_message(self, bot_id: str, message: str) -> None:
        """Post ``message`` in the meeting chat, to everyone."""
        if not message.strip():
            raise ToolFailure("the chat message is empty")
        if len(message) > MAX_CHAT_MESSAGE_CHARS:
            raise ToolFailure(
                f"the chat message is longer than {MAX_CHAT_MESSAGE_CHARS} characters"
            )
        await self._post(
            f"/api/v1/bot/{_checked(bot_id)}/send_chat_message/",
            {"to": "everyone", "message": message},
        )

    # Private

    async def _post(self, path: str, body: dict[str, Any] | None) -> None:
        attempt, waited = 1, 0.0
        while True:
            response: httpx.Response | None
            try:
                response = await self._http.post(path, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                response, failure = None, "could not connect to Recall"
            except httpx.TransportError as exc:
                # It may have arrived: repeating could post the message twice.
                raise ToolFailure(
                    f"Recall did not answer ({type(exc).__name__}); it may or may not have "
                    "been done"
                ) from None
            status = None if response is None else response.status_code
            if response is not None:
                if response.is_success:
                    return
                message = recall_message(response.content, response.reason_phrase)
                if response.status_code not in RETRYABLE_STATUSES:
                    raise ToolFailure(describe_failure(response.status_code, message, self.region))
                failure = f"Recall answered {status}: {message}"
            plan = plan_retry(
                self._policy,
                attempt=attempt,
                waited=waited,
                retry_after=None if response is None else response.headers.get("Retry-After"),
                now=datetime.now(UTC),
            )
            if plan.delay is None:
                raise ToolFailure(f"{failure} ({plan.why})")
            await self._sleep(plan.delay)
            waited += plan.delay
            attempt += 1


def _checked(bot_id: str) -> str:
    if not _BOT_ID.match(bot_id):
        raise ToolFailure("this session has no valid bot id")
    return bot_id
