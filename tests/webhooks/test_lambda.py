"""The Lambda handler invoked with API Gateway HTTP API (v2) events, configured as deployed.

A fresh process (tests/webhooks/lambda_runtime.py) imports ``functions.webhooks.app:handler``
with the environment the CDK stack gives the function: TABLE_NAME, RECALL_WEBHOOK_SECRET_ARN
(a secret in moto's Secrets Manager), EVENT_RETENTION_DAYS and the POWERTOOLS_* names.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.conftest import ROOT, TIMEOUT, create_table
from tests.webhooks.conftest import (
    PAYLOADS,
    Table,
    body_of,
    new_secret,
    payload,
    sign_standard,
)

TEMPLATE = json.loads((PAYLOADS / "apigw_http_v2_template.json").read_text())


def http_api_event(
    body: bytes,
    headers: dict[str, str],
    *,
    method: str = "POST",
    path: str = "/webhooks/recall",
    base64_encoded: bool = False,
) -> dict[str, Any]:
    """An API Gateway HTTP API v2 event as the function receives it (lowercased headers)."""
    event: dict[str, Any] = json.loads(json.dumps(TEMPLATE))
    event["rawPath"] = path
    event["routeKey"] = "$default"
    event["headers"].update({k.lower(): v for k, v in headers.items()})
    event["headers"]["content-length"] = str(len(body))
    event["requestContext"]["http"].update(method=method, path=path)
    event["requestContext"]["requestId"] = uuid.uuid4().hex[:16]
    event["requestContext"]["timeEpoch"] = int(time.time() * 1000)
    if body:
        event["body"] = base64.b64encode(body).decode() if base64_encoded else body.decode()
    event["isBase64Encoded"] = base64_encoded
    return event


class LambdaProcess:
    """The runtime subprocess: invoke() sends one event and waits for its result."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._results: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=64)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                self._results.put(json.loads(line[len("RESULT ") :]), timeout=TIMEOUT)
            else:
                self.lines.append(line.rstrip("\n"))

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        request = {"event": event, "request_id": str(uuid.uuid4())}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        try:
            return self._results.get(timeout=3 * TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no result; output so far: {self.lines[-5:]}") from None

    def join(self) -> None:
        """Wait for the reader to see the end of the output."""
        self._reader.join(TIMEOUT)

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines if line.startswith("{")]


