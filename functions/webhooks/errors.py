"""Every error the webhook receiver answers with, each carrying its HTTP wire form.

The FastAPI exception handler in ``app.py`` maps them once; nothing below it picks a
status code. Messages are safe to return to the caller and to log: they never contain a
secret, a signature or the body.
"""

from __future__ import annotations

from typing import ClassVar


class WebhookError(Exception):
    """Base of the receiver's errors: an HTTP status and a stable machine-readable code."""

    status_code: ClassVar[int] = 500
    error_code: ClassVar[str] = "internal_error"
    #: The metric outcome this answer is counted under (see ``telemetry.Outcome``).
    outcome: ClassVar[str] = "failed"

    def __init__(self, message: str) -> None:
        """Keep ``message`` as the human-readable explanation returned to the caller."""
        super().__init__(message)
        self.message = message


class SignatureError(WebhookError):
    """Missing, malformed, stale, future-dated or non-matching signature headers (401)."""

    status_code = 401
    error_code = "invalid_signature"
    outcome = "rejected"


class PayloadTooLargeError(WebhookError):
    """The body (declared or actually read) is larger than the limit (413)."""

    status_code = 413
    error_code = "payload_too_large"
    outcome = "too_large"


class NotConfiguredError(WebhookError):
    """No signing secret (or no table) is configured: fail closed, Svix retries (503)."""

    status_code = 503
    error_code = "not_configured"
    outcome = "not_configured"


class ConfigError(NotConfiguredError):
    """The environment is invalid; the message lists every problem at once (503)."""

    error_code = "invalid_configuration"


class PayloadError(WebhookError):
    """A verified body we cannot understand. Never answered: stored raw and acknowledged."""

    status_code = 200
    error_code = "unparseable_payload"
    outcome = "unparseable"


class StoreUnavailableError(WebhookError):
    """DynamoDB is unreachable, throttling or failing transiently: Recall should retry (503)."""

    status_code = 503
    error_code = "store_unavailable"
    outcome = "store_failed"


class StoreError(WebhookError):
    """DynamoDB refused the write for a non-transient reason (missing table, access) (500)."""

    status_code = 500
    error_code = "store_error"
    outcome = "store_failed"
