"""Item builders and updates, applied to moto's DynamoDB server: what each writer stores."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from storage import items, schema
from storage.updates import Update

CREATED = datetime(2026, 11, 29, 18, 0, 1, 250_000, tzinfo=UTC)


@pytest.fixture
def client(dynamodb_endpoint: str) -> Any:
    """A low-level client on moto's server, the style every writer uses."""
    return boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1")


def apply(client: Any, table: str, update: Update) -> bool:
    """Send ``update`` as a writer does; False if its condition refused it."""
    serializer = TypeSerializer()
    request = update.request()
    params: dict[str, Any] = {
        "TableName": table,
        "Key": {k: serializer.serialize(v) for k, v in request["Key"].items()},
        "UpdateExpression": request["UpdateExpression"],
        "ExpressionAttributeNames": request["ExpressionAttributeNames"],
        "ExpressionAttributeValues": {
            k: serializer.serialize(v) for k, v in request["ExpressionAttributeValues"].items()
        },
    }
    if "ConditionExpression" in request:
        params["ConditionExpression"] = request["ConditionExpression"]
    try:
        client.update_item(**params)
    except client.exceptions.ConditionalCheckFailedException:
        return False
    return True


def read(client: Any, table: str, pk: str, sk: str) -> dict[str, Any]:
    """One item as plain Python."""
    raw = client.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}})["Item"]
    deserializer = TypeDeserializer()
    decoded: dict[str, Any] = items.plain({k: deserializer.deserialize(v) for k, v in raw.items()})
    return decoded


def status(bot_id: str, code: str, at: str) -> items.BotStatus:
    return {
        "bot_id": bot_id,
        "status": code,
        "sub_code": None,
        "event": f"bot.{code}",
        "updated_at": at,
    }


CREATED_FIELDS: items.BotCreated = {
    "bot_id": "bot-1",
    "session_id": "session-from-cli",
    "region": "eu-central-1",
    "meeting_url": "https://meet.google.com/abc-defg-hij",
    "bot_name": "Assistant",
}


@pytest.mark.parametrize("cli_first", [True, False], ids=["cli-first", "webhook-first"])
def test_the_two_state_writers_never_clobber_each_other(client, table_name: str, cli_first: bool):
    """Whichever writes first, STATE ends with the CLI's record and the webhook's status."""
    webhook = items.bot_status_update(
        status("bot-1", "in_call_recording", "2026-11-29T18:03:20.300000Z"),
        session_id="session-from-metadata",
    )
    cli = items.bot_created_update(CREATED_FIELDS, CREATED)
    for update in [cli, webhook] if cli_first else [webhook, cli]:
        assert apply(client, table_name, update)
    state = read(client, table_name, schema.bot_pk("bot-1"), schema.STATE_SK)
    assert state["status"] == "in_call_recording"
    assert state["region"] == "eu-central-1"
    assert state["session_id"] == "session-from-cli"  # the CLI's is authoritative
    first = "2026-11-29T18:00:01.250000Z" if cli_first else "2026-11-29T18:03:20.300000Z"
    assert (state["created_at"], state["gsi1sk"]) == (first, f"{first}#bot-1")
    assert state["gsi1pk"] == schema.by_day_pk("2026-11-29")


def test_status_update_applies_only_when_newer(client, table_name: str):
    """An older or equal updated_at is refused by the condition; a newer one lands."""
    newer = items.bot_status_update(status("bot-2", "call_ended", "2026-11-29T18:45:01.000000Z"))
    older = items.bot_status_update(status("bot-2", "joining_call", "0999-06-01T00:00:00.000000Z"))
    assert apply(client, table_name, newer) is True
    assert apply(client, table_name, newer) is False
    assert apply(client, table_name, older) is False
    state = read(client, table_name, schema.bot_pk("bot-2"), schema.STATE_SK)
    assert state["status"] == "call_ended"


