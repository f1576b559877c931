"""The table's key schema: sort keys order by time, and the local table matches the schema."""

from __future__ import annotations

import boto3

from storage import schema
from storage.items import plain


def test_turn_keys_sort_in_time_order_across_digit_counts() -> None:
    """Turns read back in the order they happened, even when the numbers grow a digit."""
    keys = [schema.turn_sk(999, 9), schema.turn_sk(1000, 0), schema.turn_sk(1000, 10)]
    assert sorted(keys) == keys


def test_event_keys_sort_by_the_events_own_time() -> None:
    """A bot's history is ordered by Recall's updated_at, whatever the delivery order."""
    late = schema.event_sk("2026-11-29T10:00:05.000000+00:00", "msg_b")
    early = schema.event_sk("2026-11-29T10:00:01.000000+00:00", "msg_a")
    assert sorted([late, early]) == [early, late]


def test_partitions_do_not_collide() -> None:
    """A bot, a session and a delivery with the same id live in different partitions."""
    same = "abc"
    assert len({schema.bot_pk(same), schema.session_pk(same), schema.delivery_pk(same)}) == 3


def test_local_table_has_the_deployed_keys_index_and_ttl(dynamodb_endpoint: str, table_name: str):
    """The table the tests and `voicebot dev` create has the schema's keys, index and TTL."""
    client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1")
    table = client.describe_table(TableName=table_name)["Table"]
    keys = {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]}
    assert keys == {schema.PARTITION_KEY: "HASH", schema.SORT_KEY: "RANGE"}
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == [schema.BY_DAY_INDEX]
    ttl = client.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == schema.TTL_ATTRIBUTE


def test_plain_turns_dynamodb_numbers_back_into_python_numbers(
    dynamodb_endpoint: str, table_name: str
) -> None:
    """Numbers written as int come back as int (not Decimal) through plain()."""
    table = boto3.resource(
        "dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1"
    ).Table(table_name)
    table.put_item(Item={"pk": "p", "sk": "s", "n": 3, "nested": {"m": [1, 2]}})
    item = plain(table.get_item(Key={"pk": "p", "sk": "s"})["Item"])
    assert item["n"] == 3
    assert isinstance(item["n"], int)
    assert item["nested"] == {"m": [1, 2]}
