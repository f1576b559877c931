"""The receiver's configuration: the only module that reads the environment.

``Settings.from_env(environ)`` parses and validates every variable in :data:`ENV_VARS`
and reports all problems at once in a :class:`ConfigError`. It runs once per process
(cold start), lazily, at the first request, never at import. :class:`WebhookSecrets`
resolves the signing secrets: inline from ``RECALL_WEBHOOK_SECRET`` (local and tests) or
from Secrets Manager by ``RECALL_WEBHOOK_SECRET_ARN`` (AWS), read once per cold start.
Either may hold several ``whsec_`` secrets separated by spaces (rotation). Secret values
are never logged or put in an error message.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from functions.webhooks.errors import ConfigError, NotConfiguredError
from functions.webhooks.signatures import decode_secret

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

#: Every variable :meth:`Settings.from_env` reads (the infra contract test compares them).
ENV_VARS: Final[frozenset[str]] = frozenset(
    {
        "TABLE_NAME",
        "RECALL_WEBHOOK_SECRET",
        "RECALL_WEBHOOK_SECRET_ARN",
        "EVENT_RETENTION_DAYS",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_LOG_LEVEL",
    }
)
#: Read only outside AWS (``make dev``, tests); the deployed function uses the ARN instead.
LOCAL_ONLY_ENV_VARS: Final[frozenset[str]] = frozenset({"RECALL_WEBHOOK_SECRET"})

SECRET_PREFIX: Final = "whsec_"
MAX_BODY_BYTES: Final = 1024 * 1024
LOG_LEVELS: Final = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})
DEFAULT_SERVICE_NAME: Final = "recall-webhooks"
DEFAULT_METRICS_NAMESPACE: Final = "RecallVoiceAgent/Webhooks"
DEFAULT_LOG_LEVEL: Final = "INFO"
#: Upper bound on EVENT_RETENTION_DAYS (ten years): a slip like "30000" is refused, not kept.
MAX_RETENTION_DAYS: Final = 3650


@dataclass(frozen=True, slots=True)
class Settings:
    """What the receiver needs, parsed once; tests construct it directly."""

    table_name: str
    #: Inline ``whsec_`` secrets (``RECALL_WEBHOOK_SECRET``), newest first or any order.
    webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    #: Secrets Manager secret holding the ``whsec_`` secret(s), read once per cold start.
    webhook_secret_arn: str | None = None
    event_retention_days: int = 30
    service_name: str = DEFAULT_SERVICE_NAME
    metrics_namespace: str = DEFAULT_METRICS_NAMESPACE
    log_level: str = DEFAULT_LOG_LEVEL
    #: Standard Webhooks' tolerance, both directions.
    tolerance_seconds: int = 300
    max_body_bytes: int = MAX_BODY_BYTES
    #: How often an empty or unreadable Secrets Manager secret is read again.
    secret_retry_seconds: float = 30.0

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
        secrets = split_secrets(get("RECALL_WEBHOOK_SECRET") or "")
        bad = [i for i, s in enumerate(secrets, 1) if not is_valid_secret(s)]
        if bad:
            problems.append(
                f"RECALL_WEBHOOK_SECRET entry {', '.join(map(str, bad))} is not whsec_<base64>"
            )
        retention = 30
        raw_retention = get("EVENT_RETENTION_DAYS")
        if raw_retention is not None:
            try:
                retention = int(raw_retention)
            except ValueError:
                retention = -1
            if not 1 <= retention <= MAX_RETENTION_DAYS:
                problems.append(
                    f"EVENT_RETENTION_DAYS must be a whole number of days in "
                    f"1..{MAX_RETENTION_DAYS}, got {raw_retention!r}"
                )
        log_level = (get("POWERTOOLS_LOG_LEVEL") or DEFAULT_LOG_LEVEL).upper()
        if log_level not in LOG_LEVELS:
            problems.append(f"POWERTOOLS_LOG_LEVEL must be one of {sorted(LOG_LEVELS)}")
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))
        assert table_name is not None  # reported above otherwise
        return cls(
            table_name=table_name,
            webhook_secrets=tuple(secrets),
            webhook_secret_arn=get("RECALL_WEBHOOK_SECRET_ARN"),
            event_retention_days=retention,
            service_name=get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE_NAME,
            metrics_namespace=get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_METRICS_NAMESPACE,
            log_level=log_level,
        )


def load_settings() -> Settings:
    """Settings from this process's environment (the cold-start entry point)."""
    return Settings.from_env(os.environ)


