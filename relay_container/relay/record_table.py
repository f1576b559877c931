"""RecordTable: the session records' table, written with bounded retries of its own.

Batch puts (``BatchWriteItem``, its ``UnprocessedItems`` retried) and updates
(``UpdateItem``) of one table, each attempted at most ``RetryPolicy.max_attempts`` times
with exponential backoff and full jitter; boto3 runs in a worker thread with short
botocore timeouts and no botocore retries. What became of each record (written, dropped,
a failed attempt) is told to its :class:`WriteOutcomes` (the recorder's counters and
rate-limited warnings); this module keeps no counters and logs nothing.
"""

from __future__ import annotations

import asyncio
import functools
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

import boto3
from boto3.dynamodb.types import TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from storage import items, schema

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: DynamoDB error codes worth another attempt (anything 5xx is too).
RETRYABLE_ERROR_CODES: Final[frozenset[str]] = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "LimitExceededException",
    }
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded attempts with exponential backoff and full jitter (AWS architecture blog)."""

    max_attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 2.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(0.0, ceiling)


DEFAULT_RETRY: Final = RetryPolicy()


def dynamodb_client(
    *,
    region: str | None,
    endpoint_url: str | None = None,
    connect_timeout: float = 2.0,
    read_timeout: float = 2.0,
) -> DynamoDBClient:
    """A DynamoDB client with short timeouts and no retries of its own (blocking: use a thread).

    A fresh ``boto3`` session each time, because the default one is not thread-safe.
    """
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": 1},
        max_pool_connections=4,
    )
    client: DynamoDBClient = boto3.session.Session().client(
        "dynamodb", region_name=region, endpoint_url=endpoint_url, config=config
    )
    return client


class WriteOutcomes(Protocol):
    """Who is told what became of the records a :class:`RecordTable` writes."""

    def settled(self, *, written: int = 0, dropped: int = 0) -> None:
        """``written`` records are stored; ``dropped`` ones ran out of attempts."""

    def failed_attempt(self, error: Exception | None) -> None:
        """One attempt failed (``None``: throttled, part of a batch came back)."""


class RecordTable:
    """One table's writes with bounded retries; the client is made on first use."""

    def __init__(
        self,
        table_name: str,
        outcomes: WriteOutcomes,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        connect_timeout: float = 2.0,
        read_timeout: float = 2.0,
    ) -> None:
        """Nothing touches the network before the first write or :meth:`client`."""
        self.table_name = table_name
        self._outcomes = outcomes
        self._region = region
        self._endpoint_url = endpoint_url
        self._retry = retry
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._serializer = TypeSerializer()
        self._client: DynamoDBClient | None = None
        self._client_lock = asyncio.Lock()

    async def put_items(self, chunk: list[items.Turn | items.ToolCallRecord]) -> None:
        """Put up to 25 items in one batch, retrying what comes back or fails."""
        pending: list[Any] = [
            {"PutRequest": {"Item": {k: self._serializer.serialize(v) for k, v in item.items()}}}
            for item in chunk
        ]
        for attempt in range(1, self._retry.max_attempts + 1):
            try:
                client = await self.client()
                response = await asyncio.to_thread(
                    client.batch_write_item, RequestItems={self.table_name: pending}
                )
            except (BotoCoreError, ClientError) as error:
                self._outcomes.failed_attempt(error)
                if not _retryable(error):
                    break
            else:
                unprocessed = response.get("UnprocessedItems", {}).get(self.table_name, [])
                self._outcomes.settled(written=len(pending) - len(unprocessed))
                pending = list(unprocessed)
                if not pending:
                    return
                self._outcomes.failed_attempt(None)  # throttled: part of the batch came back
            if attempt < self._retry.max_attempts:
                await asyncio.sleep(self._retry.delay(attempt))
        self._outcomes.settled(dropped=len(pending))

    async def update_item(self, pk: str, sk: str, values: dict[str, Any], count: int) -> None:
        """Set ``values`` on one item; ``count`` records are settled by it."""
        names = {f"#a{i}": name for i, name in enumerate(values)}
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {schema.PARTITION_KEY: {"S": pk}, schema.SORT_KEY: {"S": sk}},
            "UpdateExpression": "SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(values))),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {
                f":v{i}": self._serializer.serialize(value)
                for i, value in enumerate(values.values())
            },
        }
        for attempt in range(1, self._retry.max_attempts + 1):
            try:
                client = await self.client()
                await asyncio.to_thread(functools.partial(client.update_item, **request))
            except (BotoCoreError, ClientError) as error:
                self._outcomes.failed_attempt(error)
                if not _retryable(error):
                    break
            else:
                self._outcomes.settled(written=count)
                return
            if attempt < self._retry.max_attempts:
                await asyncio.sleep(self._retry.delay(attempt))
        self._outcomes.settled(dropped=count)

    async def client(self) -> DynamoDBClient:
        """The DynamoDB client, made (in a worker thread) on first use."""
        async with self._client_lock:
            if self._client is None:
                self._client = await asyncio.to_thread(
                    dynamodb_client,
                    region=self._region,
                    endpoint_url=self._endpoint_url,
                    connect_timeout=self._connect_timeout,
                    read_timeout=self._read_timeout,
                )
            return self._client


def error_code(error: Exception | None) -> str | None:
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code")
        return code if isinstance(code, str) else None
    return None


def _retryable(error: Exception) -> bool:
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(error) in RETRYABLE_ERROR_CODES or (
            isinstance(status, int) and status >= 500
        )
    return True  # connection refused, timeouts: the table may come back
