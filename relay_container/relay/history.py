"""Loading a session's stored conversation: the newest turns, bounded, read from the table.

:func:`load_turns` reads ``SESSION#<id>`` / ``TURN#…`` items (``storage.items.Turn``)
newest first, in a worker thread (boto3 blocks), and keeps what fits the bounds, oldest
first, ready for ``relay.conversation.seed_events``. Storage failing or answering late
is not an error for the caller: it is logged once and the conversation starts afresh.
:func:`load_tool_calls` and :func:`load_spent` read a resumed session's tool calls and
what it already used of its bill, likewise.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from relay.conversation import (
    LOAD_TIMEOUT_SECONDS,
    MAX_HISTORY_BYTES,
    MAX_HISTORY_TURNS,
    MAX_QUERY_PAGES,
    Turn,
    turn_from_item,
)
from relay.usage_meter import Spent
from storage import schema, times
from storage.items import plain

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)


async def load_turns(
    session_id: str,
    *,
    client: DynamoDBClient,
    table_name: str,
    max_turns: int = MAX_HISTORY_TURNS,
    max_bytes: int = MAX_HISTORY_BYTES,
    timeout: float = LOAD_TIMEOUT_SECONDS,  # noqa: ASYNC109 - a bound that answers, never raises
) -> list[Turn]:
    """The newest turns of ``session_id`` from the table, oldest first, within both bounds.

    Reads ``SESSION#<id>`` items whose sort key begins with ``TURN#`` newest first, in a
    worker thread (boto3 blocks), and stops at the bounds. Malformed items are skipped.
    Storage failing or answering late is not an error for the caller: it is logged once
    and the conversation starts afresh (``[]``), so a resume never fails on the table.
    """
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.to_thread(
                _query_newest, client, table_name, session_id, max_turns, max_bytes
            )
    except (BotoCoreError, ClientError, TimeoutError) as error:
        logger.warning(
            "conversation load failed; resuming without history",
            extra={"session_id": session_id, "error": type(error).__name__},
        )
        return []


def _query_newest(
    client: DynamoDBClient, table_name: str, session_id: str, max_turns: int, max_bytes: int
) -> list[Turn]:
    deserializer = TypeDeserializer()
    newest_first: list[Turn] = []
    total = 0
    request: dict[str, Any] = {
        "TableName": table_name,
        "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
        "ProjectionExpression": "#role, #text, #at, #item_id",
        "ExpressionAttributeNames": {
            "#pk": schema.PARTITION_KEY,
            "#sk": schema.SORT_KEY,
            "#role": "role",
            "#text": "text",
            "#at": "at",
            "#item_id": "item_id",
        },
        "ExpressionAttributeValues": {
            ":pk": {"S": schema.session_pk(session_id)},
            ":prefix": {"S": schema.TURN_PREFIX},
        },
        "ScanIndexForward": False,
        "Limit": max(1, min(max_turns, 100)),
    }
    for _ in range(MAX_QUERY_PAGES):
        page = client.query(**request)
        for raw in page.get("Items", []):
            item = plain({key: deserializer.deserialize(value) for key, value in raw.items()})
            turn = turn_from_item(item)
            if turn is None:
                continue
            if len(newest_first) >= max_turns or total + turn.size > max_bytes:
                newest_first.reverse()
                return newest_first
            newest_first.append(turn)
            total += turn.size
        last_key = page.get("LastEvaluatedKey")
        if not last_key:
            break
        request["ExclusiveStartKey"] = last_key
    newest_first.reverse()
    return newest_first


#: Tool call records loaded at most for one resume (the newest kept).
MAX_TOOL_CALLS: Final = 200


async def load_tool_calls(
    session_id: str,
    *,
    client: DynamoDBClient,
    table_name: str,
    timeout: float = LOAD_TIMEOUT_SECONDS,  # noqa: ASYNC109 - a bound that answers, never raises
) -> list[dict[str, Any]]:
    """The session's relay tool call records (``storage.items.ToolCallRecord``), oldest
    first, the newest :data:`MAX_TOOL_CALLS`; ``[]`` (logged) when storage fails."""
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.to_thread(_query_tool_calls, client, table_name, session_id)
    except (BotoCoreError, ClientError, TimeoutError) as error:
        logger.warning(
            "tool call records could not be loaded; resuming without them",
            extra={"session_id": session_id, "error": type(error).__name__},
        )
        return []


def _query_tool_calls(
    client: DynamoDBClient, table_name: str, session_id: str
) -> list[dict[str, Any]]:
    deserializer = TypeDeserializer()
    page = client.query(
        TableName=table_name,
        KeyConditionExpression="#pk = :pk AND begins_with(#sk, :prefix)",
        ExpressionAttributeNames={"#pk": schema.PARTITION_KEY, "#sk": schema.SORT_KEY},
        ExpressionAttributeValues={
            ":pk": {"S": schema.session_pk(session_id)},
            ":prefix": {"S": schema.TOOL_CALL_PREFIX},
        },
        ScanIndexForward=False,
        Limit=MAX_TOOL_CALLS,
    )
    found = [
        plain({key: deserializer.deserialize(value) for key, value in raw.items()})
        for raw in page.get("Items", [])
    ]
    found.reverse()
    return [item for item in found if isinstance(item.get("call_id"), str)]


#: Connections of one session read at most for its bill (a meeting has a handful).
MAX_CONNECTIONS: Final = 500


async def load_spent(
    session_id: str,
    *,
    client: DynamoDBClient,
    table_name: str,
    now: float,
    timeout: float = LOAD_TIMEOUT_SECONDS,  # noqa: ASYNC109 - a bound that answers, never raises
) -> Spent:
    """What the session used before (``relay.usage_meter.Spent``): seconds since its first
    connection started (``now``: epoch seconds) and the usage its connections stored.

    Reads ``SESSION#<id>`` / ``CONN#…`` items (``storage.items.Connection``). Storage
    failing or late gives ``Spent()`` and a warning: the limits then count from now.
    """
    try:
        async with asyncio.timeout(timeout):
            items = await asyncio.to_thread(_query_connections, client, table_name, session_id)
    except (BotoCoreError, ClientError, TimeoutError) as error:
        logger.warning(
            "earlier usage could not be loaded; the bill counts from now",
            extra={"session_id": session_id, "error": type(error).__name__},
        )
        return Spent()
    return spent_of(items, now)


def spent_of(items: list[dict[str, Any]], now: float) -> Spent:
    """``Spent`` from a session's stored connections (malformed attributes skipped)."""
    usage: dict[str, int] = {}
    first: float | None = None
    for item in items:
        started = item.get("started_at")
        moment = times.parse_time(started) if isinstance(started, str) else None
        if moment is not None:
            first = moment.timestamp() if first is None else min(first, moment.timestamp())
        stored = item.get("usage")
        for name, value in (stored if isinstance(stored, dict) else {}).items():
            if isinstance(name, str) and isinstance(value, int) and value >= 0:
                usage[name] = usage.get(name, 0) + value
    seconds = max(0.0, now - first) if first is not None else 0.0
    return Spent(seconds=seconds, usage=usage)


def _query_connections(
    client: DynamoDBClient, table_name: str, session_id: str
) -> list[dict[str, Any]]:
    deserializer = TypeDeserializer()
    page = client.query(
        TableName=table_name,
        KeyConditionExpression="#pk = :pk AND begins_with(#sk, :prefix)",
        ProjectionExpression="#started, #usage",
        ExpressionAttributeNames={
            "#pk": schema.PARTITION_KEY,
            "#sk": schema.SORT_KEY,
            "#started": "started_at",
            "#usage": "usage",
        },
        ExpressionAttributeValues={
            ":pk": {"S": schema.session_pk(session_id)},
            ":prefix": {"S": schema.CONNECTION_PREFIX},
        },
        Limit=MAX_CONNECTIONS,
    )
    return [
        plain({key: deserializer.deserialize(value) for key, value in raw.items()})
        for raw in page.get("Items", [])
    ]
