"""Recall.ai's bot API as the CLI uses it: region base URLs, retries, one-line errors.

Owns the HTTP conversation with ``https://<region>.recall.ai/api/v1/`` (``Authorization:
<key>``, no ``Bearer``). Retries 409, 429 and 5xx (507: out of ad-hoc bots) with a bounded
number of attempts and a bounded total wait, honouring ``Retry-After`` (seconds or an
HTTP date) and otherwise backing off exponentially with jitter, as Recall's own sample does;
those rules live in ``relay.recall_retry``, shared with the relay's tools. A connection that
could not be opened is retried too; a request that may have reached Recall is not, so a
bot is never created twice by us. Other answers become a ``RecallApiError`` with Recall's
own message. It never logs or echoes the key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from cli.errors import ConfigError, RecallApiError
from relay.recall_retry import (
    MAX_MESSAGE_CHARS,
    REGION_BASE_URLS,
    RETRYABLE_STATUSES,
    RetryPolicy,
    describe_failure,
    plan_retry,
    region_base_url,
    retry_after_seconds,
)
from relay.recall_retry import recall_message as _recall_message

__all__ = [
    "MAX_MESSAGE_CHARS",
    "REGION_BASE_URLS",
    "RETRYABLE_STATUSES",
    "RecallClient",
    "RetryPolicy",
    "base_url",
    "describe_failure",
    "recall_message",
    "retry_after_seconds",
]


def base_url(region: str, override: str | None = None) -> str:
    """The API base URL for ``region``; ``override`` (``{region}`` expanded) wins.

    Raises:
        ConfigError: the region is not one of Recall's.
    """
    try:
        return region_base_url(region, override)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def recall_message(response: httpx.Response) -> str:
    """Recall's explanation from an error answer, on one line and bounded in length."""
    return _recall_message(response.content, response.reason_phrase)


#: Called before each wait: status (None for a connection failure), delay, next attempt, max.
RetryObserver = Callable[[int | None, float, int, int], None]


class RecallClient:
    """A small synchronous client for the endpoints the CLI needs."""

    def __init__(
        self,
        *,
        api_key: str,
        region: str,
        base: str,
        policy: RetryPolicy | None = None,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: RetryObserver | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Bind the client to one region's base URL and key (never logged)."""
        self.region = region
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        self._on_retry = on_retry
        self._http = httpx.Client(
            base_url=base,
            headers={"Authorization": api_key, "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> RecallClient:
        """Use as a context manager that closes the pool."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the pool."""
        self.close()

    # Endpoints

    def create_bot(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /api/v1/bot/``; returns Recall's bot (its ``id`` is the bot id)."""
        bot = self._request("POST", "/api/v1/bot/", body=dict(request))
        if not isinstance(bot, dict) or not isinstance(bot.get("id"), str):
            raise RecallApiError("Recall created a bot but its answer has no bot id")
        return bot

    def leave_call(self, bot_id: str) -> dict[str, Any]:
        """``POST /api/v1/bot/{id}/leave_call/``: the bot leaves its meeting."""
        answer = self._request("POST", f"/api/v1/bot/{bot_id}/leave_call/")
        return answer if isinstance(answer, dict) else {}

    # Private

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        policy = self._policy
        waited = 0.0
        attempt = 1
        while True:
            response: httpx.Response | None
            try:
                response = self._http.request(method, path, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # The request never left: safe to retry even for a create.
                response, failure = None, f"could not connect to Recall ({exc})"
            except httpx.TransportError as exc:
                raise RecallApiError(
                    f"Recall did not answer ({type(exc).__name__}); the request may have "
                    "been received, so check before retrying"
                ) from None
            status = None if response is None else response.status_code
            if response is not None:
                if response.is_success:
                    return response.json() if response.content else {}
                message = recall_message(response)
                if response.status_code not in RETRYABLE_STATUSES:
                    raise RecallApiError(
                        describe_failure(response.status_code, message, self.region),
                        status_code=response.status_code,
                    )
                failure = f"Recall answered {response.status_code}: {message}"
            # Retryable: the shared rules decide the delay, or that we give up.
            plan = plan_retry(
                policy,
                attempt=attempt,
                waited=waited,
                retry_after=None if response is None else response.headers.get("Retry-After"),
                now=datetime.now(UTC),
            )
            if plan.delay is None:
                raise RecallApiError(f"{failure} ({plan.why})", status_code=status)
            delay = plan.delay
            if self._on_retry is not None:
                self._on_retry(status, delay, attempt + 1, policy.max_attempts)
            self._sleep(delay)
            waited += delay
            attempt += 1
