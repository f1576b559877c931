"""The only writer of webhook data: each delivery stored once, bot state never regresses.

Key design (one table; names and key builders from ``storage.schema``, shapes from
``storage.items``):

=========================  ====================================  ==========================
pk                         sk                                    written by
=========================  ====================================  ==========================
``DELIVERY#<webhook_id>``  ``DELIVERY``                          :meth:`record_delivery_once`
``BOT#<bot_id>``           ``EVT#<event time>#<webhook_id>``     :meth:`record_delivery_once`
``BOT#<bot_id>``           ``STATE``                             :meth:`advance_bot_state`
=========================  ====================================  ==========================

* **Idempotency.** Svix delivers at least once and keeps ``webhook-id`` across retries.
  :meth:`record_delivery_once` is one ``TransactWriteItems``: the raw ``DELIVERY`` item under
  ``attribute_not_exists(pk)`` plus the bot's ``EVT#`` history item. A redelivery fails the
  condition, the whole transaction is cancelled, and nothing is written twice.
* **History in order.** ``EVT#`` sort keys start with the event's own time
  (``data.data.updated_at``, a real-time event's timestamp, else the receive time) as
  fixed-width ISO 8601 UTC, so a ``Query`` on ``BOT#<id>`` / ``begins_with(EVT#)`` returns
  the bot's timeline in event order whatever order the deliveries arrived in.
* **State never moves backwards.** :meth:`advance_bot_state` is a conditional ``UpdateItem``
  on ``BOT#<id>`` / ``STATE``: ``attribute_not_exists(updated_at) OR updated_at < :new``.
  A late, older event fails the condition and changes nothing. It SETs only the status
  fields (``status``, ``sub_code``, ``event``, ``updated_at``, ``bot_id``) and, with
  ``if_not_exists``, ``created_at``, the ``by_day`` index keys and ``session_id``: the CLI
  writes ``region``, ``meeting_url``, ``bot_name`` and ``session_id`` on the same item
  when it creates the bot, and they are never clobbered. The update is idempotent, so
  the receiver runs it on duplicates too: a retry after a failed state write still lands.
* **Expiry.** ``DELIVERY`` and ``EVT#`` items carry ``expires_at`` (receive time +
  ``EVENT_RETENTION_DAYS``); ``STATE`` does not expire.
* **Item size.** DynamoDB items stop at 400 KB and bodies may be up to 1 MiB: a body that
  is not UTF-8 is stored base64 (``body_encoding="base64"``), a large one compressed
  (``"zlib+base64"``), and one that still does not fit is cut and flagged
  ``body_truncated``. Recall's bodies are a few KB; this only keeps the promise "stored".

Failures are mapped once here: throttling, timeouts and unreachable endpoints raise
:class:`StoreUnavailableError` (503, Recall retries); anything else DynamoDB refuses raises
:class:`StoreError` (500, also retried). boto3 timeouts are bounded so an answer always
leaves well inside Recall's 15 s.
"""

from __future__ import annotations

import base64
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, NotRequired, TypedDict

