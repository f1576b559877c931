"""The receiver's answers when it is not configured, misconfigured, or its table is down.

Each test serves ``create_app(settings, store)`` with uvicorn on a thread, on a real
loopback port, storing into the moto server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import boto3
import pytest

from functions.webhooks.app import create_app
from functions.webhooks.errors import StoreUnavailableError
from functions.webhooks.events import BotStatusEvent
from functions.webhooks.settings import Settings
from functions.webhooks.store import WebhookStore
from tests.conftest import free_port
from tests.webhooks.conftest import (
    Receiver,
    Table,
    body_of,
    new_secret,
    payload,
    serve_in_thread,
    sign_standard,
    store_at,
)


def test_no_secret_fails_closed_with_a_clear_message(
    receiver_with: Callable[..., Receiver], table: Table
):
    """Without a signing secret every delivery answers 503 saying what to set; nothing stored."""
    receiver = receiver_with(Settings(table_name=table.name))
    body = body_of(payload("bot.done"))
    response = receiver.post(body, sign_standard(new_secret(), body))
    assert response.status_code == 503
    assert response.json()["error"] == "not_configured"
    assert "RECALL_WEBHOOK_SECRET" in response.json()["message"]
    assert table.size() == 0


def test_invalid_environment_answers_503_listing_problems(monkeypatch: pytest.MonkeyPatch):
    """With settings read from a bad environment, deliveries answer 503 naming every problem."""
    monkeypatch.delenv("TABLE_NAME", raising=False)
    monkeypatch.setenv("RECALL_WEBHOOK_SECRET", "not-a-secret")
    monkeypatch.setenv("EVENT_RETENTION_DAYS", "0")
    with serve_in_thread(create_app()) as url:
        receiver = Receiver(url, table=None, secrets=())  # type: ignore[arg-type]
        response = receiver.post(b"{}", {})
        again = receiver.post(b"", {})  # still 503: the error is remembered, not re-read
    assert response.status_code == again.status_code == 503
    message = response.json()["message"]
    assert response.json()["error"] == "invalid_configuration"
    for name in ("TABLE_NAME", "RECALL_WEBHOOK_SECRET", "EVENT_RETENTION_DAYS"):
        assert name in message


def test_secret_from_secrets_manager_arn(
    receiver_with: Callable[..., Receiver],
    table: Table,
    dynamodb_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
):
    """As deployed: the secret is read from Secrets Manager by ARN; empty → 503, filled → stored."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", dynamodb_endpoint)
    secretsmanager = boto3.client(
        "secretsmanager", endpoint_url=dynamodb_endpoint, region_name="us-east-1"
    )
    arn = secretsmanager.create_secret(Name=f"wh-{uuid.uuid4().hex}", SecretString=" ")["ARN"]
    receiver = receiver_with(
        Settings(table_name=table.name, webhook_secret_arn=arn, secret_retry_seconds=0.0),
        store=store_at(dynamodb_endpoint, table.name),
    )
    secret = new_secret()
    body = body_of(payload("bot.joining_call", bot_id="arn-bot"))
    refused = receiver.post(body, sign_standard(secret, body))
    assert refused.status_code == 503
    assert "empty" in refused.json()["message"]
    secretsmanager.put_secret_value(SecretId=arn, SecretString=secret)
    assert receiver.post(body, sign_standard(secret, body)).status_code == 200
    assert table.state("arn-bot") is not None


def test_dynamodb_down_answers_5xx_so_recall_retries(receiver_with: Callable[..., Receiver]):
    """With DynamoDB unreachable a valid delivery answers 503; the next retry can succeed."""
    settings = Settings(table_name="whatever", webhook_secrets=(new_secret(),))
    receiver = receiver_with(
        settings, store=store_at(f"http://127.0.0.1:{free_port()}", settings.table_name)
    )
    body = body_of(payload("bot.done"))
    response = receiver.post(body, sign_standard(settings.webhook_secrets[0], body))
    assert response.status_code == 503
    assert response.json()["error"] == "store_unavailable"


class StateWriteFailsOnce(WebhookStore):
    """A real store whose first state update is lost (a DynamoDB blip between two writes)."""

    failed = False

    def advance_bot_state(self, event: BotStatusEvent) -> bool:
        if not self.failed:
            self.failed = True
            raise StoreUnavailableError("cannot update the bot state: simulated blip")
        return super().advance_bot_state(event)


def test_retry_after_failed_state_write_lands(
    receiver_with: Callable[..., Receiver], table: Table, dynamodb_endpoint: str
):
    """If the state write fails after the delivery was stored, the retry still sets the state."""
    settings = Settings(table_name=table.name, webhook_secrets=(new_secret(),))
    store = StateWriteFailsOnce(
        table.name,
        client=lambda: boto3.client(
            "dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1"
        ),
    )
    receiver = receiver_with(settings, store=store)
    body = body_of(payload("bot.in_call_recording", bot_id="blip-bot"))
    headers = sign_standard(settings.webhook_secrets[0], body)
    assert receiver.post(body, headers).status_code == 503
    assert table.state("blip-bot") is None
    retry = receiver.post(body, headers)
    assert (retry.status_code, retry.json()["status"]) == (200, "duplicate")
    state = table.state("blip-bot")
    assert state is not None
    assert state["status"] == "in_call_recording"
    assert table.count_deliveries(headers["webhook-id"]) == 1
