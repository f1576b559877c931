"""WebhookStore against moto's DynamoDB server: stored once, ordered history, state forward only."""

from __future__ import annotations

import os
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from functions.webhooks.errors import StoreError, StoreUnavailableError
from functions.webhooks.events import BotStatusEvent, parse_event
from functions.webhooks.store import MAX_STORED_BODY_CHARS, DeliveryRecord, Stored, WebhookStore
from storage import schema
from tests.conftest import free_port
from tests.webhooks.conftest import Table, body_of, payload

RECEIVED = datetime(2026, 11, 29, 18, 50, tzinfo=UTC)


@pytest.fixture
def store(dynamodb_endpoint: str, table: Table) -> WebhookStore:
    """The store on a fresh table, its client pointed at the moto server."""
    return WebhookStore(
        table.name,
        retention_days=7,
        client=lambda: boto3.client(
            "dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1"
        ),
    )


def record(name: str, bot_id: str, webhook_id: str | None = None, **changes: str):
    """A parsed delivery of a recorded payload about ``bot_id``."""
    body = body_of(payload(name, bot_id=bot_id, **changes))
    return DeliveryRecord(
        webhook_id or f"msg_{uuid.uuid4().hex}", body, RECEIVED, parse_event(body, RECEIVED)
    )


def deliver(store: WebhookStore, rec: DeliveryRecord) -> Stored:
    """What the receiver does: store once, then advance (also on identical duplicates)."""
    stored = store.record_delivery_once(rec)
    if isinstance(rec.event, BotStatusEvent) and stored is not Stored.CONFLICT:
        store.advance_bot_state(rec.event)
    return stored


def test_replayed_delivery_is_stored_once(store: WebhookStore, table: Table):
    """The same webhook id delivered three times leaves one delivery and one history item."""
    bot = str(uuid.uuid4())
    rec = record("bot.in_call_recording", bot, webhook_id="msg_replayed")
    assert [deliver(store, rec) for _ in range(3)] == [
        Stored.NEW,
        Stored.DUPLICATE,
        Stored.DUPLICATE,
    ]
    assert table.count_deliveries("msg_replayed") == 1
    assert len(table.history(bot)) == 1
    assert table.size() == 3  # delivery, history, state


def test_state_never_moves_backwards(store: WebhookStore, table: Table):
    """Whatever order a bot's events arrive in, its state is the newest and history is in order."""
    bot = str(uuid.uuid4())
    names = [
        "bot.joining_call",
        "bot.in_waiting_room",
        "bot.in_call_recording",
        "bot.call_ended",
        "bot.done",
    ]
    records = [record(n, bot) for n in names]
    shuffled = records[:]
    random.Random(7).shuffle(shuffled)
    shuffled.remove(records[-1])
    shuffled.insert(0, records[-1])  # the newest first: everything after it is older
    for rec in shuffled:
        deliver(store, rec)
    state = table.state(bot)
    assert state is not None
    assert state["status"] == "done"
    assert state["event"] == "bot.done"
    assert state["updated_at"] == "2026-11-29T18:45:09.500000Z"
    assert [h["event"] for h in table.history(bot)] == names


def test_advance_is_idempotent_and_reports_no_move(store: WebhookStore, table: Table):
    """Applying the same or an older status again changes nothing and says so."""
    bot = str(uuid.uuid4())
    newer = record("bot.call_ended", bot).event
    older = record("bot.joining_call", bot).event
    assert isinstance(newer, BotStatusEvent)
    assert isinstance(older, BotStatusEvent)
    assert store.advance_bot_state(newer) is True
    before = table.state(bot)
    assert store.advance_bot_state(newer) is False
    assert store.advance_bot_state(older) is False
    assert table.state(bot) == before


def test_state_clears_sub_code_when_new_status_has_none(store: WebhookStore, table: Table):
    """A later status without a sub-code does not keep the previous status's sub-code."""
    bot = str(uuid.uuid4())
    deliver(store, record("bot.fatal", bot, updated_at="2026-11-29T18:00:00Z"))
    deliver(store, record("bot.done", bot, updated_at="2026-11-29T18:01:00Z"))
    state = table.state(bot)
    assert state is not None
    assert (state["status"], state["sub_code"]) == ("done", None)


