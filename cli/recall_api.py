"""Recall.ai's bot API as the CLI uses it: region base URLs, retries, one-line errors.

Owns the HTTP conversation with ``https://<region>.recall.ai/api/v1/`` (``Authorization:
<key>``, no ``Bearer``). Retries 409, 429 and 5xx (507: out of ad-hoc bots) with a bounded
number of attempts and a bounded total wait, honouring ``Retry-After`` (seconds or an
HTTP date) and otherwise backing off exponentially with jitter, as Recall's own sample does
(reference/recall.md §1). A connection that could not be opened is retried too; a request
that may have reached Recall is not, so a bot is never created twice by us. Other answers
become a ``RecallApiError`` with Recall's own message. It never logs or echoes the key.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from cli.errors import ConfigError, RecallApiError

#: Recall's regions; each is a separate deployment with its own keys and bots.
REGION_BASE_URLS: Final[Mapping[str, str]] = {
    "us-west-2": "https://us-west-2.recall.ai",
    "us-east-1": "https://us-east-1.recall.ai",
    "eu-central-1": "https://eu-central-1.recall.ai",
    "ap-northeast-1": "https://ap-northeast-1.recall.ai",
}

#: 409 conflict, 429 rate limit, 5xx load and 507 out of ad-hoc bots: Recall says retry.
RETRYABLE_STATUSES: Final = frozenset({409, 429, 500, 502, 503, 504, 507})
MAX_MESSAGE_CHARS: Final = 300


def base_url(region: str, override: str | None = None) -> str:
    """The API base URL for ``region``; ``override`` (``{region}`` expanded) wins.

    Raises:
        ConfigError: the region is not one of Recall's.
    """
    if region not in REGION_BASE_URLS:
        known = ", ".join(REGION_BASE_URLS)
        raise ConfigError(f"unknown Recall region {region!r}; use one of: {known}")
    if override:
        return override.replace("{region}", region).rstrip("/")
    return REGION_BASE_URLS[region]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to keep trying: attempts and total wait are both bounded."""

    max_attempts: int = 4
    max_total_wait: float = 90.0
    base_delay: float = 0.5
    max_delay: float = 8.0

    def backoff(self, retry_number: int, rand: Callable[[], float] = random.random) -> float:
        """Exponential backoff with full jitter for the ``retry_number``-th retry (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (retry_number - 1))
        return ceiling * (0.5 + rand() / 2)


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Parse ``Retry-After`` (RFC 9110 §10.2.3): delay seconds or an HTTP date.

    Returns ``None`` when absent or unparseable, so the caller falls back to backoff.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def recall_message(response: httpx.Response) -> str:
    """Recall's explanation from an error body, on one line and bounded in length.

    Recall answers ``{"detail": "..."}`` or field errors like ``{"meeting_url": ["..."]}``.
    """
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        if isinstance(body.get("detail"), str):
            text = body["detail"]
        else:
            parts = []
            for key, value in body.items():
                if isinstance(value, list):
                    value = " ".join(str(v) for v in value)
                elif isinstance(value, dict):
                    value = json.dumps(value, separators=(",", ":"))
                parts.append(f"{key}: {value}")
            text = "; ".join(parts)
    elif isinstance(body, list):
        text = "; ".join(str(v) for v in body)
    else:
        text = str(body)
    text = " ".join(text.split()) or response.reason_phrase or "no details"
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text


def describe_failure(status: int, message: str, region: str) -> str:
    """The one line a user reads for a non-retryable Recall answer."""
    if status == 400:
        return f"Recall rejected the request (400): {message}"
    if status == 401:
        return (
            f"Recall refused the API key (401): {message.rstrip('.')}. Check RECALL_API_KEY "
            f"and that the key belongs to region {region} (keys are per region)"
        )
    if status == 402:
        return f"Recall: insufficient credit (402): {message}"
    if status == 403:
        return f"Recall blocked the request (403): {message}"
    if status == 404:
        return f"Recall has no such bot in region {region} (404): {message}"
    return f"Recall answered {status}: {message}"


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
            # Retryable: decide the delay, then give up if it would break a bound.
            delay: float | None = None
            if response is not None:
                delay = retry_after_seconds(response.headers.get("Retry-After"), datetime.now(UTC))
            if delay is None:
                delay = policy.backoff(attempt)
            if attempt >= policy.max_attempts:
                raise RecallApiError(
                    f"{failure} (gave up after {attempt} attempts)", status_code=status
                )
            if waited + delay > policy.max_total_wait:
                raise RecallApiError(
                    f"{failure} (asked to wait {delay:.0f} s more; gave up after {attempt} "
                    f"attempts and {waited:.0f} s)",
                    status_code=status,
                )
            if self._on_retry is not None:
                self._on_retry(status, delay, attempt + 1, policy.max_attempts)
            self._sleep(delay)
            waited += delay
            attempt += 1
