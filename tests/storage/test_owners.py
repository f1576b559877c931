"""Session owner items on moto's DynamoDB server: a claim never goes back in time, and a
release never erases another task's claim."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from storage import owners

A = owners.SessionOwner("sess-1", "10.0.1.5:8081", "task-a", since_ms=1_000)
B = owners.SessionOwner("sess-1", "10.0.2.9:8081", "task-b", since_ms=2_000)


@pytest.fixture
def table(dynamodb_endpoint: str, table_name: str) -> Any:
    return boto3.resource("dynamodb", endpoint_url=dynamodb_endpoint).Table(table_name)


def claim(table: Any, owner: owners.SessionOwner) -> bool:
    try:
        table.put_item(**owners.claim_request(owner, expires_at=9_999_999_999))
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        return False
    return True


def release(table: Any, instance: str) -> bool:
    try:
        table.update_item(**owners.release_request("sess-1", instance))
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        return False
    return True


def recorded(table: Any) -> owners.SessionOwner | None:
    item = table.get_item(Key=owners.owner_key("sess-1"), ConsistentRead=True).get("Item")
    return (
        owners.owner_from_item({k: (int(v) if k == "since_ms" else v) for k, v in item.items()})
        if item
        else None
    )


def test_the_newer_claim_wins_whatever_order_the_writes_land_in(table: Any) -> None:
    """The task a session moved to keeps it even if the old task's claim is written later."""
    assert claim(table, B)
    assert not claim(table, A)
    assert recorded(table) == B


def test_a_release_removes_only_its_own_claim(table: Any) -> None:
    """The task a session left cannot erase its successor's claim; the successor can."""
    assert claim(table, A)
    assert claim(table, B)
    assert not release(table, "task-a")
    assert recorded(table) == B
    assert release(table, "task-b")
    assert recorded(table) is None
    assert not claim(table, A)  # a late claim from before cannot bring a finished owner back
    assert recorded(table) is None


def test_a_session_can_come_back_to_a_task(table: Any) -> None:
    """A later claim by the first task again wins over the second's."""
    assert claim(table, A)
    assert claim(table, B)
    assert claim(table, owners.SessionOwner("sess-1", A.address, "task-a", since_ms=3_000))
    assert recorded(table) == owners.SessionOwner("sess-1", A.address, "task-a", 3_000)


@pytest.mark.parametrize(
    "address",
    [
        "",
        "10.0.0.1",
        "10.0.0.1:0",
        "10.0.0.1:65536",
        ":8081",
        "10.0.0.1:80a",
        "a b:1",
        "x" * 300 + ":1",
        "10.0.0.1:8081\n",
    ],
    ids=[
        "empty",
        "no-port",
        "port-0",
        "port-high",
        "no-host",
        "port-text",
        "space",
        "too-long",
        "newline",
    ],
)
def test_malformed_addresses_are_refused(address: str) -> None:
    """An address that is not host:port is neither written nor trusted when read."""
    with pytest.raises(ValueError, match="host:port"):
        owners.owner_item(owners.SessionOwner("s", address, "i", 1), expires_at=1)
    item = {"session_id": "s", "address": address, "instance": "i", "since_ms": 1}
    assert owners.owner_from_item(item) is None


def test_unstorable_session_ids_are_refused() -> None:
    """A session id that cannot be part of a key is refused before any write."""
    with pytest.raises(ValueError, match="key"):
        owners.owner_item(owners.SessionOwner("a b", "h:1", "i", 1), expires_at=1)
