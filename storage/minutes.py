"""Keys and item shapes of meeting minutes, their job, memory across meetings.

New item collections (``pk`` / ``sk``), alongside those of :mod:`storage.schema`:

==========================  ==========================================  =========================
pk                          sk                                          what
==========================  ==========================================  =========================
``BOT#<bot_id>``            ``MINUTES``                                 the bot's minutes job and,
                                                                        once built, the minutes
``SESSION#<session_id>``    ``BOT``                                     which bot a relay session
                                                                        serves (the way back from
                                                                        a connection's end)
``MEMORY#<memory_key>``     ``MIN#<built_at>#<bot_id>``                 a copy of the minutes of
                                                                        a bot created with
                                                                        ``--memory KEY``, newest
                                                                        last
``BOT#<bot_id>``            ``NOTE#<at_ms>#<note_id>``                  a note the agent took
                                                                        (written by the relay's
                                                                        ``take_note`` tool; read
                                                                        here for the minutes)
==========================  ==========================================  =========================

**The job is claimed exactly once.** ``MINUTES`` moves ``building`` → ``built`` →
``delivered`` and never back. A worker claims it with a conditional update
(:func:`claim_update`): only if no job exists, or a ``building`` job's lease has run out
(its worker crashed). The claim writes a fresh ``claim_id``; storing the minutes
(:func:`built_update`) is conditional on that ``claim_id``, so a worker whose lease was
taken over cannot overwrite the newer worker's result.

Times are :func:`storage.times.key_time` strings; leases are epoch seconds (compared as
numbers in a condition). Memory items carry the minutes as a JSON string (bounded by
:data:`MAX_MINUTES_JSON_CHARS`), so a reader gets exactly what was built.

It refuses to decide when a job starts (``functions.minutes.trigger``) or what minutes
say (``functions.minutes.summarizer``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final, Literal, NotRequired, TypedDict

from storage import schema, times

MINUTES_SK: Final = "MINUTES"
SESSION_BOT_SK: Final = "BOT"
MEMORY_PREFIX: Final = "MIN#"
#: The relay's ``take_note`` items (the same prefix as ``storage.schema.NOTE_PREFIX``
#: where the tools branch defines it).
NOTE_PREFIX: Final = "NOTE#"

#: A memory key names a team, a recurring meeting or a customer: a short, printable id.
MAX_MEMORY_KEY_CHARS: Final = 128
#: The minutes as stored; DynamoDB's item limit is 400 KB, minutes are a few KB.
MAX_MINUTES_JSON_CHARS: Final = 100_000

#: Bot statuses that end a meeting for good (Recall's ``bot.done`` and ``bot.fatal``).
FINAL_STATUSES: Final = frozenset({"done", "fatal"})

JobState = Literal["building", "built", "delivered"]
BUILDING: Final = "building"
BUILT: Final = "built"
DELIVERED: Final = "delivered"


class MinutesJob(TypedDict):
    """``BOT#<id>`` / ``MINUTES`` as read back."""

    pk: str
    sk: str
    bot_id: str
    job_state: str  # a JobState
    claim_id: str
    lease_until: int  # epoch seconds: a ``building`` job is another worker's until then
    attempts: int
    trigger: str  # what started it first: "bot.done", "bot.fatal" or "session_ended"
    claimed_at: str
    minutes: NotRequired[str]  # JSON of the minutes, once built
    built_at: NotRequired[str]
    generated_by: NotRequired[str]  # the summarizer: a model name or "simulated"
    memory_key: NotRequired[str]
    delivered_at: NotRequired[str]
    delivery_status: NotRequired[int]  # the endpoint's HTTP status
    refused_at: NotRequired[str]  # the endpoint refused the delivery for good (a 4xx)


class SessionBot(TypedDict):
    """``SESSION#<id>`` / ``BOT``: the bot a relay session serves."""

    pk: str
    sk: str
    session_id: str
    bot_id: str
    memory_key: NotRequired[str]
    #: Post the minutes in the meeting chat before a deliberate leave (``storage.leaving``).
    minutes_to_chat: NotRequired[bool]
    #: This bot's own minutes endpoint (``storage.delivery_url``), over the stack's.
    minutes_url: NotRequired[str]