def split_secrets(raw: str) -> list[str]:
    """The space-separated ``whsec_`` secrets in ``raw`` (newlines and tabs count as spaces)."""
    return raw.split()


def is_valid_secret(secret: str) -> bool:
    """Whether ``secret`` is ``whsec_`` followed by non-empty base64 (see signatures.py)."""
    try:
        decode_secret(secret)
    except ValueError:
        return False
    return True


def secret_text(raw: str) -> str:
    """A Secrets Manager value's usable text: the string, or the one string in a JSON object.

    The console's key/value editor stores ``{"key": "whsec_…"}``; a plain string is what
    ``aws secretsmanager put-secret-value --secret-string`` stores. Both work.
    """
    try:
        parsed: Any = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(parsed, dict):
        strings = [v for v in parsed.values() if isinstance(v, str)]
        if len(strings) == 1:
            return strings[0]
    return raw


def _secretsmanager_client() -> SecretsManagerClient:
    import boto3  # off the import path: only a deployed function needs it
    from botocore.config import Config

    # Bounded so a cold start still answers well inside Recall's 15 s.
    config = Config(connect_timeout=1, read_timeout=2, retries={"total_max_attempts": 2})
    return boto3.client("secretsmanager", config=config)


class WebhookSecrets:
    """The signing secrets, resolved once per process and kept in memory.

    An inline list wins. Otherwise the Secrets Manager value is read on first use; an
    empty or failed read is not cached, but retried at most every
    ``settings.secret_retry_seconds``, so a secret filled in after deployment is picked up
    without a redeploy while a flood of requests cannot become a flood of Secrets Manager
    calls.
    """

    def __init__(
        self,
        settings: Settings,
        client: Callable[[], SecretsManagerClient] = _secretsmanager_client,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Resolve from ``settings``; ``client`` builds the Secrets Manager client lazily."""
        self._settings = settings
        self._client_factory = client
        self._client: SecretsManagerClient | None = None
        self._retry_seconds = settings.secret_retry_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = settings.webhook_secrets
        self._next_attempt = 0.0
        self._last_problem = "no webhook signing secret is configured"

    @property
    def cached(self) -> tuple[str, ...]:
        """The secrets if already resolved (no I/O), else an empty tuple."""
        return self._secrets

    def get(self) -> tuple[str, ...]:
        """The current secrets (at least one).

        Raises:
            NotConfiguredError: none is configured yet, or Secrets Manager cannot be read.
        """
        if self._secrets:
            return self._secrets
        arn = self._settings.webhook_secret_arn
        if arn is None:
            raise NotConfiguredError(
                "no webhook signing secret is configured: set RECALL_WEBHOOK_SECRET "
                "(whsec_…, several separated by spaces) or RECALL_WEBHOOK_SECRET_ARN"
            )
        with self._lock:
            if not self._secrets and self._clock() >= self._next_attempt:
                self._next_attempt = self._clock() + self._retry_seconds
                self._secrets = self._read(arn)
        if not self._secrets:
            raise NotConfiguredError(self._last_problem)
        return self._secrets

    def _read(self, arn: str) -> tuple[str, ...]:
        import botocore.exceptions  # loaded with the client anyway

        try:
            if self._client is None:
                self._client = self._client_factory()
            answer = self._client.get_secret_value(SecretId=arn)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            self._last_problem = (
                f"cannot read the webhook signing secret from Secrets Manager ({code})"
            )
            return ()
        secrets = split_secrets(secret_text(answer.get("SecretString") or ""))
        if not secrets:
            self._last_problem = (
                "the webhook signing secret in Secrets Manager is empty: put Recall's "
                "whsec_… secret in it (several separated by spaces while rotating)"
            )
            return ()
        valid = tuple(s for s in secrets if is_valid_secret(s))
        if not valid:
            self._last_problem = (
                "the webhook signing secret in Secrets Manager is not whsec_<base64>"
            )
        return valid
