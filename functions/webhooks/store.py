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
  condition, the whole transaction is cancelled, and nothing is written twice. The store
  then reads the stored item's ``body_sha256`` (or, on items written before it, the body):
  the same bytes are a :attr:`Stored.DUPLICATE` (the receiver may re-run the state update,
  which repairs a first attempt that failed after storing); different bytes under a used id
  are a :attr:`Stored.CONFLICT`, and nothing about them is applied.
* **History in order.** ``EVT#`` sort keys start with the event's own time
  (``data.data.updated_at``, a real-time event's timestamp, else the receive time) in
  the table's one fixed-width format (``storage.times.key_time``), so a ``Query`` on
  ``BOT#<id>`` / ``begins_with(EVT#)`` returns the bot's timeline in event order whatever
  order the deliveries arrived in.
* **State never moves backwards.** :meth:`advance_bot_state` is a conditional ``UpdateItem``
  on ``BOT#<id>`` / ``STATE`` (``storage.items.bot_status_update``):
  ``attribute_not_exists(updated_at) OR updated_at < :new``. A late, older event fails the
  condition and changes nothing. It SETs only the status fields (``status``,
  ``sub_code``, ``event``, ``updated_at``, ``bot_id``) and, with ``if_not_exists``,
  ``created_at``, the ``by_day`` index keys and ``session_id``: the CLI writes ``region``,
  ``meeting_url``, ``bot_name`` and ``session_id`` on the same item when it creates the
  bot, and they are never clobbered. The update is idempotent, so the receiver runs it on
  identical duplicates too: a retry after a failed state write still lands.
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
import hashlib
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, NotRequired, TypedDict

from functions.webhooks.errors import StoreError, StoreUnavailableError
from functions.webhooks.events import BotStatusEvent, RecallEvent
from storage import items, schema
from storage.times import key_time
from storage.updates import Update

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


class Stored(StrEnum):
    """What :meth:`WebhookStore.record_delivery_once` did with a delivery."""

    #: First time this webhook id was seen: the delivery and its history item were written.
    NEW = "new"
    #: The id was stored before with the same body bytes: nothing written.
    DUPLICATE = "duplicate"
    #: The id was stored before with a different body: nothing written, nothing to apply.
    CONFLICT = "conflict"


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
    # receiver stops at the first failure and makes two calls (the transaction, the state
    # update), three for a duplicate, whose transaction fails fast on its condition before
    # the stored body is read; so two slow calls at most, inside Recall's 15 s.
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

    def record_delivery_once(self, record: DeliveryRecord) -> Stored:
        """Store the raw delivery and its history item, unless this webhook id was stored.

        Returns:
            :attr:`Stored.NEW` if this call stored it; for an id stored before,
            :attr:`Stored.DUPLICATE` (same body) or :attr:`Stored.CONFLICT` (another body).

        Raises:
            StoreUnavailableError: DynamoDB is unreachable or throttling (retry later).
            StoreError: DynamoDB refused the write for another reason.
        """
        expires_at = int(record.received_at.timestamp()) + self.retention_seconds
        digest = hashlib.sha256(record.body).hexdigest()
        writes: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": _serialize(self._delivery_item(record, digest, expires_at)),
                    "ConditionExpression": "attribute_not_exists(#pk)",
                    "ExpressionAttributeNames": {"#pk": schema.PARTITION_KEY},
                }
            }
        ]
        event = record.event
        if event is not None and event.bot_id is not None:
            history = self._event_item(record, event, event.bot_id, expires_at)
            writes.append({"Put": {"TableName": self.table_name, "Item": _serialize(history)}})
        try:
            self.client.transact_write_items(TransactItems=writes)  # type: ignore[arg-type]
        except _aws_errors() as exc:
            if not _is_duplicate(exc):
                raise _store_failure(exc, "store the delivery") from exc
        else:
            return Stored.NEW
        return Stored.DUPLICATE if self._stored_body_is(record, digest) else Stored.CONFLICT

    def advance_bot_state(self, event: BotStatusEvent) -> bool:
        """Move the bot's ``STATE`` to this event's status if it is newer than the stored one.

        Returns:
            ``True`` if the state moved, ``False`` if it already was as new or newer.

        Raises:
            StoreUnavailableError: DynamoDB is unreachable or throttling (retry later).
            StoreError: DynamoDB refused the write for another reason.
        """
        bot_id = event.bot_id
        if bot_id is None:
            return False
        update = items.bot_status_update(
            {
                "bot_id": bot_id,
                "status": event.status.code,
                "sub_code": event.status.sub_code,
                "event": event.name,
                "updated_at": key_time(event.occurred_at),
            },
            session_id=event.session_id,
        )
        try:
            self._update(update)
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

    def _update(self, update: Update) -> None:
        request = update.request()
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": _serialize(request["Key"]),
            "UpdateExpression": request["UpdateExpression"],
            "ExpressionAttributeNames": request["ExpressionAttributeNames"],
            "ExpressionAttributeValues": _serialize(request["ExpressionAttributeValues"]),
        }
        if "ConditionExpression" in request:
            params["ConditionExpression"] = request["ConditionExpression"]
        self.client.update_item(**params)

    def _stored_body_is(self, record: DeliveryRecord, digest: str) -> bool:
        """Whether the delivery stored under this id has exactly these body bytes."""
        try:
            answer = self.client.get_item(
                TableName=self.table_name,
                Key=_serialize(
                    {
                        schema.PARTITION_KEY: schema.delivery_pk(record.webhook_id),
                        schema.SORT_KEY: schema.DELIVERY_SK,
                    }
                ),
                ConsistentRead=True,
            )
        except _aws_errors() as exc:
            raise _store_failure(exc, "read the stored delivery") from exc
        stored = answer.get("Item", {})
        stored_digest = stored.get("body_sha256", {}).get("S")
        if stored_digest is not None:
            return stored_digest == digest
        # Written before digests were kept: compare the stored body itself.
        return _decoded_body(stored) == record.body

    def _delivery_item(
        self, record: DeliveryRecord, digest: str, expires_at: int
    ) -> items.Delivery:
        stored = _stored_body(record.body)
        event = record.event
        return items.delivery_item(
            webhook_id=record.webhook_id,
            received_at=record.received_at,
            body=stored["body"],
            body_sha256=digest,
            expires_at=expires_at,
            body_encoding=stored.get("body_encoding"),
            body_truncated=stored.get("body_truncated", False),
            event=event.name if event is not None else None,
            bot_id=event.bot_id if event is not None else None,
            parse_error=record.parse_error,
        )

    def _event_item(
        self, record: DeliveryRecord, event: RecallEvent, bot_id: str, expires_at: int
    ) -> items.BotEvent:
        status = event.status
        return items.bot_event_item(
            bot_id=bot_id,
            webhook_id=record.webhook_id,
            event=event.name,
            occurred_at=event.occurred_at or record.received_at,
            received_at=record.received_at,
            expires_at=expires_at,
            status=status.code if status is not None else None,
            sub_code=status.sub_code if status is not None else None,
            summary=event.summary,
        )


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


def _decoded_body(item: Mapping[str, Any]) -> bytes | None:
    """The raw bytes of a stored ``DELIVERY`` item (low-level form); None if cut or unknown."""
    if item.get("body_truncated", {}).get("BOOL"):
        return None
    body = item.get("body", {}).get("S")
    if not isinstance(body, str):
        return None
    encoding = item.get("body_encoding", {}).get("S")
    if encoding is None:
        return body.encode("utf-8")
    raw = base64.b64decode(body)
    return zlib.decompress(raw) if encoding == "zlib+base64" else raw


def _serialize(values: Mapping[str, Any]) -> dict[str, Any]:
    """Plain Python values as DynamoDB attribute values (boto3's ``TypeSerializer``)."""
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {name: serializer.serialize(value) for name, value in values.items()}


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
