"""Where ``voicebot dev``'s local stack runs and what with: ports, credentials, secrets.

The defaults (loopback host, ports, table name), the fake AWS credentials every child gets
so none can reach a real account, the inherited variables dropped for the same reason,
fresh secrets per run, :class:`DevConfig` (what the flags fill in) and
:class:`DevEndpoints` (where the running stack answers).
"""

from __future__ import annotations

import base64
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cli.meeting_replay import MeetingScript

HOST: Final = "127.0.0.1"
DEFAULT_RELAY_PORT: Final = 8080
DEFAULT_WEBHOOK_PORT: Final = 8000
DEFAULT_DYNAMODB_PORT: Final = 8001
TABLE_NAME: Final = "voicebot-dev"
#: The agent the deployed relay runs (its image carries this file); used when the checkout
#: has it and AGENT_CONFIG is not set, so `make dev` talks like the deployment.
REPOSITORY_AGENT_CONFIG: Final = (
    Path(__file__).resolve().parents[1] / "relay_container" / "agent.yaml"
)
#: Fake credentials for the local server, so no child can reach a real account.
LOCAL_AWS_ENV: Final[Mapping[str, str]] = {
    "AWS_ACCESS_KEY_ID": "dev",
    "AWS_SECRET_ACCESS_KEY": "dev",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
#: Inherited variables that would point a child at a real account or another secret.
DROPPED_ENV: Final = frozenset(
    {"AWS_PROFILE", "AWS_SESSION_TOKEN", "RECALL_WEBHOOK_SECRET_ARN", "AWS_ENDPOINT_URL"}
)


def dev_webhook_secret() -> str:
    """A fresh Standard Webhooks secret (``whsec_`` + base64 of 24 random bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def dev_token_secret() -> str:
    """A fresh relay token secret, well above the 32-byte minimum."""
    return secrets.token_urlsafe(48)


@dataclass(frozen=True, slots=True)
class DevConfig:
    """What ``voicebot dev`` runs with; flags fill it in."""

    relay_port: int = DEFAULT_RELAY_PORT
    webhook_port: int = DEFAULT_WEBHOOK_PORT
    dynamodb_port: int = DEFAULT_DYNAMODB_PORT
    openai_api_key: str | None = None
    #: Use this relay token secret (so `voicebot token mint` works against the local relay).
    relay_token_secret: str | None = None
    environ: Mapping[str, str] = field(default_factory=dict)
    table_name: str = TABLE_NAME
    ready_timeout: float = 60.0
    stop_timeout: float = 5.0
    verbose: bool = False
    python: str = sys.executable
    #: The simulated model calls this declared tool after every spoken turn (a way to try
    #: a relay tool without a real model: audio carries no words the simulator can read).
    simulator_tool: str | None = None
    #: A scripted meeting to replay (``--meeting``): the simulator transcribes its spoken
    #: lines in order, and the relay runs with the script's turn_taking/chat keys.
    meeting: MeetingScript | None = None


@dataclass(frozen=True, slots=True)
class DevEndpoints:
    """Where the running stack answers (secrets included: the banner shows them)."""

    dynamodb_url: str
    table_name: str
    webhook_url: str
    webhook_secret: str
    relay_http_url: str
    relay_ws_url: str
    relay_token_secret: str
    model_url: str | None  # the simulator, or None for OpenAI