def test_never_clobbers_what_the_cli_wrote(store: WebhookStore, table: Table):
    """Region, meeting URL, name, session id, creation time and index keys from the CLI stay."""
    bot = str(uuid.uuid4())
    cli_item = {
        "pk": schema.bot_pk(bot),
        "sk": schema.STATE_SK,
        "bot_id": bot,
        "session_id": "session-from-cli",
        "region": "eu-central-1",
        "meeting_url": "https://meet.google.com/abc-defg-hij",
        "bot_name": "Assistant",
        "created_at": "2026-11-29T17:59:00.000Z",
        "gsi1pk": schema.by_day_pk("2026-11-29"),
        "gsi1sk": schema.by_day_sk("2026-11-29T17:59:00.000Z", bot),
    }
    table.client.put_item(TableName=table.name, Item={k: {"S": v} for k, v in cli_item.items()})
    deliver(store, record("bot.in_call_recording", bot, session_id="session-from-metadata"))
    state = table.state(bot)
    assert state is not None
    assert state["status"] == "in_call_recording"
    assert {k: state[k] for k in cli_item} == cli_item


def test_first_event_makes_the_bot_listable_by_day(store: WebhookStore, table: Table):
    """A bot first seen through a webhook appears in the by_day index and keeps its session id."""
    bot = str(uuid.uuid4())
    deliver(store, record("bot.joining_call", bot, session_id="s-42"))
    answer = table.client.query(
        TableName=table.name,
        IndexName=schema.BY_DAY_INDEX,
        KeyConditionExpression="gsi1pk = :d",
        ExpressionAttributeValues={":d": {"S": schema.by_day_pk("2026-11-29")}},
    )
    assert [i["bot_id"]["S"] for i in answer["Items"]] == [bot]
    state = table.state(bot)
    assert state is not None
    assert state["session_id"] == "s-42"
    assert state["created_at"] == "2026-11-29T18:03:10.100000Z"


def test_media_and_realtime_events_join_history_without_moving_state(
    store: WebhookStore, table: Table
):
    """recording.done, transcript.data and participant events are history, not bot status."""
    bot = str(uuid.uuid4())
    deliver(store, record("bot.in_call_recording", bot))
    for name in ("participant_events.join", "transcript.data", "recording.done"):
        deliver(store, record(name, bot))
    state = table.state(bot)
    assert state is not None
    assert state["status"] == "in_call_recording"
    history = table.history(bot)
    assert [h["event"] for h in history] == [
        "bot.in_call_recording",
        "participant_events.join",
        "transcript.data",
        "recording.done",
    ]
    assert history[2]["summary"] == "Ann Example: Can you hear me?"


def test_raw_items_expire_after_retention(store: WebhookStore, table: Table):
    """Delivery and history items carry expires_at = receive time + retention; state does not."""
    bot = str(uuid.uuid4())
    rec = record("bot.done", bot)
    deliver(store, rec)
    expected = int((RECEIVED + timedelta(days=7)).timestamp())
    delivery = table.delivery(rec.webhook_id)
    assert delivery is not None
    assert delivery[schema.TTL_ATTRIBUTE] == expected
    assert table.history(bot)[0][schema.TTL_ATTRIBUTE] == expected
    state = table.state(bot)
    assert state is not None
    assert schema.TTL_ATTRIBUTE not in state


def _decode(item: dict[str, Any]) -> bytes:
    import base64
    import zlib

    encoding = item.get("body_encoding")
    if encoding == "base64":
        return base64.b64decode(item["body"])
    if encoding == "zlib+base64":
        return zlib.decompress(base64.b64decode(item["body"]))
    text: str = item["body"]
    return text.encode()


