"""The receiver as Recall sees it: uvicorn serving functions.webhooks.app:app on a real port.

The server is a subprocess configured only by its environment (TABLE_NAME, two secrets in
RECALL_WEBHOOK_SECRET, AWS_ENDPOINT_URL_DYNAMODB at the moto server), exactly as ``make dev``
runs it. Tests use fresh bot and webhook ids, so they share the module's server and table.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import TIMEOUT
from tests.webhooks.conftest import (
    PAYLOADS,
    Receiver,
    body_of,
    new_secret,
    new_webhook_id,
    payload,
    sign_standard,
    sign_svix,
)

MIB = 1024 * 1024


@pytest.fixture
def receiver(served_receiver: Receiver) -> Receiver:
    """The module's running receiver."""
    return served_receiver


def test_healthz_answers_ok(receiver: Receiver):
    """GET /healthz answers 200 ok (the API's and make dev's liveness check)."""
    response = httpx.get(receiver.url + "/healthz", timeout=TIMEOUT)
    assert (response.status_code, response.text) == (200, "ok")


def test_signed_delivery_is_stored_and_shows_as_bot_state(receiver: Receiver):
    """A signed bot status change answers 200 and becomes the bot's state, with its history."""
    bot = str(uuid.uuid4())
    response = receiver.deliver(payload("bot.in_call_recording", bot_id=bot, session_id="s-1"))
    assert response.status_code == 200
    assert response.json()["status"] == "stored"
    state = receiver.table.state(bot)
    assert state is not None
    assert (state["status"], state["session_id"]) == ("in_call_recording", "s-1")
    assert [h["event"] for h in receiver.table.history(bot)] == ["bot.in_call_recording"]


def test_replayed_delivery_is_stored_once(receiver: Receiver):
    """Svix's retries (same webhook id) answer 200 'duplicate' and store nothing twice."""
    bot = str(uuid.uuid4())
    body = body_of(payload("bot.done", bot_id=bot))
    headers = sign_standard(receiver.secrets[0], body)
    statuses = [receiver.post(body, headers).json()["status"] for _ in range(3)]
    assert statuses == ["stored", "duplicate", "duplicate"]
    assert receiver.table.count_deliveries(headers["webhook-id"]) == 1
    assert len(receiver.table.history(bot)) == 1


def test_out_of_order_events_never_move_state_backwards(receiver: Receiver):
    """bot.done arriving before joining/recording leaves the bot 'done', history in event order."""
    bot = str(uuid.uuid4())
    for name in ("bot.done", "bot.joining_call", "bot.in_call_recording", "bot.call_ended"):
        assert receiver.deliver(payload(name, bot_id=bot)).status_code == 200
    state = receiver.table.state(bot)
    assert state is not None
    assert state["status"] == "done"
    assert [h["event"] for h in receiver.table.history(bot)] == [
        "bot.joining_call",
        "bot.in_call_recording",
        "bot.call_ended",
        "bot.done",
    ]


def test_legacy_svix_headers_are_accepted(receiver: Receiver):
    """A legacy workspace's svix-id/svix-timestamp/svix-signature delivery is stored."""
    bot = str(uuid.uuid4())
    body = body_of(payload("bot.joining_call", bot_id=bot))
    response = receiver.post(body, sign_svix(receiver.secrets[0], body))
    assert response.status_code == 200
    assert receiver.table.state(bot) is not None


def test_rotated_secret_list_accepts_either_secret(receiver: Receiver):
    """With 'whsec_new whsec_old' configured, deliveries signed with either are stored."""
    for secret in receiver.secrets:
        bot = str(uuid.uuid4())
        body = body_of(payload("bot.joining_call", bot_id=bot))
        assert receiver.post(body, sign_standard(secret, body)).status_code == 200
        assert receiver.table.state(bot) is not None


@pytest.mark.parametrize("name", sorted(p.stem for p in PAYLOADS.glob("[!a]*.json")))
def test_every_recall_event_shape_is_acknowledged(receiver: Receiver, name: str):
    """Every recorded Recall event type, known or not, answers 200 and is stored."""
    event = payload(name)
    body = body_of(event)
    headers = sign_standard(receiver.secrets[0], body)
    response = receiver.post(body, headers)
    assert response.status_code == 200
    assert response.json()["status"] in {"stored", "duplicate"}
    delivery = receiver.table.delivery(headers["webhook-id"])
    assert delivery is not None
    assert delivery["event"] == name
    assert "parse_error" not in delivery