from functions.webhooks.errors import StoreError, StoreUnavailableError
from functions.webhooks.events import BotStatusEvent, RecallEvent, iso_utc
from storage import schema
from storage.items import BotEvent, Delivery

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: Room for the body inside DynamoDB's 400 KB item limit, leaving space for the rest.
MAX_STORED_BODY_CHARS: Final = 350_000
SECONDS_PER_DAY: Final = 86_400
#: Errors that say "try again later" rather than "this request is wrong".
TRANSIENT_CODES: Final = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
        "TransactionInProgressException",
        "LimitExceededException",
    }
)


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One verified delivery, as received."""

    webhook_id: str
    body: bytes
    received_at: datetime
    event: RecallEvent | None = None
    parse_error: str | None = None


def dynamodb_client() -> DynamoDBClient:
    """A DynamoDB client with bounded timeouts (honours ``AWS_ENDPOINT_URL_DYNAMODB``)."""
    import boto3  # off the import path: built on the first delivery, not at cold import
    from botocore.config import Config

    # Worst case per call: 2 attempts × (1 s connect + 2 s read) + backoff ≈ 7 s; the
    # receiver makes at most two calls and stops at the first failure.
    config = Config(
        connect_timeout=1,
        read_timeout=2,
        retries={"total_max_attempts": 2, "mode": "standard"},
    )
    return boto3.client("dynamodb", config=config)


class WebhookStore:
    """Conditional writes of deliveries, history and bot state to the application table."""

    def __init__(
        self,
        table_name: str,
        retention_days: int = 30,
        client: Callable[[], DynamoDBClient] = dynamodb_client,
    ) -> None:
        """Write to ``table_name``; ``client`` builds the DynamoDB client on first use."""
        self.table_name = table_name
        self.retention_seconds = retention_days * SECONDS_PER_DAY
        self._client_factory = client
        self._client: DynamoDBClient | None = None
        self._lock = threading.Lock()

    # Writes

    def record_delivery_once(self, record: DeliveryRecord) -> bool:
        """Store the raw delivery and its history item, unless this webhook id was stored.

        Returns:
            ``True`` if this call stored it, ``False`` for a duplicate (nothing written).

        Raises:
            StoreUnavailableError: DynamoDB is unreachable or throttling (retry later).
            StoreError: DynamoDB refused the write for another reason.
        """
        from boto3.dynamodb.types import TypeSerializer

        serializer = TypeSerializer()
        expires_at = int(record.received_at.timestamp()) + self.retention_seconds
        delivery = self._delivery_item(record, expires_at)
        writes: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": {k: serializer.serialize(v) for k, v in delivery.items()},
                    "ConditionExpression": "attribute_not_exists(#pk)",
                    "ExpressionAttributeNames": {"#pk": schema.PARTITION_KEY},
                }
            }
        ]
        event = record.event
        if event is not None and event.bot_id is not None:
            history = self._event_item(record, event, event.bot_id, expires_at)
            writes.append(
                {
                    "Put": {
                        "TableName": self.table_name,
                        "Item": {k: serializer.serialize(v) for k, v in history.items()},
                    }
                }
            )
        try:
            self.client.transact_write_items(TransactItems=writes)  # type: ignore[arg-type]
        except _aws_errors() as exc:
            if _is_duplicate(exc):
                return False
            raise _store_failure(exc, "store the delivery") from exc
        return True

    def advance_bot_state(self, event: BotStatusEvent) -> bool:
        """Move the bot's ``STATE`` to this event's status if it is newer than the stored one.

        Returns:
            ``True`` if the state moved, ``False`` if it already was as new or newer.

        Raises:
            StoreUnavailableError: DynamoDB is unreachable or throttling (retry later).
            StoreError: DynamoDB refused the write for another reason.
        """
        from boto3.dynamodb.types import TypeSerializer

        bot_id = event.bot_id
        if bot_id is None:
            return False
        serializer = TypeSerializer()
        updated_at = iso_utc(event.occurred_at)
        day = updated_at[:10]
        names = {
            "#bot_id": "bot_id",
            "#status": "status",
            "#sub_code": "sub_code",
            "#event": "event",
            "#updated_at": "updated_at",
            "#created_at": "created_at",
            "#gsi1pk": schema.BY_DAY_PARTITION_KEY,
            "#gsi1sk": schema.BY_DAY_SORT_KEY,
        }
        values: dict[str, Any] = {
            ":bot_id": bot_id,
            ":status": event.status.code,
            ":sub_code": event.status.sub_code,
            ":event": event.name,
            ":updated_at": updated_at,
            ":created_at": updated_at,
            ":gsi1pk": schema.by_day_pk(day),
            ":gsi1sk": schema.by_day_sk(updated_at, bot_id),
        }
        assignments = [
            "#bot_id = :bot_id",
            "#status = :status",
            "#sub_code = :sub_code",
            "#event = :event",
            "#updated_at = :updated_at",
            "#created_at = if_not_exists(#created_at, :created_at)",
            "#gsi1pk = if_not_exists(#gsi1pk, :gsi1pk)",
            "#gsi1sk = if_not_exists(#gsi1sk, :gsi1sk)",
        ]
        if event.session_id is not None:
            names["#session_id"] = "session_id"
            values[":session_id"] = event.session_id
            assignments.append("#session_id = if_not_exists(#session_id, :session_id)")
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={
                    schema.PARTITION_KEY: {"S": schema.bot_pk(bot_id)},
                    schema.SORT_KEY: {"S": schema.STATE_SK},
                },
                UpdateExpression="SET " + ", ".join(assignments),
                ConditionExpression=(
                    "attribute_not_exists(#updated_at) OR #updated_at < :updated_at"
                ),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={k: serializer.serialize(v) for k, v in values.items()},
            )
        except _aws_errors() as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise _store_failure(exc, "update the bot state") from exc
        return True

    # Private

    @property
    def client(self) -> DynamoDBClient:
        """The DynamoDB client, built once (boto3 client creation is not thread-safe)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    try:
                        self._client = self._client_factory()
                    except _aws_errors() as exc:
                        raise _store_failure(exc, "create the DynamoDB client") from exc
        return self._client

    def _delivery_item(self, record: DeliveryRecord, expires_at: int) -> Delivery:
        item: Delivery = {
            "pk": schema.delivery_pk(record.webhook_id),
            "sk": schema.DELIVERY_SK,
            "webhook_id": record.webhook_id,
            "received_at": iso_utc(record.received_at),
            "body": "",
            "expires_at": expires_at,  # schema.TTL_ATTRIBUTE
        }
        stored = _stored_body(record.body)
        item["body"] = stored["body"]
        if "body_encoding" in stored:
            item["body_encoding"] = stored["body_encoding"]
        if "body_truncated" in stored:
            item["body_truncated"] = stored["body_truncated"]
        if record.event is not None:
            item["event"] = record.event.name
            if record.event.bot_id is not None:
                item["bot_id"] = record.event.bot_id
        if record.parse_error is not None:
            item["parse_error"] = record.parse_error
        return item

    def _event_item(
        self, record: DeliveryRecord, event: RecallEvent, bot_id: str, expires_at: int
    ) -> BotEvent:
        event_time = iso_utc(event.occurred_at or record.received_at)
        item: BotEvent = {
            "pk": schema.bot_pk(bot_id),
            "sk": schema.event_sk(event_time, record.webhook_id),
            "bot_id": bot_id,
            "webhook_id": record.webhook_id,
            "event": event.name,
            "updated_at": event_time,
            "received_at": iso_utc(record.received_at),
            "expires_at": expires_at,  # schema.TTL_ATTRIBUTE
        }
        status = event.status
        if status is not None:
            item["status"] = status.code
            item["sub_code"] = status.sub_code
        summary = event.summary
        if summary:
            item["summary"] = summary
        return item


