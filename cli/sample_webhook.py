"""A signed sample Recall delivery, to check a webhook endpoint end to end.

Owns the sample ``bot.in_call_recording`` body (Recall v1.11 shape, docs/recall.md)
and its Standard Webhooks signature (``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<base64>``) made with the ``standardwebhooks`` library from a
``whsec_`` secret. Never prints the secret or the signature.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from cli.errors import ConfigError, WebhookSendError

SECRET_PREFIX = "whsec_"


def check_secret(secret: str) -> Webhook:
    """A signer for ``secret``.

    Raises:
        ConfigError: not a ``whsec_<base64>`` secret.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise ConfigError("the webhook secret must look like whsec_<base64>")
    try:
        return Webhook(secret)
    except (ValueError, EmptyWebhookSecretError) as exc:  # binascii.Error is a ValueError
        raise ConfigError(
            f"the webhook secret is not valid base64 after whsec_ ({type(exc).__name__})"
        ) from None


@dataclass(frozen=True, slots=True)
class SampleDelivery:
    """One signed delivery: what was sent and how."""

    webhook_id: str
    bot_id: str
    body: bytes
    headers: dict[str, str]


def sample_body(bot_id: str, session_id: str, now: datetime) -> bytes:
    """A ``bot.in_call_recording`` status-change event for ``bot_id``."""
    updated_at = now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    event = {
        "event": "bot.in_call_recording",
        "data": {
            "data": {"code": "in_call_recording", "sub_code": None, "updated_at": updated_at},
            "bot": {"id": bot_id, "metadata": {"session_id": session_id}},
        },
    }
    return json.dumps(event, separators=(",", ":")).encode()


def signed_sample(
    secret: str, now: datetime, bot_id: str | None = None, session_id: str | None = None
) -> SampleDelivery:
    """A sample delivery signed with ``secret`` at ``now``."""
    signer = check_secret(secret)
    bot_id = bot_id or str(uuid.uuid4())
    webhook_id = f"msg_{uuid.uuid4().hex}"
    body = sample_body(bot_id, session_id or f"sample-{uuid.uuid4().hex[:12]}", now)
    signature = signer.sign(webhook_id, now.astimezone(UTC), body.decode())
    headers = {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    return SampleDelivery(webhook_id=webhook_id, bot_id=bot_id, body=body, headers=headers)


def send(url: str, delivery: SampleDelivery, timeout: float = 15.0) -> int:
    """POST the delivery; return the HTTP status.

    Raises:
        WebhookSendError: unreachable, or answered with a non-2xx status.
    """
    try:
        response = httpx.post(url, content=delivery.body, headers=delivery.headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise WebhookSendError(f"could not deliver to {url} ({type(exc).__name__})") from None
    if not response.is_success:
        detail = " ".join(response.text.split())[:200]
        raise WebhookSendError(f"{url} answered {response.status_code}: {detail or 'no body'}")
    return response.status_code