class MemoryEntry(TypedDict):
    """``MEMORY#<key>`` / ``MIN#<built_at>#<bot_id>``: one meeting's minutes under a key."""

    pk: str
    sk: str
    memory_key: str
    bot_id: str
    built_at: str
    minutes: str  # JSON, as in MinutesJob


class UpdateParams(TypedDict):
    """``UpdateItem`` parameters (without ``TableName``), values plain Python."""

    Key: dict[str, str]
    UpdateExpression: str
    ConditionExpression: str
    ExpressionAttributeNames: dict[str, str]
    ExpressionAttributeValues: dict[str, Any]


# Keys


def is_valid_memory_key(value: str) -> bool:
    """Whether ``value`` may name a memory: 1-128 printable characters, no whitespace."""
    return len(value) <= MAX_MEMORY_KEY_CHARS and schema.is_valid_id(value)


def memory_pk(memory_key: str) -> str:
    """Partition of one memory (a team, a recurring meeting, a customer)."""
    return f"MEMORY#{memory_key}"


def memory_sk(built_at: str, bot_id: str) -> str:
    """Sort key of one meeting's minutes in a memory; lexical order is time order."""
    return f"{MEMORY_PREFIX}{built_at}#{bot_id}"


def minutes_key(bot_id: str) -> dict[str, str]:
    """The key of a bot's ``MINUTES`` item."""
    return {schema.PARTITION_KEY: schema.bot_pk(bot_id), schema.SORT_KEY: MINUTES_SK}


def session_bot_key(session_id: str) -> dict[str, str]:
    """The key of a session's ``BOT`` pointer."""
    return {schema.PARTITION_KEY: schema.session_pk(session_id), schema.SORT_KEY: SESSION_BOT_SK}


# Builders


def session_bot_item(
    session_id: str,
    bot_id: str,
    memory_key: str | None = None,
    *,
    minutes_to_chat: bool = False,
    minutes_url: str | None = None,
) -> SessionBot:
    """The pointer from a relay session to its bot (written when the bot is created)."""
    item: SessionBot = {
        **session_bot_key(session_id),  # type: ignore[typeddict-item]
        "session_id": session_id,
        "bot_id": bot_id,
    }
    if memory_key is not None:
        item["memory_key"] = memory_key
    if minutes_to_chat:
        item["minutes_to_chat"] = True
    if minutes_url is not None:
        item["minutes_url"] = minutes_url
    return item


def claim_update(
    *, bot_id: str, claim_id: str, trigger: str, now: datetime, lease_seconds: int
) -> UpdateParams:
    """Claim the bot's minutes job: only if none exists or a building one's lease ran out."""
    epoch = int(now.timestamp())
    return {
        "Key": minutes_key(bot_id),
        "UpdateExpression": (
            "SET #bot = :bot, #state = :building, #claim = :claim, #lease = :lease, "
            "#claimed = :claimed, #trigger = if_not_exists(#trigger, :trigger) "
            "ADD #attempts :one"
        ),
        "ConditionExpression": (
            "attribute_not_exists(#state) OR (#state = :building AND #lease < :now)"
        ),
        "ExpressionAttributeNames": {
            "#bot": "bot_id",
            "#state": "job_state",
            "#claim": "claim_id",
            "#lease": "lease_until",
            "#claimed": "claimed_at",
            "#trigger": "trigger",
            "#attempts": "attempts",
        },
        "ExpressionAttributeValues": {
            ":bot": bot_id,
            ":building": BUILDING,
            ":claim": claim_id,
            ":lease": epoch + lease_seconds,
            ":now": epoch,
            ":claimed": times.key_time(now),
            ":trigger": trigger,
            ":one": 1,
        },
    }