class _StoredBody(TypedDict):
    body: str
    body_encoding: NotRequired[str]
    body_truncated: NotRequired[bool]


def _stored_body(body: bytes) -> _StoredBody:
    """The body attributes of a ``DELIVERY`` item, within the item size limit."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and len(body) <= MAX_STORED_BODY_CHARS:
        return {"body": text}
    if text is None and len(body) * 4 // 3 + 4 <= MAX_STORED_BODY_CHARS:
        return {"body": base64.b64encode(body).decode("ascii"), "body_encoding": "base64"}
    packed = base64.b64encode(zlib.compress(body, 6)).decode("ascii")
    if len(packed) <= MAX_STORED_BODY_CHARS:
        return {"body": packed, "body_encoding": "zlib+base64"}
    cut = body[: MAX_STORED_BODY_CHARS * 3 // 4 - 4]
    return {
        "body": base64.b64encode(cut).decode("ascii"),
        "body_encoding": "base64",
        "body_truncated": True,
    }


def _aws_errors() -> tuple[type[Exception], ...]:
    """boto3's failure types, imported when a failure happens (off the cold import path)."""
    import botocore.exceptions

    return (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def _error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return code if isinstance(code, str) else None
    return None


def _is_duplicate(exc: Exception) -> bool:
    """A transaction cancelled only because the delivery already exists."""
    if _error_code(exc) != "TransactionCanceledException":
        return False
    reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
    return bool(reasons) and reasons[0].get("Code") == "ConditionalCheckFailed"


def _store_failure(exc: Exception, doing: str) -> StoreUnavailableError | StoreError:
    """Map a boto3 failure to the receiver's error (never echoing item contents)."""
    code = _error_code(exc)
    if code is None:  # BotoCoreError: no connection, timeout, no region or credentials
        return StoreUnavailableError(f"cannot {doing}: DynamoDB unreachable ({type(exc).__name__})")
    status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in TRANSIENT_CODES or status >= 500:
        return StoreUnavailableError(f"cannot {doing}: DynamoDB is busy or failing ({code})")
    if code == "TransactionCanceledException":
        reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
        codes = ",".join(str(r.get("Code")) for r in reasons)
        if any(r.get("Code") in TRANSIENT_CODES for r in reasons):
            return StoreUnavailableError(f"cannot {doing}: transaction cancelled ({codes})")
        return StoreError(f"cannot {doing}: transaction cancelled ({codes})")
    return StoreError(f"cannot {doing}: DynamoDB refused it ({code})")