def _hostile_cases(secret: str) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    bot_body = body_of(payload("bot.done", bot_id="hostile-bot"))
    good = sign_standard(secret, bot_body)
    yield "unsigned", bot_body, {"content-type": "application/json"}
    yield "missing-signature", bot_body, {k: v for k, v in good.items() if k != "webhook-signature"}
    yield "missing-id", bot_body, {k: v for k, v in good.items() if k != "webhook-id"}
    yield "missing-timestamp", bot_body, {k: v for k, v in good.items() if k != "webhook-timestamp"}
    yield "tampered-body", bot_body.replace(b"done", b"fatal", 1), good
    yield "wrong-secret", bot_body, sign_standard(new_secret(), bot_body)
    stale = datetime.now(UTC) - timedelta(minutes=6)
    yield "stale-timestamp", bot_body, sign_standard(secret, bot_body, at=stale)
    future = datetime.now(UTC) + timedelta(minutes=6)
    yield "future-timestamp", bot_body, sign_standard(secret, bot_body, at=future)
    yield "garbage-signature", bot_body, {**good, "webhook-signature": "v1,Zm9v"}
    yield "non-json-unsigned", b"not json", {"content-type": "text/plain"}


HOSTILE_IDS = [case[0] for case in _hostile_cases(new_secret())]


@pytest.mark.parametrize("case", HOSTILE_IDS)
def test_hostile_delivery_is_rejected_and_nothing_stored(receiver: Receiver, case: str):
    """A forged, tampered, replayed-late or future-dated delivery answers 401 and stores nothing."""
    cases = {c[0]: c[1:] for c in _hostile_cases(receiver.secrets[0])}
    body, headers = cases[case]
    before = receiver.table.size()
    response = receiver.post(body, headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_signature"
    assert receiver.table.size() == before
    assert receiver.table.state("hostile-bot") is None


def test_signed_non_json_is_kept_raw_and_acknowledged(receiver: Receiver):
    """A signed body we cannot parse answers 2xx (no day of retries) and is kept raw, flagged."""
    body = b"<html>not what we expected</html>"
    headers = sign_standard(receiver.secrets[0], body)
    response = receiver.post(body, headers)
    assert response.status_code == 200
    assert response.json()["status"] == "stored_unparsed"
    delivery = receiver.table.delivery(headers["webhook-id"])
    assert delivery is not None
    assert delivery["body"] == body.decode()
    assert "not JSON" in delivery["parse_error"]


def test_declared_oversized_body_is_refused(receiver: Receiver):
    """A Content-Length over 1 MiB answers 413 before the body is read or verified."""
    body = b"x" * (MIB + 1)
    headers = sign_standard(receiver.secrets[0], body)
    response = receiver.post(body, headers)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert receiver.table.delivery(headers["webhook-id"]) is None


def test_streamed_oversized_body_is_refused(receiver: Receiver):
    """A chunked body (no Content-Length) is cut off at 1 MiB with 413."""
    headers = sign_standard(receiver.secrets[0], b"x")

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"x" * (64 * 1024)

    response = httpx.post(receiver.webhook_url, content=chunks(), headers=headers, timeout=TIMEOUT)
    assert response.status_code == 413
    assert receiver.table.delivery(headers["webhook-id"]) is None


def test_body_of_exactly_one_mib_is_accepted(receiver: Receiver):
    """A signed body of exactly 1 MiB is within the limit: stored (compressed) and acknowledged."""
    event = payload("bot.breakout_room_opened", bot_id=str(uuid.uuid4()))
    event["padding"] = ""
    event["padding"] = "p" * (MIB - len(body_of(event)))
    body = body_of(event)
    assert len(body) == MIB
    headers = sign_standard(receiver.secrets[0], body)
    response = receiver.post(body, headers)
    assert response.status_code == 200
    delivery = receiver.table.delivery(headers["webhook-id"])
    assert delivery is not None
    assert delivery["body_encoding"] == "zlib+base64"


def test_unknown_route_is_404(receiver: Receiver):
    """Anything but the two routes answers 404 and touches nothing."""
    response = httpx.post(receiver.url + "/webhooks/other", content=b"{}", timeout=TIMEOUT)
    assert response.status_code == 404


def test_logs_and_metrics_never_carry_secrets_signatures_or_bodies(receiver: Receiver):
    """The server's output has EMF metrics and JSON logs with the webhook id, never secrets."""
    marker = f"marker-{uuid.uuid4().hex}"
    event = payload("transcript.data")
    event["data"]["data"]["words"][0]["text"] = marker
    body = body_of(event)
    webhook_id = new_webhook_id()
    headers = sign_standard(receiver.secrets[0], body, webhook_id=webhook_id)
    assert receiver.post(body, headers).status_code == 200
    bad = {**headers, "webhook-id": new_webhook_id()}
    assert receiver.post(body, bad).status_code == 401
    assert receiver.output is not None
    output = receiver.output.read_text()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(line.get("correlation_id") == webhook_id for line in lines)
    metric_names = {
        m["Name"]
        for line in lines
        for d in line.get("_aws", {}).get("CloudWatchMetrics", [])
        for m in d["Metrics"]
    }
    assert {"DeliveriesStored", "DeliveriesRejected"} <= metric_names
    signature = headers["webhook-signature"].partition(",")[2]
    for forbidden in (marker, signature, *(s.removeprefix("whsec_") for s in receiver.secrets)):
        assert forbidden not in output
    assert "Warning" not in output
    assert "Traceback" not in output