def test_connection_summary_is_rewritten_whole(client, table_name: str):
    """A later summary (with the end and usage) replaces the earlier one's attributes."""
    start: items.ConnectionSummary = {
        "session_id": "s-1",
        "connection_id": "c-1",
        "started_at": "2026-11-29T18:00:00.000000Z",
        "model": "gpt-realtime-2.1",
        "expires_at": 1_800_000_000,
    }
    end: items.ConnectionSummary = {
        **start,
        "ended_at": "2026-11-29T18:05:00.000000Z",
        "close_code": 1000,
        "usage": {"total_tokens": 42},
        "responses": 3,
    }
    for summary in (start, end):
        assert apply(client, table_name, items.connection_update(summary))
    item = read(
        client,
        table_name,
        schema.session_pk("s-1"),
        schema.connection_sk("2026-11-29T18:00:00.000000Z", "c-1"),
    )
    assert item["close_code"] == 1000
    assert item["usage"] == {"total_tokens": 42}


def test_turn_items_sort_in_time_order_and_store_any_text(client, table_name: str):
    """Turns written with lone surrogates in their text are stored and read back in order."""
    base_ms = 1_764_442_800_000
    for seq, (at_ms, text) in enumerate([(base_ms + 1000, "second"), (base_ms, "first \ud83d")]):
        turn = items.turn_item(
            session_id="s-2", at_ms=at_ms, seq=seq, role="user", text=text, expires_at=1
        )
        serializer = TypeSerializer()
        client.put_item(
            TableName=table_name, Item={k: serializer.serialize(v) for k, v in turn.items()}
        )
    answer = client.query(
        TableName=table_name,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :turn)",
        ExpressionAttributeValues={
            ":pk": {"S": schema.session_pk("s-2")},
            ":turn": {"S": schema.TURN_PREFIX},
        },
    )
    assert [i["text"]["S"] for i in answer["Items"]] == ["first \ufffd", "second"]
    assert [len(i["at"]["S"]) for i in answer["Items"]] == [27, 27]


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("plain", "plain"),
        ("lone \ud83d high", "lone \ufffd high"),
        ("lone \udc00 low", "lone \ufffd low"),
        ("pair 😀 kept", "pair 😀 kept"),
        ("controls \x1b[2J kept", "controls \x1b[2J kept"),
    ],
    ids=["ascii", "lone-high", "lone-low", "real-pair", "controls"],
)
def test_storable_text_replaces_only_what_utf8_cannot_hold(text: str, stored: str):
    """Only lone surrogates change (to U+FFFD): data stays what was said."""
    assert items.storable_text(text) == stored
    stored.encode("utf-8")


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("8b9c2a3e-1f4d-4c7a-9e21-5d6f7a8b9c0d", True),
        ("b" * schema.MAX_ID_BYTES, True),
        ("b" * (schema.MAX_ID_BYTES + 1), False),
        ("😀" * (schema.MAX_ID_BYTES // 4), True),
        ("😀" * (schema.MAX_ID_BYTES // 4 + 1), False),
        ("", False),
        ("bot id", False),
        ("bot\x1b[2J", False),
        ("bot\u202e", False),
        ("bot\u200b", False),
        ("\ud83d", False),
        ("bot\x85", False),
    ],
    ids=[
        "uuid",
        "at-limit",
        "over-limit",
        "emoji-at-limit",
        "emoji-over-limit-in-bytes",
        "empty",
        "space",
        "escape",
        "bidi",
        "zero-width",
        "surrogate",
        "c1-next-line",
    ],
)
def test_ids_inside_keys_are_short_printable_and_without_whitespace(value: str, valid: bool):
    """What the webhook accepts as a bot or session id."""
    assert schema.is_valid_id(value) is valid


def test_an_update_refuses_what_it_cannot_render():
    """Nothing to set, a clash between the two maps, or an order on an unset attribute."""
    with pytest.raises(ValueError, match="at least one"):
        Update(pk="p", sk="s", assign={}).request()
    with pytest.raises(ValueError, match="both"):
        Update(pk="p", sk="s", assign={"a": 1}, assign_if_absent={"a": 2}).request()
    with pytest.raises(ValueError, match="not set"):
        Update(pk="p", sk="s", assign={"a": 1}, only_if_newer="b").request()
