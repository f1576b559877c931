"""Settings.from_env and the signing secrets, inline or from moto's Secrets Manager server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping

import boto3
import pytest

from functions.webhooks.errors import ConfigError, NotConfiguredError
from functions.webhooks.settings import ENV_VARS, LOCAL_ONLY_ENV_VARS, Settings, WebhookSecrets
from tests.conftest import free_port
from tests.webhooks.conftest import new_secret


class RecordingEnviron(Mapping[str, str]):
    """An environment that remembers which names were looked up."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def test_env_vars_lists_exactly_what_from_env_reads():
    """ENV_VARS (the infra contract) names every variable from_env reads, and no other."""
    environ = RecordingEnviron({"TABLE_NAME": "t"})
    Settings.from_env(environ)
    assert environ.read == ENV_VARS
    assert LOCAL_ONLY_ENV_VARS <= ENV_VARS


def test_reads_every_variable():
    """Each variable lands in its typed field; several secrets split on whitespace."""
    first, second = new_secret(), new_secret()
    settings = Settings.from_env(
        {
            "TABLE_NAME": "app-table",
            "RECALL_WEBHOOK_SECRET": f"  {first}   {second}\n",
            "RECALL_WEBHOOK_SECRET_ARN": "arn:aws:secretsmanager:us-west-2:1:secret:x",
            "EVENT_RETENTION_DAYS": "90",
            "POWERTOOLS_SERVICE_NAME": "svc",
            "POWERTOOLS_METRICS_NAMESPACE": "Ns/Webhooks",
            "POWERTOOLS_LOG_LEVEL": "debug",
        }
    )
    assert settings == Settings(
        table_name="app-table",
        webhook_secrets=(first, second),
        webhook_secret_arn="arn:aws:secretsmanager:us-west-2:1:secret:x",
        event_retention_days=90,
        service_name="svc",
        metrics_namespace="Ns/Webhooks",
        log_level="DEBUG",
    )


def test_defaults_apply_to_unset_and_empty_values():
    """Only TABLE_NAME is required; empty strings count as unset."""
    settings = Settings.from_env({"TABLE_NAME": "t", "EVENT_RETENTION_DAYS": " "})
    assert settings == Settings(table_name="t")
    assert settings.event_retention_days == 30


def test_reports_every_problem_at_once():
    """One ConfigError lists the missing table, bad retention, bad secret and bad log level."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {
                "RECALL_WEBHOOK_SECRET": f"{new_secret()} whsec_!!",
                "EVENT_RETENTION_DAYS": "forever",
                "POWERTOOLS_LOG_LEVEL": "LOUD",
            }
        )
    message = caught.value.message
    for expected in (
        "TABLE_NAME",
        "EVENT_RETENTION_DAYS",
        "RECALL_WEBHOOK_SECRET entry 2",
        "POWERTOOLS_LOG_LEVEL",
    ):
        assert expected in message
    assert caught.value.status_code == 503


def test_settings_repr_hides_secrets():
    """Printing the settings never shows a secret."""
    secret = new_secret()
    assert secret not in repr(Settings(table_name="t", webhook_secrets=(secret,)))


def test_no_secret_at_all_is_not_configured():
    """Without an inline secret or an ARN, get() fails closed with a message naming both."""
    with pytest.raises(NotConfiguredError, match="RECALL_WEBHOOK_SECRET_ARN"):
        WebhookSecrets(Settings(table_name="t")).get()


@pytest.fixture
def secretsmanager(dynamodb_endpoint: str):
    """moto's Secrets Manager (the same server process as DynamoDB)."""
    return boto3.client("secretsmanager", endpoint_url=dynamodb_endpoint, region_name="us-east-1")


def _secrets(arn: str, endpoint: str, **settings: object) -> WebhookSecrets:
    return WebhookSecrets(
        Settings(table_name="t", webhook_secret_arn=arn, **settings),  # type: ignore[arg-type]
        client=lambda: boto3.client(
            "secretsmanager", endpoint_url=endpoint, region_name="us-east-1"
        ),
    )


@pytest.mark.parametrize(
    "shape", ["plain", "json-object", "rotation-list"], ids=["plain", "json-object", "rotation"]
)
def test_reads_secret_from_secrets_manager(secretsmanager, dynamodb_endpoint: str, shape: str):
    """The ARN's value is read once: a plain string, a one-key JSON object, or a space list."""
    first, second = new_secret(), new_secret()
    value = {
        "plain": first,
        "json-object": json.dumps({"RECALL_WEBHOOK_SECRET": first}),
        "rotation-list": f"{first} {second}",
    }[shape]
    arn = secretsmanager.create_secret(Name=f"s-{uuid.uuid4().hex}", SecretString=value)["ARN"]
    secrets = _secrets(arn, dynamodb_endpoint)
    expected = (first, second) if shape == "rotation-list" else (first,)
    assert secrets.get() == expected
    secretsmanager.put_secret_value(SecretId=arn, SecretString=new_secret())
    assert secrets.get() == expected  # cached for the life of the process


def test_empty_secret_fails_closed_then_is_picked_up(secretsmanager, dynamodb_endpoint: str):
    """An empty secret answers 'not configured'; once filled, the next retry window uses it."""
    arn = secretsmanager.create_secret(Name=f"s-{uuid.uuid4().hex}", SecretString=" ")["ARN"]
    secrets = _secrets(arn, dynamodb_endpoint, secret_retry_seconds=0.0)
    with pytest.raises(NotConfiguredError, match="empty"):
        secrets.get()
    filled = new_secret()
    secretsmanager.put_secret_value(SecretId=arn, SecretString=filled)
    assert secrets.get() == (filled,)


def test_empty_secret_is_not_reread_inside_the_retry_window(secretsmanager, dynamodb_endpoint):
    """Within the retry window an unconfigured receiver does not call Secrets Manager again."""
    arn = secretsmanager.create_secret(Name=f"s-{uuid.uuid4().hex}", SecretString=" ")["ARN"]
    secrets = _secrets(arn, dynamodb_endpoint, secret_retry_seconds=3600.0)
    with pytest.raises(NotConfiguredError):
        secrets.get()
    secretsmanager.put_secret_value(SecretId=arn, SecretString=new_secret())
    with pytest.raises(NotConfiguredError, match="empty"):
        secrets.get()


@pytest.mark.parametrize(
    ("value", "match"),
    [("whsec_!!notbase64", "not whsec_"), ("hunter2", "not whsec_")],
    ids=["bad-base64", "no-prefix"],
)
def test_invalid_secret_value_is_not_configured(secretsmanager, dynamodb_endpoint, value, match):
    """A secret that is not whsec_<base64> fails closed, without echoing the value."""
    arn = secretsmanager.create_secret(Name=f"s-{uuid.uuid4().hex}", SecretString=value)["ARN"]
    with pytest.raises(NotConfiguredError, match=match) as caught:
        _secrets(arn, dynamodb_endpoint).get()
    assert value not in caught.value.message


def test_unreachable_secrets_manager_is_not_configured():
    """With Secrets Manager unreachable the receiver fails closed and says why."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(NotConfiguredError, match="cannot read the webhook signing secret"):
        _secrets("arn:aws:secretsmanager:us-east-1:1:secret:x", endpoint).get()
