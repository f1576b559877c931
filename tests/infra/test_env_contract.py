"""The deployed environment matches what the runtime code reads (names, not values).

Runtime code never imports infra, so this test is what keeps the two sides in sync: the
Lambda's variables are the receiver's ``ENV_VARS`` minus the local-only inline secret, and
the relay task's variables and ECS secrets are names ``relay.config`` reads, with every
secret arriving as an ECS secret and none as a plain variable.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.conftest import Synthesized

#: Relay variables that must be set on AWS (no safe default there).
RELAY_REQUIRED = frozenset({"OPENAI_API_KEY", "RELAY_TOKEN_SECRET", "TABLE_NAME", "DRAIN_SECONDS"})
RELAY_SECRETS = frozenset({"OPENAI_API_KEY", "RELAY_TOKEN_SECRET"})


def test_lambda_environment_is_what_the_receiver_reads(synthesized: Synthesized) -> None:
    """Every variable the receiver reads is set on AWS, and nothing it ignores is."""
    settings = pytest.importorskip(
        "functions.webhooks.settings", reason="the webhook receiver is not written yet"
    )
    (function,) = [
        f
        for f in synthesized.of_type("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "functions.webhooks.app.handler"
    ]
    names = set(function["Properties"]["Environment"]["Variables"])
    assert names == settings.ENV_VARS - settings.LOCAL_ONLY_ENV_VARS


def _relay_container(synthesized: Synthesized) -> dict[str, Any]:
    task = synthesized.only("AWS::ECS::TaskDefinition")
    (container,) = task["Properties"]["ContainerDefinitions"]
    return dict(container)


def test_relay_environment_and_secrets_are_names_the_relay_reads(synthesized: Synthesized) -> None:
    """The relay starts with every required variable and no unknown one."""
    config = pytest.importorskip("relay.config", reason="the relay config is not written yet")
    container = _relay_container(synthesized)
    plain = {e["Name"] for e in container.get("Environment", [])}
    secret = {s["Name"] for s in container.get("Secrets", [])}
    assert plain | secret <= config.ENV_VARS
    assert plain | secret >= RELAY_REQUIRED
    assert "ECS_AGENT_URI" not in plain | secret  # ECS sets it itself


def test_relay_secrets_arrive_as_ecs_secrets_never_plain(synthesized: Synthesized) -> None:
    """The OpenAI key and token key are injected from Secrets Manager at task start."""
    container = _relay_container(synthesized)
    plain = {e["Name"] for e in container.get("Environment", [])}
    secret = {s["Name"]: s["ValueFrom"] for s in container.get("Secrets", [])}
    assert set(secret) == RELAY_SECRETS
    assert not plain & RELAY_SECRETS
    assert not any("KEY" in name or "SECRET" in name or "TOKEN" in name for name in plain)
    secrets = synthesized.of_type("AWS::SecretsManager::Secret")
    assert all(value["Ref"] in secrets for value in secret.values())
