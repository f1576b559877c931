"""The CLI's settings: the only module that reads the environment.

``Settings.from_env(os.environ)`` runs once in ``main``; commands receive the result.
Flags override these values at the command boundary. Nothing here validates against the
network; the ``ConfigError``s raised by commands say which variable or flag to set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final

from cli.dev_profile import default_path

DEFAULT_REGION: Final = "us-west-2"
DEFAULT_STACK_NAME: Final = "RecallVoiceAgent"


@dataclass(frozen=True, slots=True)
class Settings:
    """Values the CLI takes from its environment; flags override them."""

    recall_api_key: str | None = None
    recall_key_secret_arn: str | None = None
    recall_region: str = DEFAULT_REGION
    #: Base URL override (tests, proxies); ``{region}`` in it is replaced by the region.
    recall_api_base: str | None = None
    relay_token_secret: str | None = None
    webhook_secret: str | None = None
    stack_name: str = DEFAULT_STACK_NAME
    #: Whether VOICEBOT_STACK named the stack (then the dev profile is not used).
    stack_from_env: bool = False
    table_name: str | None = None
    #: Where ``voicebot dev`` writes, and the other commands read, the local stack's profile.
    dev_profile: Path = field(default_factory=lambda: default_path(Path.home(), None))
    openai_api_key: str | None = None
    #: The operator's agent config that bot personas are checked against.
    agent_config: str | None = None
    #: The control API's base URL (``…/v1``) for ``--via-api``; default: the stack's output.
    api_url: str | None = None
    #: The whole environment, passed on to the local stack's child processes.
    environ: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read the settings from ``environ`` (empty values count as unset)."""

        def get(name: str) -> str | None:
            value = environ.get(name, "").strip()
            return value or None

        return cls(
            recall_api_key=get("RECALL_API_KEY"),
            recall_key_secret_arn=get("RECALL_API_KEY_SECRET_ARN"),
            recall_region=get("RECALL_REGION") or DEFAULT_REGION,
            recall_api_base=get("RECALL_API_BASE"),
            relay_token_secret=environ.get("RELAY_TOKEN_SECRET") or None,
            webhook_secret=get("RECALL_WEBHOOK_SECRET"),
            stack_name=get("VOICEBOT_STACK") or DEFAULT_STACK_NAME,
            stack_from_env=get("VOICEBOT_STACK") is not None,
            table_name=get("TABLE_NAME"),
            dev_profile=Path(profile)
            if (profile := get("VOICEBOT_DEV_PROFILE"))
            else default_path(Path(get("HOME") or Path.home()), get("XDG_STATE_HOME")),
            openai_api_key=get("OPENAI_API_KEY"),
            agent_config=get("AGENT_CONFIG"),
            api_url=get("VOICEBOT_API_URL"),
            environ=MappingProxyType(dict(environ)),
        )


def load() -> Settings:
    """Settings from this process's environment (the console script's entry point)."""
    return Settings.from_env(os.environ)
