"""Recall.ai's API rules, shared by the relay's tools and the ``voicebot`` CLI.

Owns the facts and decisions, not the HTTP: the region base URLs, which answers are
retried (409, 429, 5xx; 507 is "out of ad-hoc bots"), how long to wait (``Retry-After`` in
seconds or as an HTTP date, else exponential backoff with jitter, as Recall's own sample
does; docs/recall-api.md), when to give up (bounded attempts and total wait), and how an
error answer reads on one line. Pure: no socket, no clock (``now`` is an argument), no
environment. The CLI's synchronous client and the relay's asynchronous one both loop on
:func:`plan_retry`, so the two cannot drift apart. The CLI may import this module; this
module imports nothing of the CLI's.
"""

from __future__ import annotations

import email.utils
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

#: Recall's regions; each is a separate deployment with its own keys and bots.
REGION_BASE_URLS: Final[Mapping[str, str]] = {
    "us-west-2": "https://us-west-2.recall.ai",
    "us-east-1": "https://us-east-1.recall.ai",
    "eu-central-1": "https://eu-central-1.recall.ai",
    "ap-northeast-1": "https://ap-northeast-1.recall.ai",
}
DEFAULT_REGION: Final = "us-west-2"

#: 409 conflict, 429 rate limit, 5xx load and 507 out of ad-hoc bots: Recall says retry.
RETRYABLE_STATUSES: Final = frozenset({409, 429, 500, 502, 503, 504, 507})
MAX_MESSAGE_CHARS: Final = 300


def region_base_url(region: str, override: str | None = None) -> str:
    """The API base URL for ``region``; ``override`` (``{region}`` expanded) wins.

    Raises:
        ValueError: the region is not one of Recall's (the message lists them).
    """
    if region not in REGION_BASE_URLS:
        known = ", ".join(REGION_BASE_URLS)
        raise ValueError(f"unknown Recall region {region!r}; use one of: {known}")
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


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """Wait ``delay`` seconds and try again, or (``delay is None``) give up, saying ``why``."""

    delay: float | None
    why: str = ""


def plan_retry(
    policy: RetryPolicy,
    *,
    attempt: int,
    waited: float,
    retry_after: str | None,
    now: datetime,
    rand: Callable[[], float] = random.random,
) -> RetryPlan:
    """Decide what follows failed attempt ``attempt`` (1-based) of a retryable request.

    Args:
        policy: the bounds.
        attempt: the attempt that just failed.
        waited: seconds already spent waiting between attempts.
        retry_after: the answer's ``Retry-After`` header (``None`` for no answer).
        now: the current time, for an HTTP-date ``Retry-After``.
        rand: jitter source (tests pin it).
    """
    delay = retry_after_seconds(retry_after, now)
    if delay is None:
        delay = policy.backoff(attempt, rand)
    if attempt >= policy.max_attempts:
        return RetryPlan(None, f"gave up after {attempt} attempts")
    if waited + delay > policy.max_total_wait:
        return RetryPlan(
            None,
            f"asked to wait {delay:.0f} s more; gave up after {attempt} attempts "
            f"and {waited:.0f} s",
        )
    return RetryPlan(delay)


def recall_message(body: bytes, reason_phrase: str = "") -> str:
    """Recall's explanation from an error body, on one line and bounded in length.

    Recall answers ``{"detail": "..."}`` or field errors like ``{"meeting_url": ["..."]}``.
    """
    parsed: Any
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = body.decode("utf-8", "replace")
    if isinstance(parsed, dict):
        if isinstance(parsed.get("detail"), str):
            text = parsed["detail"]
        else:
            parts = []
            for key, value in parsed.items():
                if isinstance(value, list):
                    value = " ".join(str(v) for v in value)
                elif isinstance(value, dict):
                    value = json.dumps(value, separators=(",", ":"))
                parts.append(f"{key}: {value}")
            text = "; ".join(parts)
    elif isinstance(parsed, list):
        text = "; ".join(str(v) for v in parsed)
    else:
        text = str(parsed)
    text = " ".join(text.split()) or reason_phrase or "no details"
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text


def describe_failure(status: int, message: str, region: str) -> str:
    """The one line a user (or the model) reads for a non-retryable Recall answer."""
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