@pytest.fixture(scope="module")
def deployed(dynamodb_endpoint: str) -> Iterator[tuple[LambdaProcess, Table, str]]:
    """The function as deployed: secret by ARN, table by name, moto for both services."""
    name = f"lambda-{uuid.uuid4().hex[:12]}"
    create_table(dynamodb_endpoint, name)
    secret = new_secret()
    secretsmanager = boto3.client(
        "secretsmanager", endpoint_url=dynamodb_endpoint, region_name="us-east-1"
    )
    arn = secretsmanager.create_secret(Name=f"wh-{uuid.uuid4().hex}", SecretString=secret)["ARN"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RECALL_")},
        "TABLE_NAME": name,
        "RECALL_WEBHOOK_SECRET_ARN": arn,
        "EVENT_RETENTION_DAYS": "14",
        "POWERTOOLS_SERVICE_NAME": "recall-webhooks",
        "POWERTOOLS_METRICS_NAMESPACE": "RecallVoiceAgent/Webhooks",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "AWS_LAMBDA_FUNCTION_NAME": "recall-webhooks-test",
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": dynamodb_endpoint,
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.webhooks.lambda_runtime"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    runtime = LambdaProcess(proc)
    try:
        yield runtime, Table(dynamodb_endpoint, name), secret
    finally:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        runtime.join()
        proc.stdout.close()


@pytest.mark.parametrize("base64_encoded", [False, True], ids=["text-body", "base64-body"])
def test_signed_delivery_is_stored(deployed, base64_encoded: bool):
    """A signed delivery through API Gateway (plain or base64 body) answers 200 and sets state."""
    runtime, table, secret = deployed
    bot = str(uuid.uuid4())
    body = body_of(payload("bot.in_call_recording", bot_id=bot))
    headers = sign_standard(secret, body)
    result = runtime.invoke(http_api_event(body, headers, base64_encoded=base64_encoded))
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["status"] == "stored"
    state = table.state(bot)
    assert state is not None
    assert state["status"] == "in_call_recording"
    delivery = table.delivery(headers["webhook-id"])
    assert delivery is not None
    assert delivery["body"] == body.decode()


def test_redelivery_is_a_duplicate(deployed):
    """The same delivery invoked twice answers 200 both times and is stored once."""
    runtime, table, secret = deployed
    body = body_of(payload("bot.done", bot_id=str(uuid.uuid4())))
    headers = sign_standard(secret, body)
    event = http_api_event(body, headers)
    answers = [json.loads(runtime.invoke(event)["body"])["status"] for _ in range(2)]
    assert answers == ["stored", "duplicate"]
    assert table.count_deliveries(headers["webhook-id"]) == 1


def test_signed_binary_body_is_kept_raw(deployed):
    """A signed body that is not UTF-8 arrives base64-encoded and is kept raw, flagged, 200."""
    runtime, table, secret = deployed
    body = b"\x89PNG\r\n\x1a\n\x00\x00binary"
    webhook_id = f"msg_{uuid.uuid4().hex}"
    timestamp = str(int(time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        "content-type": "application/octet-stream",
    }
    result = runtime.invoke(http_api_event(body, headers, base64_encoded=True))
    assert result["statusCode"] == 200
    delivery = table.delivery(webhook_id)
    assert delivery is not None
    assert delivery["body_encoding"] == "base64"
    assert base64.b64decode(delivery["body"]) == body
    assert "parse_error" in delivery


LAMBDA_HOSTILE = [
    "nested-1000-deep",
    "updated-at-year-9999-west-of-utc",
    "chat-text-lone-surrogate",
    "bot-id-with-escape-codes",
    "event-name-300kb",
]


@pytest.mark.parametrize("case", LAMBDA_HOSTILE)
def test_signed_hostile_body_is_stored_through_api_gateway(deployed, case: str):
    """Bodies that once crashed the handler answer 200 through Mangum and are kept raw."""
    from tests.webhooks.test_hostile import SIGNED_HOSTILE, signed_headers, stored_body

    runtime, table, secret = deployed
    body, status = {c[0]: c[1:] for c in SIGNED_HOSTILE}[case]
    headers = signed_headers(secret, body)
    result = runtime.invoke(http_api_event(body, headers))
    assert result["statusCode"] == 200, result["body"]
    assert json.loads(result["body"])["status"] == status
    delivery = table.delivery(headers["webhook-id"])
    assert delivery is not None
    assert stored_body(delivery) == body


@pytest.mark.parametrize(
    ("case", "status"),
    [("wrong-secret", 401), ("unsigned", 401), ("oversized", 413)],
    ids=["wrong-secret", "unsigned", "oversized"],
)
def test_refused_deliveries(deployed, case: str, status: int):
    """Forged or unsigned deliveries answer 401 and oversized ones 413; nothing is stored."""
    runtime, table, secret = deployed
    body = body_of(payload("bot.fatal", bot_id="refused-bot"))
    if case == "oversized":
        body = b" " * (1024 * 1024 + 1)
    headers = {
        "wrong-secret": sign_standard(new_secret(), body),
        "unsigned": {"content-type": "application/json"},
        "oversized": sign_standard(secret, body),
    }[case]
    result = runtime.invoke(http_api_event(body, headers, base64_encoded=case == "oversized"))
    assert result["statusCode"] == status
    assert table.state("refused-bot") is None


def test_healthz_through_api_gateway(deployed):
    """GET /healthz through the HTTP API event answers 200 ok."""
    runtime, _, _ = deployed
    result = runtime.invoke(http_api_event(b"", {}, method="GET", path="/healthz"))
    assert (result["statusCode"], result["body"]) == (200, "ok")


def test_cold_start_logs_and_metrics(deployed):
    """One ColdStart metric, JSON logs with the Lambda context and webhook-id, no secrets."""
    runtime, _, secret = deployed
    body = body_of(payload("bot.joining_call", bot_id=str(uuid.uuid4())))
    headers = sign_standard(secret, body)
    assert runtime.invoke(http_api_event(body, headers))["statusCode"] == 200
    lines = runtime.json_lines()
    cold_starts = [line for line in lines if "ColdStart" in line]
    assert len(cold_starts) == 1
    accepted = [line for line in lines if line.get("correlation_id") == headers["webhook-id"]]
    assert accepted
    assert accepted[-1]["function_name"] == "recall-webhooks-test"
    assert accepted[-1]["cold_start"] is False
    output = "\n".join(runtime.lines)
    assert secret.removeprefix("whsec_") not in output
    assert headers["webhook-signature"].partition(",")[2] not in output
    assert "Traceback" not in output
    assert "Warning" not in output