@pytest.mark.parametrize(
    ("body", "encoding", "truncated"),
    [
        (b'{"event": "bot.done"', None, False),
        (b"\xff\xfe\x00binary", "base64", False),
        (b'{"pad": "' + b"a" * 900_000 + b'"}', "zlib+base64", False),
        (os.urandom(600_000), "base64", True),
    ],
    ids=["utf8-text", "not-utf8", "large-compressible", "large-random"],
)
def test_unparseable_body_is_kept_raw(
    store: WebhookStore, table: Table, body: bytes, encoding: str | None, truncated: bool
):
    """A body we cannot parse is stored (within DynamoDB's item limit) with its parse error."""
    rec = DeliveryRecord(f"msg_{uuid.uuid4().hex}", body, RECEIVED, None, "body is not JSON")
    assert store.record_delivery_once(rec) is Stored.NEW
    item = table.delivery(rec.webhook_id)
    assert item is not None
    assert item["parse_error"] == "body is not JSON"
    assert item.get("body_encoding") == encoding
    assert item.get("body_truncated", False) is truncated
    assert len(item["body"]) <= MAX_STORED_BODY_CHARS
    decoded = _decode(item)
    assert decoded == body if not truncated else body.startswith(decoded)


def test_unreachable_dynamodb_is_retryable(table: Table):
    """With nothing listening, the store raises StoreUnavailableError (503: Recall retries)."""
    port = free_port()
    down = WebhookStore(
        table.name,
        client=lambda: boto3.client(
            "dynamodb", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1"
        ),
    )
    with pytest.raises(StoreUnavailableError) as caught:
        down.record_delivery_once(record("bot.done", "b"))
    assert caught.value.status_code == 503


def test_missing_table_is_a_server_error(dynamodb_endpoint: str):
    """A table that does not exist raises StoreError (500), naming the DynamoDB error code."""
    missing = WebhookStore(
        "no-such-table",
        client=lambda: boto3.client(
            "dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1"
        ),
    )
    with pytest.raises(StoreError) as caught:
        missing.record_delivery_once(record("bot.done", "b"))
    assert caught.value.status_code == 500
    assert "ResourceNotFound" in caught.value.message


@pytest.mark.parametrize("encoding", [None, "zlib+base64"], ids=["text", "compressed"])
def test_duplicates_of_deliveries_stored_before_digests_are_judged_by_their_body(
    store: WebhookStore, table: Table, encoding: str | None
):
    """An item written before body_sha256 existed is compared by its body: same → duplicate."""
    import base64
    import zlib

    bot = str(uuid.uuid4())
    rec = record("bot.call_ended", bot, webhook_id=f"msg_{uuid.uuid4().hex}")
    stored = (
        rec.body.decode()
        if encoding is None
        else base64.b64encode(zlib.compress(rec.body)).decode()
    )
    old_item = {
        "pk": {"S": schema.delivery_pk(rec.webhook_id)},
        "sk": {"S": schema.DELIVERY_SK},
        "webhook_id": {"S": rec.webhook_id},
        "received_at": {"S": "2026-11-29T18:50:00.000000Z"},
        "body": {"S": stored},
    }
    if encoding is not None:
        old_item["body_encoding"] = {"S": encoding}
    table.client.put_item(TableName=table.name, Item=old_item)

    assert deliver(store, rec) is Stored.DUPLICATE
    other = record("bot.joining_call", bot, webhook_id=rec.webhook_id)
    assert deliver(store, other) is Stored.CONFLICT
    state = table.state(bot)
    assert state is not None
    assert state["status"] == "call_ended"  # the duplicate's repair path ran, the conflict did not
    assert table.history(bot) == []  # neither wrote history: the id was taken


def test_conflicting_body_under_a_stored_id_writes_nothing(store: WebhookStore, table: Table):
    """A second body under a stored id leaves the delivery, history and state as they were."""
    bot = str(uuid.uuid4())
    first = record("bot.in_call_recording", bot, webhook_id="msg_reused")
    assert deliver(store, first) is Stored.NEW
    before = (table.delivery("msg_reused"), table.history(bot), table.state(bot))
    assert deliver(store, record("bot.done", bot, webhook_id="msg_reused")) is Stored.CONFLICT
    assert (table.delivery("msg_reused"), table.history(bot), table.state(bot)) == before
