"""The minutes function's configuration: the only module here that reads the environment.

``Settings.from_env(environ)`` parses every variable in :data:`ENV_VARS` and reports all
problems at once (:class:`ConfigError`). Secrets come inline outside AWS
(``OPENAI_API_KEY``, ``MINUTES_WEBHOOK_SECRET``: ``make dev`` and tests) or by ARN from
Secrets Manager on AWS, read once per cold start by :func:`read_secret`. Secret values
are never logged or put in an error message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

#: Every variable :meth:`Settings.from_env` reads (the infra contract test compares them).
ENV_VARS: Final[frozenset[str]] = frozenset(
    {
        "TABLE_NAME",
        "JOB_QUEUE_URL",
        "OPENAI_API_KEY",
        "OPENAI_API_KEY_SECRET_ARN",
        "OPENAI_BASE_URL",
        "MINUTES_MODEL",
        "MINUTES_WEBHOOK_URL",
        "MINUTES_WEBHOOK_SECRET",
        "MINUTES_WEBHOOK_SECRET_ARN",
        "SESSION_END_GRACE_SECONDS",
        "JOB_LEASE_SECONDS",
        "LOG_LEVEL",
        "MINUTES_TO_CHAT",
        "LEAVE_BOUND_SECONDS",
        "RECALL_API_KEY",
        "RECALL_API_KEY_SECRET_ARN",
        "RECALL_REGION",
        "RECALL_API_BASE",
    }
)
#: Read only outside AWS; the deployed function gets ARNs instead.
LOCAL_ONLY_ENV_VARS: Final[frozenset[str]] = frozenset(
    {
        "OPENAI_API_KEY",
        "MINUTES_WEBHOOK_SECRET",
        "OPENAI_BASE_URL",
        "RECALL_API_KEY",
        "RECALL_API_BASE",
    }
)
DEFAULT_MODEL: Final = "gpt-5-mini"
LOG_LEVELS: Final = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})


class ConfigError(ValueError):
    """The environment is invalid; the message lists every problem."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What the minutes function needs, parsed once; tests construct it directly."""

    table_name: str
    job_queue_url: str | None = None
    openai_api_key: str | None = field(default=None, repr=False)
    openai_api_key_secret_arn: str | None = None
    openai_base_url: str | None = None
    model: str = DEFAULT_MODEL
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_secret_arn: str | None = None
    grace_seconds: int = 120
    lease_seconds: int = 300
    log_level: str = "INFO"
    #: The stack lets bots post their minutes in the meeting chat before leaving.
    minutes_to_chat: bool = False
    #: A leaving bot waits at most this long for its minutes.
    leave_bound_seconds: int = 60
    recall_api_key: str | None = field(default=None, repr=False)
    recall_api_key_secret_arn: str | None = None
    recall_region: str = "us-west-2"
    recall_api_base: str | None = None

    @property
    def leave_deadline_seconds(self) -> int:
        """When the deadline message makes a leaving bot leave if no job has (after the bound)."""
        return self.leave_bound_seconds + 30

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Parse ``environ`` (empty values count as unset).

        Raises:
            ConfigError: every problem found, in one message.
        """

        def get(name: str) -> str | None:
            value = environ.get(name, "").strip()
            return value or None

        problems: list[str] = []
        table_name = get("TABLE_NAME")
        if table_name is None:
            problems.append("TABLE_NAME is not set")

        def seconds(name: str, default: int, low: int, high: int) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                value = low - 1
            if not low <= value <= high:
                problems.append(f"{name} must be a whole number of seconds in {low}..{high}")
                return default
            return value

        grace = seconds("SESSION_END_GRACE_SECONDS", 120, 0, 900)
        lease = seconds("JOB_LEASE_SECONDS", 300, 30, 3600)
        # Below the function's timeout (3 min), with room for the chat and the leave.
        leave_bound = seconds("LEAVE_BOUND_SECONDS", 60, 5, 120)
        to_chat = (get("MINUTES_TO_CHAT") or "off").lower()
        if to_chat not in ("on", "off"):
            problems.append("MINUTES_TO_CHAT must be on or off")
        url = get("MINUTES_WEBHOOK_URL")
        if url is not None and urlsplit(url).scheme not in ("https", "http"):
            problems.append("MINUTES_WEBHOOK_URL must be an http(s) URL")
        has_secret = get("MINUTES_WEBHOOK_SECRET") or get("MINUTES_WEBHOOK_SECRET_ARN")
        if url is not None and not has_secret:
            problems.append("MINUTES_WEBHOOK_URL needs MINUTES_WEBHOOK_SECRET(_ARN) to sign with")
        log_level = (get("LOG_LEVEL") or "INFO").upper()
        if log_level not in LOG_LEVELS:
            problems.append(f"LOG_LEVEL must be one of {sorted(LOG_LEVELS)}")
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))
        assert table_name is not None
        return cls(
            table_name=table_name,
            job_queue_url=get("JOB_QUEUE_URL"),
            openai_api_key=get("OPENAI_API_KEY"),
            openai_api_key_secret_arn=get("OPENAI_API_KEY_SECRET_ARN"),
            openai_base_url=get("OPENAI_BASE_URL"),
            model=get("MINUTES_MODEL") or DEFAULT_MODEL,
            webhook_url=url,
            webhook_secret=get("MINUTES_WEBHOOK_SECRET"),
            webhook_secret_arn=get("MINUTES_WEBHOOK_SECRET_ARN"),
            grace_seconds=grace,
            lease_seconds=lease,
            log_level=log_level,
            minutes_to_chat=to_chat == "on",
            leave_bound_seconds=leave_bound,
            recall_api_key=get("RECALL_API_KEY"),
            recall_api_key_secret_arn=get("RECALL_API_KEY_SECRET_ARN"),
            recall_region=get("RECALL_REGION") or "us-west-2",
            recall_api_base=get("RECALL_API_BASE"),
        )


def load_settings() -> Settings:
    """Settings from this process's environment."""
    return Settings.from_env(os.environ)


def read_secret(client: SecretsManagerClient, arn: str) -> str | None:
    """A secret's string value, or ``None`` if it is empty (not filled in yet)."""
    value = client.get_secret_value(SecretId=arn).get("SecretString", "").strip()
    return value or None
