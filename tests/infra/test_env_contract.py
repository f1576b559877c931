"""The deployed environment matches what the runtime code reads (names, not values).

Runtime code never imports infra, so this test is what keeps the two sides in sync: the
Lambda's variables are the receiver's ``ENV_VARS`` minus the local-only inline secret, and
the relay task's variables and ECS secrets are names ``relay.config`` reads, with every
secret arriving as an ECS secret and none as a plain variable.
"""

from __future__ import annotations

from typing import Any

import pytest

from infra.constructs.relay_environment import container_environment
from infra.settings import RelaySettings
from tests.infra.conftest import Synthesized

#: Relay variables that must be set on AWS (no safe default there).
RELAY_REQUIRED = frozenset({"OPENAI_API_KEY", "RELAY_TOKEN_SECRET", "TABLE_NAME", "DRAIN_SECONDS"})
RELAY_SECRETS = frozenset(
    {
        "OPENAI_API_KEY",
        "RELAY_TOKEN_SECRET",
        "RECALL_API_KEY",
        "RELAY_TOOL_SIGNING_SECRET",
        "RECALL_WEBHOOK_SECRET",  # verifies Recall's real-time events websocket
    }
)


def test_lambda_environment_is_what_the_receiver_reads(synthesized: Synthesized) -> None:
    """Every variable the receiver reads is set on AWS, and nothing it ignores is."""
    settings = pytest.importorskip(
        "functions.webhooks.settings", reason="the webhook receiver is not written yet"
    )
    function = synthesized.resource_of(synthesized.stack.webhook_api.function)
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


def test_relay_settings_reach_the_container_through_one_mapping(synthesized: Synthesized) -> None:
    """The task's environment is container_environment(settings): one place maps each knob."""
    config = pytest.importorskip("relay.config", reason="the relay config is not written yet")
    relay = synthesized.stack.relay
    plain = {e["Name"]: e["Value"] for e in _relay_container(synthesized)["Environment"]}
    mapped = container_environment(
        relay.settings,
        table_name="TABLE",
        metrics_service=relay.metrics_service,
        recall_region="us-west-2",
    )
    assert set(plain) == set(mapped)
    assert set(mapped) <= config.ENV_VARS
    assert {k: v for k, v in plain.items() if k != "TABLE_NAME"} == {
        k: v for k, v in mapped.items() if k != "TABLE_NAME"
    }


@pytest.mark.parametrize(
    ("change", "variable", "value"),
    [
        ({"max_sessions": 60}, "RELAY_MAX_SESSIONS", "60"),
        ({"max_sessions_per_subject": 1}, "RELAY_MAX_SESSIONS_PER_SUBJECT", "1"),
        ({"max_session_seconds": 7200}, "RELAY_MAX_SESSION_SECONDS", "7200"),
        ({"drain_seconds": 45}, "DRAIN_SECONDS", "45"),
        ({"model": "gpt-realtime-mini"}, "OPENAI_REALTIME_MODEL", "gpt-realtime-mini"),
        ({"allowed_models": ("a", "b")}, "RELAY_ALLOWED_MODELS", "gpt-realtime-2.1,a,b"),
        ({"log_level": "DEBUG"}, "LOG_LEVEL", "DEBUG"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_relay_knob_lands_in_its_variable(
    change: dict[str, Any], variable: str, value: str
) -> None:
    """A context value (`-c relay_max_sessions=60`) is the container's variable, unrenamed."""
    environment = container_environment(
        RelaySettings(**change), table_name="T", metrics_service="S", recall_region="us-west-2"
    )
    assert environment[variable] == value
