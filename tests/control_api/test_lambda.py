"""The control API as API Gateway invokes it: HTTP API v2 events with the IAM caller."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import RECALL_KEY, TOKEN_SECRET
from tests.cli.fake_recall import FakeRecall
from tests.control_api.conftest import PAGE

TEMPLATE = json.loads(
    (
        Path(__file__).parents[1] / "webhooks" / "payloads" / "apigw_http_v2_template.json"
    ).read_text()
)
MEETING = "https://meet.google.com/abc-defg-hij"


def event(
    method: str, path: str, body: Any = None, caller: str = "", **headers: str
) -> dict[str, Any]:
    """An HTTP API (v2) event for ``ANY /v1/{proxy+}`` with the IAM authorizer's context."""
    shaped: dict[str, Any] = copy.deepcopy(TEMPLATE)
    shaped["rawPath"] = path
    shaped["routeKey"] = "ANY /v1/{proxy+}"
    shaped["requestContext"]["http"].update(method=method, path=path)
    shaped["requestContext"]["routeKey"] = "ANY /v1/{proxy+}"
    shaped["headers"] = {"content-type": "application/json", "host": "x", **headers}
    if caller:
        shaped["requestContext"]["authorizer"] = {
            "iam": {
                "userArn": caller,
                "accountId": "123456789012",
                "callerId": "AIDA" + caller[-4:],
            }
        }
    if body is not None:
        shaped["body"] = base64.b64encode(json.dumps(body).encode()).decode()
        shaped["isBase64Encoded"] = True
    return shaped


def in_own_loop(call: Callable[[], None]) -> None:
    """Run ``call`` on a thread whose event loop is closed afterwards.

    Mangum runs each invocation on the calling thread's event loop and never closes it
    (Lambda reuses the process); a test run must not leave it for the garbage collector.
    """
    failure: list[BaseException] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            call()
        except BaseException as exc:
            failure.append(exc)
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def test_handler_serves_api_gateway_events_scoped_by_caller(
    monkeypatch: pytest.MonkeyPatch, dynamodb_endpoint: str, table_name: str
) -> None:
    """The deployed entry point: one Idempotency-Key is two keys for two IAM callers."""
    recall = FakeRecall()
    recall.start()
    try:
        for name, value in {
            "TABLE_NAME": table_name,
            "AGENT_PAGE_URL": PAGE,
            "RECALL_API_KEY": RECALL_KEY,
            "RECALL_API_BASE": f"{recall.url}/{{region}}",
            "RELAY_TOKEN_SECRET": TOKEN_SECRET,
            "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
        }.items():
            monkeypatch.setenv(name, value)
        in_own_loop(lambda: _invoke_as_two_callers(recall))
    finally:
        recall.close()


def _invoke_as_two_callers(recall: FakeRecall) -> None:
    """The invocations, as API Gateway makes them: two callers, one key."""
    from control_api.app import handler

    body = {"meeting_url": MEETING}
    alice = "arn:aws:iam::123456789012:user/alice"
    bob = "arn:aws:iam::123456789012:user/bob0"
    first = handler(event("POST", "/v1/bots", body, alice, **{"idempotency-key": "k"}), None)
    again = handler(event("POST", "/v1/bots", body, alice, **{"idempotency-key": "k"}), None)
    other = handler(event("POST", "/v1/bots", body, bob, **{"idempotency-key": "k"}), None)
    assert first["statusCode"] == again["statusCode"] == other["statusCode"] == 201
    assert json.loads(first["body"]) == json.loads(again["body"])
    assert json.loads(other["body"])["bot_id"] != json.loads(first["body"])["bot_id"]
    assert len(recall.created_ids) == 2
    shown = handler(event("GET", f"/v1/bots/{json.loads(first['body'])['bot_id']}"), None)
    assert shown["statusCode"] == 200
    assert handler(event("GET", "/v1/nowhere"), None)["statusCode"] == 404
