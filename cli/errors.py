"""The CLI's one error hierarchy: every failure a user can cause or meet, with its exit code.

``main`` prints ``error: <message>`` on one line and exits with ``exit_code``; nothing below
the command boundary prints a traceback for these. Messages never carry a secret or token.
"""

from __future__ import annotations

from typing import ClassVar


class CliError(Exception):
    """A failure shown to the user as one line; ``str(error)`` is that line."""

    exit_code: ClassVar[int] = 1


class ConfigError(CliError):
    """A missing or invalid setting (key, secret, region, stack output)."""

    exit_code = 2


class RecallApiError(CliError):
    """Recall answered with an error, or could not be reached."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class AwsError(CliError):
    """CloudFormation, Secrets Manager or DynamoDB failed (credentials, missing stack, table)."""


class WebhookSendError(CliError):
    """The sample webhook was not accepted by the receiving endpoint."""


class LocalStackError(CliError):
    """``voicebot dev`` could not start or keep running one of its processes."""
