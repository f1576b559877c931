"""Minutes to the user's own endpoint: a Standard Webhooks delivery, signed and retried.

Headers (https://www.standardwebhooks.com, signed by the ``standardwebhooks`` library):
``webhook-id`` (the idempotency key: ``minutes_<bot_id>``, the same on every attempt and
every retry of the job, so the receiver stores it once), ``webhook-timestamp`` and
``webhook-signature`` (``v1,<base64 HMAC-SHA256 of id.timestamp.body>``). The body::

    {"type": "minutes.ready", "timestamp": "...", "data": {"bot_id": ..., "minutes": {...},
     "generated_by": ..., "built_at": ..., "memory_key": ...}}

Attempts: up to ``attempts`` within one run, exponential backoff with full jitter,
re-signed each time (a fresh timestamp). 2xx is delivered; 408, 409, 425, 429, 5xx and
network errors are retried, then :class:`DeliveryFailedError` (the queue retries the job
later, then the dead-letter queue alarms); any other 4xx is the endpoint refusing this
message for good (:class:`DeliveryRefusedError`; not retried). The endpoint URL never
appears in logs with its query (it may carry a token).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

RETRYABLE_STATUSES: Final = frozenset({408, 409, 425, 429})
EVENT_TYPE: Final = "minutes.ready"


class DeliveryFailedError(RuntimeError):
    """Every attempt failed with something worth retrying later."""


class DeliveryRefusedError(RuntimeError):
    """The endpoint refused the message (a 4xx that retrying will not change)."""

    def __init__(self, status: int) -> None:
        """Keep the endpoint's status."""
        super().__init__(f"the endpoint refused the minutes ({status})")
        self.status = status


def message_id(bot_id: str) -> str:
    """The delivery's ``webhook-id``: one per bot, so a receiver can deduplicate."""
    return f"minutes_{bot_id}"


def redacted(url: str) -> str:
    """``url`` without query, fragment or credentials, for logs."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """Where and how minutes are delivered."""

    url: str
    secret: str  # ``whsec_<base64>`` or bare base64, as ``standardwebhooks`` accepts
    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    timeout: float = 10.0

    def deliver(
        self,
        bot_id: str,
        data: dict[str, Any],
        *,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> int:
        """POST the minutes until the endpoint takes them.

        Returns:
            The endpoint's 2xx status.

        Raises:
            DeliveryRefusedError: a 4xx other than the retryable ones.
            DeliveryFailedError: every attempt failed with a retryable answer or error.
        """
        signer = Webhook(self.secret)
        msg_id = message_id(bot_id)
        owned = client is None
        http = client or httpx.Client(timeout=self.timeout, trust_env=False)
        last = "no attempt"
        try:
            for attempt in range(self.attempts):
                if attempt:
                    sleep(random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt)))
                now = datetime.now(UTC)
                body = json.dumps(
                    {"type": EVENT_TYPE, "timestamp": now.isoformat(), "data": data},
                    separators=(",", ":"),
                    ensure_ascii=False,
                )
                headers = {
                    "content-type": "application/json",
                    "webhook-id": msg_id,
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": signer.sign(msg_id, now, body),
                }
                try:
                    answer = http.post(self.url, content=body.encode(), headers=headers)
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                    continue
                if 200 <= answer.status_code < 300:
                    return answer.status_code
                if answer.status_code < 500 and answer.status_code not in RETRYABLE_STATUSES:
                    raise DeliveryRefusedError(answer.status_code)
                last = f"HTTP {answer.status_code}"
        finally:
            if owned:
                http.close()
        raise DeliveryFailedError(
            f"minutes for {bot_id} not delivered to {redacted(self.url)} after "
            f"{self.attempts} attempts ({last})"
        )
