"""Fixtures for the webhook receiver: secrets, independent signers, Recall payloads, servers.

Deliveries are signed by the ``standardwebhooks`` and ``svix`` packages (not our code), so
the receiver's verification is checked against two independent implementations. The
receiver runs for real: uvicorn on a loopback port (a subprocess configured only by its
environment, or a uvicorn ``Server`` on a thread for per-test settings), storing into the
moto server from ``tests/conftest.py``.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import uvicorn
from standardwebhooks.webhooks import Webhook as StandardWebhook
from svix.webhooks import Webhook as SvixWebhook

from storage import schema
from storage.items import plain
from tests.conftest import ROOT, TIMEOUT, create_table, free_port, stop_process, wait_for_port

PAYLOADS = Path(__file__).parent / "payloads"
WEBHOOK_PATH = "/webhooks/recall"


def new_secret() -> str:
    """A fresh ``whsec_`` secret, as Recall's dashboard shows it."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def payload(name: str, **changes: Any) -> dict[str, Any]:
    """A recorded-shape Recall payload from ``payloads/<name>.json``.

    ``bot_id``, ``updated_at`` and ``session_id`` replace the recorded values.
    """
    event: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    event = copy.deepcopy(event)
    data = event.get("data") or {}
    if "bot_id" in changes and isinstance(data.get("bot"), dict):
        data["bot"]["id"] = changes["bot_id"]
    if "session_id" in changes and isinstance(data.get("bot"), dict):
        data["bot"]["metadata"]["session_id"] = changes["session_id"]
    if "updated_at" in changes:
        data["data"]["updated_at"] = changes["updated_at"]
    return event


def body_of(event: dict[str, Any]) -> bytes:
    """The JSON bytes Recall would send."""
    return json.dumps(event, separators=(",", ":")).encode()


def new_webhook_id() -> str:
    """A Svix-style message id."""
    return f"msg_{uuid.uuid4().hex}"


def sign_standard(
    secret: str, body: bytes, webhook_id: str | None = None, at: datetime | None = None
) -> dict[str, str]:
    """Standard Webhooks headers, signed by the ``standardwebhooks`` package."""
    at = at or datetime.now(UTC)
    webhook_id = webhook_id or new_webhook_id()
    signature = StandardWebhook(secret).sign(webhook_id, at, body.decode())
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


def sign_svix(
    secret: str, body: bytes, webhook_id: str | None = None, at: datetime | None = None
) -> dict[str, str]:
    """Legacy ``svix-*`` headers, signed by the ``svix`` package."""
    at = at or datetime.now(UTC)
    webhook_id = webhook_id or new_webhook_id()
    signature = SvixWebhook(secret).sign(webhook_id, at, body.decode())
    return {
        "content-type": "application/json",
        "svix-id": webhook_id,
        "svix-timestamp": str(int(at.timestamp())),
        "svix-signature": signature,
    }


@functools.cache
def dynamodb_client(endpoint: str) -> Any:
    """One boto3 client per endpoint for the whole run (creating one costs ~100 ms)."""
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")


class Table:
    """Reads the application table back, as a user (the CLI) would."""

    def __init__(self, endpoint: str, name: str) -> None:
        self.name = name
        self.client = dynamodb_client(endpoint)

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        from boto3.dynamodb.types import TypeDeserializer

        answer = self.client.get_item(
            TableName=self.name, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        )
        item = answer.get("Item")
        if item is None:
            return None
        des = TypeDeserializer()
        decoded: dict[str, Any] = plain({k: des.deserialize(v) for k, v in item.items()})
        return decoded

    def state(self, bot_id: str) -> dict[str, Any] | None:
        return self.get(schema.bot_pk(bot_id), schema.STATE_SK)

    def delivery(self, webhook_id: str) -> dict[str, Any] | None:
        return self.get(schema.delivery_pk(webhook_id), schema.DELIVERY_SK)

    def history(self, bot_id: str) -> list[dict[str, Any]]:
        from boto3.dynamodb.types import TypeDeserializer

        answer = self.client.query(
            TableName=self.name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :evt)",
            ExpressionAttributeValues={
                ":pk": {"S": schema.bot_pk(bot_id)},
                ":evt": {"S": schema.EVENT_PREFIX},
            },
            ConsistentRead=True,
        )
        des = TypeDeserializer()
        return [plain({k: des.deserialize(v) for k, v in i.items()}) for i in answer["Items"]]

    def count_deliveries(self, webhook_id: str) -> int:
        answer = self.client.query(
            TableName=self.name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": schema.delivery_pk(webhook_id)}},
            ConsistentRead=True,
        )
        return int(answer["Count"])

    def size(self) -> int:
        return int(self.client.scan(TableName=self.name, Select="COUNT")["Count"])


