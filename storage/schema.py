"""Key schema of the single application table: attribute names, key builders, index, TTL.

One table holds everything, in these item collections (``pk`` / ``sk``):

==========================  ==========================================  =========================
pk                          sk                                          what
==========================  ==========================================  =========================
``BOT#<bot_id>``            ``STATE``                                   current bot state (never
                                                                        moves backwards), bot
                                                                        metadata, session id
``BOT#<bot_id>``            ``EVT#<updated_at>#<webhook_id>``           event history, in order
``DELIVERY#<webhook_id>``   ``DELIVERY``                                the raw delivery, stored
                                                                        once (idempotency key)
``SESSION#<session_id>``    ``CONN#<started_at>#<connection_id>``       one relay connection
                                                                        (start, end, usage)
``SESSION#<session_id>``    ``TURN#<at_ms>#<seq>``                      conversation turn (final
                                                                        transcripts), in order
``SESSION#<session_id>``    ``TOOL#<at_ms>#<call_id>``                  a relay tool call: written
                                                                        when it starts, completed
                                                                        with its output
``SESSION#<session_id>``    ``AGENT``                                   the session's bot and its
                                                                        agent overlay (persona),
                                                                        from ``bot create``
``BOT#<bot_id>``            ``NOTE#<at_ms>#<note_id>``                  a note the agent took
                                                                        (``take_note`` tool)
``SESSION#<session_id>``    ``OWNER``                                   the relay process that
                                                                        holds the live session
                                                                        (``storage.owners``)
==========================  ==========================================  =========================

The ``by_day`` index (``gsi1pk = BOTS#<yyyy-mm-dd>``, ``gsi1sk = <created_at>#<bot_id>``)
lists recent bots without a scan; day buckets keep any one partition small. Only the
``STATE`` item carries these attributes, so the index is sparse.

Times in sort keys and in the index are written by :func:`storage.times.key_time` (one
fixed-width UTC format), or are zero-padded integers (``turn_sk``), so lexical order is
time order. ``expires_at`` (epoch seconds) is the TTL attribute: raw deliveries, event
history, connections and turns expire; bot state does not.

Ids inside keys (bot, session, webhook and connection ids) must pass :func:`is_valid_id`:
at most :data:`MAX_ID_BYTES` bytes of printable UTF-8 without whitespace, so a key stays far
inside DynamoDB's limits (2048 bytes for a partition key, 1024 for a sort key) and no key
carries a control or bidi character into a terminal or a log.
"""

from __future__ import annotations

from typing import Any, Final, Literal

PARTITION_KEY: Final = "pk"
SORT_KEY: Final = "sk"
TTL_ATTRIBUTE: Final = "expires_at"

BY_DAY_INDEX: Final = "by_day"
BY_DAY_PARTITION_KEY: Final = "gsi1pk"
BY_DAY_SORT_KEY: Final = "gsi1sk"

#: Every key attribute is a string.
KEY_ATTRIBUTE_TYPES: Final[dict[str, Literal["S", "N", "B"]]] = {
    PARTITION_KEY: "S",
    SORT_KEY: "S",
    BY_DAY_PARTITION_KEY: "S",
    BY_DAY_SORT_KEY: "S",
}

STATE_SK: Final = "STATE"
DELIVERY_SK: Final = "DELIVERY"
EVENT_PREFIX: Final = "EVT#"
CONNECTION_PREFIX: Final = "CONN#"
TURN_PREFIX: Final = "TURN#"
#: Longest id accepted inside a key, in UTF-8 bytes (Recall's bot ids are 36-byte UUIDs);
#: in bytes because DynamoDB limits keys in bytes (1024 for a sort key such as ``gsi1sk``).
MAX_ID_BYTES: Final = 256


def is_valid_id(value: str) -> bool:
    """Whether ``value`` may be part of a key: 1-256 bytes of printable text, no whitespace.

    ``str.isprintable`` is false for control characters (C0, C1, DEL), format characters
    (bidi overrides and isolates, zero-width ones) and lone surrogates.
    """
    return (
        0 < len(value) <= MAX_ID_BYTES
        and value.isprintable()  # before encoding: a lone surrogate cannot be encoded
        and not any(c.isspace() for c in value)
        and len(value.encode()) <= MAX_ID_BYTES
    )


SESSION_AGENT_SK: Final = "AGENT"
NOTE_PREFIX: Final = "NOTE#"
TOOL_CALL_PREFIX: Final = "TOOL#"


def bot_pk(bot_id: str) -> str:
    """Partition of one bot: its state and its event history."""
    return f"BOT#{bot_id}"


def event_sk(updated_at: str, webhook_id: str) -> str:
    """Sort key of one event in a bot's history, ordered by the event's own time."""
    return f"{EVENT_PREFIX}{updated_at}#{webhook_id}"


def delivery_pk(webhook_id: str) -> str:
    """Partition of one raw webhook delivery; its existence is the idempotency marker."""
    return f"DELIVERY#{webhook_id}"


def session_pk(session_id: str) -> str:
    """Partition of one relay session (a token subject): connections and turns."""
    return f"SESSION#{session_id}"


def connection_sk(started_at: str, connection_id: str) -> str:
    """Sort key of one relay connection within a session."""
    return f"{CONNECTION_PREFIX}{started_at}#{connection_id}"


def turn_sk(at_ms: int, seq: int) -> str:
    """Sort key of one conversation turn; zero-padded so lexical order is time order."""
    return f"{TURN_PREFIX}{at_ms:015d}#{seq:06d}"


def note_sk(at_ms: int, note_id: str) -> str:
    """Sort key of one note in a bot's partition; zero-padded so lexical order is time order."""
    return f"{NOTE_PREFIX}{at_ms:015d}#{note_id}"


def tool_call_sk(at_ms: int, call_id: str) -> str:
    """Sort key of one relay tool call in a session, in the order the calls started."""
    return f"{TOOL_CALL_PREFIX}{at_ms:015d}#{call_id}"


def by_day_pk(day: str) -> str:
    """Index partition of the bots first seen on ``day`` (``YYYY-MM-DD``, UTC)."""
    return f"BOTS#{day}"


def by_day_sk(created_at: str, bot_id: str) -> str:
    """Index sort key: creation time, then bot id."""
    return f"{created_at}#{bot_id}"


def create_table_request(table_name: str) -> dict[str, Any]:
    """DynamoDB ``CreateTable`` parameters for the table as deployed (local servers, tests).

    The storage construct builds the deployed table from the same constants; TTL is a
    separate ``UpdateTimeToLive`` call (:data:`TTL_ATTRIBUTE`).
    """
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": kind}
            for name, kind in KEY_ATTRIBUTE_TYPES.items()
        ],
        "KeySchema": [
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": BY_DAY_INDEX,
                "KeySchema": [
                    {"AttributeName": BY_DAY_PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": BY_DAY_SORT_KEY, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    }
