"""Keys and shape of the control API's idempotency records (``POST /v1/bots``).

==========================  ==========================================  =========================
pk                          sk                                          what
==========================  ==========================================  =========================
``IDEM#<digest>``           ``CREATE``                                  one create-bot request:
                                                                        claimed, then its answer
==========================  ==========================================  =========================

``<digest>`` is the SHA-256 of the caller's identity (its IAM principal) and its
``Idempotency-Key`` header, so two callers' keys never collide and the key itself (which
a caller may have derived from anything) is not stored in a key. The record holds the
request body's digest: a replay with the same key and the same body gets the first
answer; with another body, a conflict. Records expire (``expires_at``) after a day.
"""

from __future__ import annotations

import hashlib
from typing import Final, NotRequired, TypedDict

from storage import schema

CREATE_SK: Final = "CREATE"
#: How long an idempotency key is remembered.
IDEMPOTENCY_TTL_SECONDS: Final = 24 * 3600
MAX_IDEMPOTENCY_KEY_CHARS: Final = 200

PENDING: Final = "pending"
DONE: Final = "done"


class IdempotencyRecord(TypedDict):
    """``IDEM#<digest>`` / ``CREATE`` as read back."""

    pk: str
    sk: str
    state: str  # PENDING while the bot is being created, DONE with its answer
    body_sha256: str
    claimed_at: int  # epoch seconds
    expires_at: int
    status_code: NotRequired[int]
    response: NotRequired[str]  # the JSON answer, replayed as is


def idempotency_key(caller: str, key: str) -> dict[str, str]:
    """The table key of a caller's idempotency key."""
    digest = hashlib.sha256(f"{caller}\n{key}".encode("utf-8", "replace")).hexdigest()
    return {schema.PARTITION_KEY: f"IDEM#{digest}", schema.SORT_KEY: CREATE_SK}