@pytest.fixture
def table(dynamodb_endpoint: str, table_name: str) -> Table:
    """A fresh application table, read back through boto3."""
    return Table(dynamodb_endpoint, table_name)


@functools.cache
def _http() -> httpx.Client:
    """One keep-alive HTTP client for the run (loopback only, no proxies from the env)."""
    return httpx.Client(timeout=TIMEOUT, trust_env=False)


@pytest.fixture(scope="session", autouse=True)
def _close_http_client() -> Iterator[None]:
    """Close the shared HTTP client at the end of the run."""
    yield
    if _http.cache_info().currsize:
        _http().close()


@dataclass(frozen=True)
class Receiver:
    """A running receiver: where to post, and the table it writes to."""

    url: str
    table: Table
    secrets: tuple[str, ...]
    output: Path | None = None

    @property
    def webhook_url(self) -> str:
        return self.url + WEBHOOK_PATH

    def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return _http().post(self.webhook_url, content=body, headers=headers)

    def deliver(self, event: dict[str, Any], **sign: Any) -> httpx.Response:
        body = body_of(event)
        return self.post(body, sign_standard(self.secrets[0], body, **sign))


@pytest.fixture(scope="module")
def served_receiver(
    dynamodb_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Receiver]:
    """``uvicorn functions.webhooks.app:app`` as a subprocess, configured by its environment.

    Two secrets (a rotation in progress); one table for the module (tests use fresh ids).
    """
    name = f"served-{uuid.uuid4().hex[:12]}"
    create_table(dynamodb_endpoint, name)
    keys = (new_secret(), new_secret())
    port = free_port()
    output = tmp_path_factory.mktemp("receiver") / "output.log"
    env = {
        **os.environ,
        "TABLE_NAME": name,
        "RECALL_WEBHOOK_SECRET": " ".join(keys),
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
        "POWERTOOLS_SERVICE_NAME": "webhooks-test",
        "POWERTOOLS_METRICS_NAMESPACE": "Test/Webhooks",
        "PYTHONUNBUFFERED": "1",
    }
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "functions.webhooks.app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--lifespan",
                "off",
            ],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, time.monotonic() + 3 * TIMEOUT, proc)
        yield Receiver(f"http://127.0.0.1:{port}", Table(dynamodb_endpoint, name), keys, output)
    finally:
        stop_process(proc)


def store_at(endpoint: str, table_name: str) -> Any:
    """A WebhookStore whose client talks to ``endpoint``."""
    from functions.webhooks.store import WebhookStore

    return WebhookStore(
        table_name,
        client=lambda: boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1"),
    )


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a thread, on a real loopback socket (port 0)."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        log_level="warning",
        access_log=False,
        http="h11",
        ws="none",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="receiver", daemon=True)
    thread.start()
    deadline = time.monotonic() + 3 * TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the receiver did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)


ReceiverFactory = Callable[..., Receiver]


@pytest.fixture
def receiver_with(dynamodb_endpoint: str, table: Table) -> Iterator[Callable[..., Receiver]]:
    """Start receivers built by ``create_app(settings, store)`` on threads, for one test."""
    from functions.webhooks.app import create_app
    from functions.webhooks.settings import Settings

    with contextlib.ExitStack() as stack:

        def start(settings: Settings | None = None, **app_kwargs: Any) -> Receiver:
            if settings is None:
                settings = Settings(table_name=table.name, webhook_secrets=(new_secret(),))
            app_kwargs.setdefault("store", store_at(dynamodb_endpoint, settings.table_name))
            url = stack.enter_context(serve_in_thread(create_app(settings, **app_kwargs)))
            return Receiver(url, table, settings.webhook_secrets)

        yield start
