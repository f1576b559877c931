"""Fixtures for the CLI tests: the fake Recall API and an in-process ``voicebot`` runner."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from click.testing import CliRunner, Result

from cli.main import voicebot
from tests.cli.fake_recall import FakeRecall

TOKEN_SECRET = "s" * 48
RECALL_KEY = "test-recall-key-0123456789"

#: Every variable the CLI reads, unset unless a test sets it (the developer's own
#: RECALL_API_KEY or stack must never leak into a test).
CLI_ENV_UNSET: Mapping[str, None] = dict.fromkeys(
    [
        "RECALL_API_KEY",
        "RECALL_API_KEY_SECRET_ARN",
        "RECALL_REGION",
        "RECALL_API_BASE",
        "RELAY_TOKEN_SECRET",
        "RECALL_WEBHOOK_SECRET",
        "VOICEBOT_STACK",
        "TABLE_NAME",
        "OPENAI_API_KEY",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ENDPOINT_URL",
        "AGENT_CONFIG",
    ]
)


#: No test may reach a real AWS account: every service points at a closed loopback port
#: unless the test names an endpoint (moto) itself.
HERMETIC_AWS_ENV: Mapping[str, str] = {
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_MAX_ATTEMPTS": "1",
    # A developer's own running `voicebot dev` must not answer for a test.
    "VOICEBOT_DEV_PROFILE": "/nonexistent/voicebot-dev.json",
}


def run_cli(args: list[str], env: Mapping[str, str | None] | None = None) -> Result:
    """Run ``voicebot ARGS`` in-process with exactly ``env`` on top of a clean CLI env."""
    full_env = {**CLI_ENV_UNSET, **HERMETIC_AWS_ENV, **(env or {})}
    result = CliRunner().invoke(voicebot, args, env=full_env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture
def recall_env(fake_recall: FakeRecall) -> dict[str, str]:
    """Environment for commands that talk to the fake Recall (``{region}`` in the path)."""
    return {
        "RECALL_API_KEY": RECALL_KEY,
        "RECALL_API_BASE": f"{fake_recall.url}/{{region}}",
        "RELAY_TOKEN_SECRET": TOKEN_SECRET,
    }
