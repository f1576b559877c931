"""``Idempotency-Key`` on ``POST /v1/bots``: a retried create answers the first answer.

One conditional write per (caller, key) (``storage.requests``):

1. :meth:`Idempotency.begin` puts a ``pending`` record with the body's digest, only if
   none exists (or an abandoned ``pending`` one is older than :data:`PENDING_SECONDS`).
   Taken: a :class:`Replay` with the stored answer (same body, done), or a refusal —
   :class:`KeyReusedError` (another body: 422) or :class:`InProgressError` (409, retry).
2. :meth:`Idempotency.finish` stores the answer; :meth:`Idempotency.abandon` releases the
   record when creation failed before Recall made a bot, so the caller may retry.

What it cannot promise: if the process dies after Recall created the bot and before
``finish``, the record stays ``pending``; after :data:`PENDING_SECONDS` a retry creates
a second bot (docs/control-api.md says so). Recall's create has no idempotency key.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

from botocore.exceptions import ClientError

from storage import requests

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

#: A ``pending`` record older than this was abandoned (the API's timeout is 30 s).
PENDING_SECONDS: Final = 120


class KeyReusedError(Exception):
    """The key was used before with another body."""


class InProgressError(Exception):
    """A request with this key is being processed now."""


@dataclass(frozen=True, slots=True)
class Replay:
    """The answer stored for this key."""

    status_code: int
    body: str


class Idempotency:
    """Idempotency records of one table."""

    def __init__(self, table: Table, clock: Any = time.time) -> None:
        """Work on ``table`` (a boto3 ``Table`` resource)."""
        self._table = table
        self._clock = clock

    def begin(self, caller: str, key: str, body: bytes) -> Replay | None:
        """Claim ``key`` for this request; the earlier answer if it was answered before.

        Raises:
            KeyReusedError: the key came with another body before.
            InProgressError: the first request with this key has not finished.
        """
        now = int(self._clock())
        digest = hashlib.sha256(body).hexdigest()
        item: dict[str, Any] = {
            **requests.idempotency_key(caller, key),
            "state": requests.PENDING,
            "body_sha256": digest,
            "claimed_at": now,
            "expires_at": now + requests.IDEMPOTENCY_TTL_SECONDS,
        }
        try:
            self._table.put_item(
                Item=item,
                ConditionExpression="attribute_not_exists(pk) OR (#s = :pending AND #c < :stale)",
                ExpressionAttributeNames={"#s": "state", "#c": "claimed_at"},
                ExpressionAttributeValues={
                    ":pending": requests.PENDING,
                    ":stale": now - PENDING_SECONDS,
                },
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
        else:
            return None
        stored = self._table.get_item(
            Key=requests.idempotency_key(caller, key), ConsistentRead=True
        ).get("Item")
        record = cast("requests.IdempotencyRecord | None", stored)
        if record is None:  # expired between the two calls: treat as in progress
            raise InProgressError
        if record.get("body_sha256") != digest:
            raise KeyReusedError
        if record.get("state") != requests.DONE:
            raise InProgressError
        return Replay(int(record.get("status_code", 200)), str(record.get("response", "{}")))

    def finish(self, caller: str, key: str, status_code: int, body: str) -> None:
        """Store the answer to replay."""
        self._table.update_item(
            Key=requests.idempotency_key(caller, key),
            UpdateExpression="SET #s = :done, #code = :code, #r = :response",
            ExpressionAttributeNames={"#s": "state", "#code": "status_code", "#r": "response"},
            ExpressionAttributeValues={
                ":done": requests.DONE,
                ":code": status_code,
                ":response": body,
            },
        )

    def abandon(self, caller: str, key: str) -> None:
        """Release the key (nothing was created), so a retry may claim it at once."""
        # Marked stale rather than deleted: the function needs no DeleteItem permission.
        self._table.update_item(
            Key=requests.idempotency_key(caller, key),
            UpdateExpression="SET #c = :zero",
            ConditionExpression="#s = :pending",
            ExpressionAttributeNames={"#c": "claimed_at", "#s": "state"},
            ExpressionAttributeValues={":zero": 0, ":pending": requests.PENDING},
        )
