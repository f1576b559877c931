"""RecallBots: the minutes function's two calls to Recall, for a bot leaving on purpose.

``POST /api/v1/bot/{id}/send_chat_message/`` (``{"to": "everyone", "message": …}``) and
``POST /api/v1/bot/{id}/leave_call/`` (no body), with ``Authorization: <key>`` (Recall's
form; no ``Bearer``), on the bot's own region's host. Blocking httpx (the function is
synchronous), short timeouts, a few attempts on 429 and 5xx with a bounded wait; a
connection that may have reached Recall is not repeated for a chat message (it would post
twice) but is for ``leave_call`` (leaving twice is harmless). Failures raise
:class:`RecallCallError` with the status only: the key is never logged or echoed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, Final

import httpx

#: Recall's regions (docs/recall-api.md); the API base of each.
REGION_BASE_URLS: Final = {
    region: f"https://{region}.recall.ai"
    for region in ("us-west-2", "us-east-1", "eu-central-1", "ap-northeast-1")
}
RETRYABLE: Final = frozenset({409, 429, 500, 502, 503, 504, 507})
_BOT_ID: Final = re.compile(r"^[A-Za-z0-9-]{1,64}$")


class RecallCallError(RuntimeError):
    """Recall refused or did not answer."""


class RecallBots:
    """Chat and leave for bots in any region, with one key."""

    def __init__(
        self,
        api_key: str,
        *,
        base_override: str | None = None,
        attempts: int = 3,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``base_override`` (``{region}`` expanded) replaces Recall's hosts (tests, dev)."""
        self._base_override = base_override
        self._attempts = attempts
        self._sleep = sleep
        self._http = httpx.Client(
            headers={"Authorization": api_key, "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            trust_env=False,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def send_chat_message(self, bot_id: str, region: str, message: str) -> None:
        """Post ``message`` to everyone in the bot's meeting chat."""
        body = {"to": "everyone", "message": message}
        self._post(bot_id, region, "send_chat_message", body, repeat_unsure=False)

    def leave_call(self, bot_id: str, region: str) -> None:
        """The bot leaves its meeting (irreversible)."""
        self._post(bot_id, region, "leave_call", None, repeat_unsure=True)

    def _base(self, region: str) -> str:
        if region not in REGION_BASE_URLS:
            raise RecallCallError(f"unknown Recall region {region!r}")
        if self._base_override:
            return self._base_override.replace("{region}", region).rstrip("/")
        return REGION_BASE_URLS[region]

    def _post(
        self,
        bot_id: str,
        region: str,
        action: str,
        body: dict[str, Any] | None,
        *,
        repeat_unsure: bool,
    ) -> None:
        if not _BOT_ID.fullmatch(bot_id):
            raise RecallCallError("not a Recall bot id")
        url = f"{self._base(region)}/api/v1/bot/{bot_id}/{action}/"
        last = "no attempt"
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(min(0.25 * 2**attempt, 2.0))
            try:
                answer = self._http.post(url, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                last = "could not connect"
                continue
            except httpx.TransportError as exc:
                if not repeat_unsure:
                    raise RecallCallError(f"{action}: no answer ({type(exc).__name__})") from None
                last = type(exc).__name__
                continue
            if answer.is_success:
                return
            last = f"HTTP {answer.status_code}"
            if answer.status_code not in RETRYABLE:
                break
        raise RecallCallError(f"{action}: Recall answered {last}")
