"""The control API's configuration: the only module here that reads the environment.

``Settings.from_env(environ)`` reports every problem at once (:class:`ConfigError`). The
Recall key and the relay token key come inline outside AWS (``RECALL_API_KEY``,
``RELAY_TOKEN_SECRET``: tests and ``make dev``) or from Secrets Manager by ARN on AWS,
read on first use and kept for the process (:class:`Secrets`). Values are never logged.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

#: Every variable :meth:`Settings.from_env` reads (the infra contract test compares them).
ENV_VARS: Final[frozenset[str]] = frozenset(
    {
        "TABLE_NAME",
        "AGENT_PAGE_URL",
        "RECALL_API_KEY",
        "RECALL_API_KEY_SECRET_ARN",
        "RECALL_REGION",
        "RECALL_API_BASE",
        "RELAY_TOKEN_SECRET",
        "RELAY_TOKEN_SECRET_ARN",
    }
)
LOCAL_ONLY_ENV_VARS: Final[frozenset[str]] = frozenset(
    {"RECALL_API_KEY", "RELAY_TOKEN_SECRET", "RECALL_API_BASE"}
)


class ConfigError(ValueError):
    """The environment is invalid, or a secret is not filled in yet."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What the control API needs; tests construct it directly."""

    table_name: str
    agent_page_url: str
    recall_region: str = "us-west-2"
    recall_api_base: str | None = None
    recall_api_key: str | None = field(default=None, repr=False)
    recall_api_key_secret_arn: str | None = None
    relay_token_secret: str | None = field(default=None, repr=False)
    relay_token_secret_arn: str | None = None

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
        table = get("TABLE_NAME")
        page = get("AGENT_PAGE_URL")
        if table is None:
            problems.append("TABLE_NAME is not set")
        if page is None or not page.startswith(("https://", "http://")):
            problems.append("AGENT_PAGE_URL must be the agent page's http(s) URL")
        if not (get("RECALL_API_KEY") or get("RECALL_API_KEY_SECRET_ARN")):
            problems.append("RECALL_API_KEY or RECALL_API_KEY_SECRET_ARN must be set")
        if not (get("RELAY_TOKEN_SECRET") or get("RELAY_TOKEN_SECRET_ARN")):
            problems.append("RELAY_TOKEN_SECRET or RELAY_TOKEN_SECRET_ARN must be set")
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))
        assert table is not None
        assert page is not None
        return cls(
            table_name=table,
            agent_page_url=page,
            recall_region=get("RECALL_REGION") or "us-west-2",
            recall_api_base=get("RECALL_API_BASE"),
            recall_api_key=get("RECALL_API_KEY"),
            recall_api_key_secret_arn=get("RECALL_API_KEY_SECRET_ARN"),
            relay_token_secret=get("RELAY_TOKEN_SECRET"),
            relay_token_secret_arn=get("RELAY_TOKEN_SECRET_ARN"),
        )


def load_settings() -> Settings:
    """Settings from this process's environment."""
    return Settings.from_env(os.environ)


#: Secrets Manager reader: ARN → the secret's string (tests pass a fake).
SecretReader = Callable[[str], str]


def read_from_secrets_manager(arn: str) -> str:
    """A secret's string value (the one value of a JSON object, as the console stores it)."""
    import boto3

    from functions.webhooks.settings import secret_text

    raw = boto3.client("secretsmanager").get_secret_value(SecretId=arn).get("SecretString", "")
    return secret_text(raw).strip()


class Secrets:
    """The Recall key and the relay token key: inline, or read once from Secrets Manager.

    An empty or placeholder value is not cached, so filling the secret needs no redeploy.
    """

    def __init__(self, settings: Settings, reader: SecretReader = read_from_secrets_manager):
        """Resolve from ``settings``; ``reader`` reads an ARN."""
        self._settings = settings
        self._reader = reader
        self._lock = threading.Lock()
        self._cache: dict[str, str] = {}

    def recall_key(self) -> str:
        """The Recall API key.

        Raises:
            ConfigError: the secret holds no key yet.
        """
        return self._get(
            "recall", self._settings.recall_api_key, self._settings.recall_api_key_secret_arn
        )

    def relay_token_secret(self) -> str:
        """The key that signs relay tokens."""
        return self._get(
            "relay", self._settings.relay_token_secret, self._settings.relay_token_secret_arn
        )

    def _get(self, name: str, inline: str | None, arn: str | None) -> str:
        if inline:
            return inline
        with self._lock:
            if name in self._cache:
                return self._cache[name]
            value = self._reader(arn) if arn else ""
            if not value or value.startswith("UNSET-"):
                raise ConfigError(f"the {name} secret is not filled in yet ({arn})")
            self._cache[name] = value
            return value