def built_update(
    *,
    bot_id: str,
    claim_id: str,
    minutes_json: str,
    generated_by: str,
    built_at: datetime,
    memory_key: str | None,
) -> UpdateParams:
    """Store the built minutes, only if this worker still holds the claim."""
    if len(minutes_json) > MAX_MINUTES_JSON_CHARS:
        raise ValueError("minutes too large to store")
    names = {
        "#state": "job_state",
        "#claim": "claim_id",
        "#minutes": "minutes",
        "#built": "built_at",
        "#by": "generated_by",
    }
    values: dict[str, Any] = {
        ":built": BUILT,
        ":building": BUILDING,
        ":claim": claim_id,
        ":minutes": minutes_json,
        ":built_at": times.key_time(built_at),
        ":by": generated_by,
    }
    expression = "SET #state = :built, #minutes = :minutes, #built = :built_at, #by = :by"
    if memory_key is not None:
        names["#memory"] = "memory_key"
        values[":memory"] = memory_key
        expression += ", #memory = :memory"
    return {
        "Key": minutes_key(bot_id),
        "UpdateExpression": expression,
        "ConditionExpression": "#state = :building AND #claim = :claim",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def delivered_update(*, bot_id: str, at: datetime, status: int) -> UpdateParams:
    """Mark the built minutes delivered to the user's endpoint (never un-delivers)."""
    return {
        "Key": minutes_key(bot_id),
        "UpdateExpression": "SET #state = :delivered, #at = :at, #status = :status",
        "ConditionExpression": "#state IN (:built, :delivered)",
        "ExpressionAttributeNames": {
            "#state": "job_state",
            "#at": "delivered_at",
            "#status": "delivery_status",
        },
        "ExpressionAttributeValues": {
            ":delivered": DELIVERED,
            ":built": BUILT,
            ":at": times.key_time(at),
            ":status": status,
        },
    }


def refused_update(*, bot_id: str, at: datetime, status: int) -> UpdateParams:
    """Record that the endpoint refused the built minutes for good (state stays ``built``)."""
    return {
        "Key": minutes_key(bot_id),
        "UpdateExpression": "SET #at = :at, #status = :status",
        "ConditionExpression": "#state = :built",
        "ExpressionAttributeNames": {
            "#state": "job_state",
            "#at": "refused_at",
            "#status": "delivery_status",
        },
        "ExpressionAttributeValues": {
            ":built": BUILT,
            ":at": times.key_time(at),
            ":status": status,
        },
    }


def memory_query(memory_key: str, limit: int) -> dict[str, Any]:
    """``Query`` parameters (without ``TableName``) for the newest ``limit`` minutes under a key.

    Values are plain Python (serialize them as the caller's client needs); newest first.
    """
    return {
        "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
        "ExpressionAttributeNames": {"#pk": schema.PARTITION_KEY, "#sk": schema.SORT_KEY},
        "ExpressionAttributeValues": {":pk": memory_pk(memory_key), ":prefix": MEMORY_PREFIX},
        "ScanIndexForward": False,
        "Limit": limit,
    }


def memory_entry(
    *, memory_key: str, bot_id: str, built_at: datetime, minutes_json: str
) -> MemoryEntry:
    """One meeting's minutes filed under ``memory_key``."""
    stamp = times.key_time(built_at)
    return {
        "pk": memory_pk(memory_key),
        "sk": memory_sk(stamp, bot_id),
        "memory_key": memory_key,
        "bot_id": bot_id,
        "built_at": stamp,
        "minutes": minutes_json,
    }


def stream_filter_patterns() -> list[str]:
    """Lambda event-filter patterns for the table's stream: the changes that end a meeting.

    A bot's ``STATE`` with a final status, a ``CONN#`` item with ``ended_at``, and a new
    leave request (``storage.leaving``: minutes to the chat, then leave). The
    infra attaches them to the minutes function's stream event source, so it is not even
    invoked for turns, deliveries and history; the function still decides for itself
    (``functions.minutes.trigger``), as a filter cannot compare old and new images.
    """
    state = {
        "eventName": ["INSERT", "MODIFY"],
        "dynamodb": {
            "NewImage": {
                schema.SORT_KEY: {"S": [schema.STATE_SK]},
                "status": {"S": sorted(FINAL_STATUSES)},
            }
        },
    }
    ended = {
        "eventName": ["INSERT", "MODIFY"],
        "dynamodb": {
            "NewImage": {
                schema.SORT_KEY: {"S": [{"prefix": schema.CONNECTION_PREFIX}]},
                "ended_at": {"S": [{"exists": True}]},
            }
        },
    }
    from storage.leaving import LEAVE_SK  # storage.leaving builds on this module

    leave = {
        "eventName": ["INSERT"],
        "dynamodb": {"NewImage": {schema.SORT_KEY: {"S": [LEAVE_SK]}}},
    }
    return [json.dumps(p, separators=(",", ":")) for p in (state, ended, leave)]
