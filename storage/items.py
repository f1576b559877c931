"""Item shapes stored in the application table, and the only builders of those items.

Each kind of item has a ``TypedDict`` whose keys are its attribute names (mypy checks
every writer against them) and a builder that fills in its keys (:mod:`storage.schema`),
its times (:mod:`storage.times`) and its expiry. Writers use the builders; readers take
items back through :func:`plain` and tolerate missing optional attributes.

Who writes what, and the one DynamoDB style they share:

====================  ===========================  ================================================
item                  writer                       how
====================  ===========================  ================================================
``Delivery``          webhook store                ``TransactWriteItems``: a ``Put`` under
``BotEvent``                                       ``attribute_not_exists(pk)`` with the history
                                                   ``Put`` (the idempotency marker and the history
                                                   must land together or not at all)
``BotState`` status   webhook store                ``UpdateItem`` (:func:`bot_status_update`),
                                                   only if newer (state never moves backwards)
``BotState`` record   CLI ``bot create``           ``UpdateItem`` (:func:`bot_created_update`)
``Connection``        relay                        ``UpdateItem`` (:func:`connection_update`),
                                                   rewritten whole so a later write repairs a lost
                                                   earlier one
``Turn``              relay                        ``BatchWriteItem`` of :func:`turn_item` (many
                                                   small immutable items with unique keys: batches
                                                   are the throughput, no condition is needed)
====================  ===========================  ================================================

Every writer renders partial writes with :meth:`storage.updates.Update.request` (the
same expression, every attribute behind a placeholder) and sends plain Python values:
the webhook store and the relay through the low-level client and boto3's
``TypeSerializer``; the CLI through the ``Table`` resource its command layer hands it,
whose client serializes the same values itself.

The ``BotState`` item has two writers that never clobber each other: each SETs only its
own attributes, and the shared ones (``created_at``, the ``by_day`` keys,
``session_id``) only where absent.

Values are plain Python (``str``, ``int``, ``bool``, ``None``, ``dict``): ``int``, not
``float`` (DynamoDB numbers come back as ``Decimal``, which :func:`plain` turns back into
``int``/``float``). Text from outside (transcripts, chat, names) goes through
:func:`storable_text`: DynamoDB stores UTF-8 only, and a lone surrogate (``\\ud83d``, which
any meeting participant can type) cannot be encoded.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Final, NotRequired, TypedDict

from storage import schema, times
from storage.updates import Update

#: The attribute that orders a bot's states (see :func:`bot_status_update`).
STATE_ORDER_ATTRIBUTE: Final = "updated_at"
#: Longest free text kept in a timeline item (transcript text, participant name, errors).
MAX_SUMMARY_CHARS: Final = 500
_SURROGATE_MIN: Final = "\ud800"
_SURROGATE_MAX: Final = "\udfff"


class BotStatus(TypedDict):
    """What a ``bot.*`` status webhook sets on ``BOT#<id>`` / ``STATE``."""

    bot_id: str
    status: str  # Recall's data.data.code, e.g. "in_call_recording"
    sub_code: str | None
    event: str  # e.g. "bot.in_call_recording"
    updated_at: str  # key_time of data.data.updated_at: what orders the states


class BotFirstSeen(TypedDict, total=False):
    """Attributes of ``STATE`` set by whichever writer comes first, never overwritten."""

    created_at: str
    gsi1pk: str
    gsi1sk: str
    session_id: str  # our relay session (token subject), from bot metadata


class BotCreated(TypedDict):
    """What ``voicebot bot create`` sets on ``STATE``."""

    bot_id: str
    session_id: str
    region: str
    meeting_url: str
    bot_name: str


class BotState(TypedDict):
    """``BOT#<id>`` / ``STATE`` as read back: the union of its two writers' attributes."""

    pk: str
    sk: str
    bot_id: str
    status: NotRequired[str]
    sub_code: NotRequired[str | None]
    event: NotRequired[str]
    updated_at: NotRequired[str]
    created_at: NotRequired[str]
    session_id: NotRequired[str]
    region: NotRequired[str]
    meeting_url: NotRequired[str]
    bot_name: NotRequired[str]
    gsi1pk: NotRequired[str]
    gsi1sk: NotRequired[str]


class BotEvent(TypedDict):
    """``BOT#<id>`` / ``EVT#…``: one event in the bot's history."""

    pk: str
    sk: str
    bot_id: str
    webhook_id: str
    event: str
    updated_at: str
    received_at: str
    status: NotRequired[str | None]
    sub_code: NotRequired[str | None]
    summary: NotRequired[str]  # e.g. transcript words or participant name, for timelines
    expires_at: NotRequired[int]


class Delivery(TypedDict):
    """``DELIVERY#<webhook_id>`` / ``DELIVERY``: a verified delivery, raw, stored once."""

    pk: str
    sk: str
    webhook_id: str
    received_at: str
    body: str  # the raw body as received (UTF-8, or encoded as `body_encoding` says)
    body_sha256: NotRequired[str]  # hex digest of the raw bytes (absent on items before it)
    body_encoding: NotRequired[str]  # "base64" (not UTF-8) or "zlib+base64" (too big as is)
    body_truncated: NotRequired[bool]  # cut to fit DynamoDB's 400 KB item limit
    event: NotRequired[str]
    bot_id: NotRequired[str]
    parse_error: NotRequired[str]  # set when the body could not be understood
    expires_at: NotRequired[int]


class Connection(TypedDict):
    """``SESSION#<id>`` / ``CONN#…``: one relay connection carrying the session."""

    pk: str
    sk: str
    session_id: str
    connection_id: str
    started_at: str
    model: NotRequired[str]
    ended_at: NotRequired[str]
    close_code: NotRequired[int]
    close_reason: NotRequired[str]
    upstream_close_code: NotRequired[int]
    # Summed usage of every response.done, by relay.response_usage.USAGE_FIELDS names (the
    # input_cached_{text,audio,image}_tokens among them price a resumed session's bill).
    usage: NotRequired[dict[str, int]]
    responses: NotRequired[int]
    expires_at: NotRequired[int]


class ConnectionSummary(TypedDict):
    """What the relay SETs on a ``Connection`` (every known attribute, each time)."""

    session_id: str
    connection_id: str
    started_at: str
    model: str
    expires_at: int
    ended_at: NotRequired[str]
    close_code: NotRequired[int]
    close_reason: NotRequired[str]
    upstream_close_code: NotRequired[int]
    usage: NotRequired[dict[str, int]]
    responses: NotRequired[int]


class Turn(TypedDict):
    """``SESSION#<id>`` / ``TURN#…``: a final transcript of what was heard or said."""

    pk: str
    sk: str
    session_id: str
    role: str  # "user" (heard in the meeting) or "assistant" (the agent said)
    text: str
    at: str
    item_id: NotRequired[str]
    expires_at: NotRequired[int]
    #: Who said it (a participant's name, from Recall's real-time events), user turns only.
    speaker: NotRequired[str]
    #: "chat" for a chat message; absent for speech.
    via: NotRequired[str]


#: Longest speaker name stored (Recall's names are display names).
MAX_SPEAKER_CHARS = 100

# Builders


def bot_status_update(
    status: BotStatus, *, session_id: str | None = None, created_at: str | None = None
) -> Update:
    """Move ``STATE`` to ``status`` unless the stored ``updated_at`` is as new or newer.

    A bot first seen through a webhook gets ``created_at`` (``status["updated_at"]``
    unless given), the ``by_day`` keys and ``session_id``, all only where absent.
    """
    first_seen = created_at or status["updated_at"]
    if_absent: BotFirstSeen = {
        "created_at": first_seen,
        "gsi1pk": schema.by_day_pk(first_seen[:10]),
        "gsi1sk": schema.by_day_sk(first_seen, status["bot_id"]),
    }
    if session_id is not None:
        if_absent["session_id"] = session_id
    return Update(
        pk=schema.bot_pk(status["bot_id"]),
        sk=schema.STATE_SK,
        assign=dict(status),
        assign_if_absent=dict(if_absent),
        only_if_newer=STATE_ORDER_ATTRIBUTE,
    )


def bot_created_update(created: BotCreated, created_at: datetime) -> Update:
    """Record what the CLI knows about a new bot; creation time and index keys if absent."""
    stamp = times.key_time(created_at)
    if_absent: BotFirstSeen = {
        "created_at": stamp,
        "gsi1pk": schema.by_day_pk(stamp[:10]),
        "gsi1sk": schema.by_day_sk(stamp, created["bot_id"]),
    }
    return Update(
        pk=schema.bot_pk(created["bot_id"]),
        sk=schema.STATE_SK,
        assign=dict(created),
        assign_if_absent=dict(if_absent),
    )


def bot_event_item(
    *,
    bot_id: str,
    webhook_id: str,
    event: str,
    occurred_at: datetime,
    received_at: datetime,
    expires_at: int,
    status: str | None = None,
    sub_code: str | None = None,
    summary: str | None = None,
) -> BotEvent:
    """One history item, sorted by the event's own time (``occurred_at``)."""
    at = times.key_time(occurred_at)
    item: BotEvent = {
        "pk": schema.bot_pk(bot_id),
        "sk": schema.event_sk(at, webhook_id),
        "bot_id": bot_id,
        "webhook_id": webhook_id,
        "event": event,
        "updated_at": at,
        "received_at": times.key_time(received_at),
        "expires_at": expires_at,
    }
    if status is not None:
        item["status"] = status
        item["sub_code"] = sub_code
    if summary:
        item["summary"] = storable_text(summary, MAX_SUMMARY_CHARS)
    return item


def delivery_item(
    *,
    webhook_id: str,
    received_at: datetime,
    body: str,
    body_sha256: str,
    expires_at: int,
    body_encoding: str | None = None,
    body_truncated: bool = False,
    event: str | None = None,
    bot_id: str | None = None,
    parse_error: str | None = None,
) -> Delivery:
    """The raw delivery item (``body`` already encoded to fit, as ``body_encoding`` says)."""
    item: Delivery = {
        "pk": schema.delivery_pk(webhook_id),
        "sk": schema.DELIVERY_SK,
        "webhook_id": webhook_id,
        "received_at": times.key_time(received_at),
        "body": body,
        "body_sha256": body_sha256,
        "expires_at": expires_at,
    }
    if body_encoding is not None:
        item["body_encoding"] = body_encoding
    if body_truncated:
        item["body_truncated"] = True
    if event is not None:
        item["event"] = event
    if bot_id is not None:
        item["bot_id"] = bot_id
    if parse_error is not None:
        item["parse_error"] = storable_text(parse_error, MAX_SUMMARY_CHARS)
    return item


def turn_item(
    *,
    session_id: str,
    at_ms: int,
    seq: int,
    role: str,
    text: str,
    expires_at: int,
    item_id: str | None = None,
    speaker: str | None = None,
    via: str | None = None,
) -> Turn:
    """One conversation turn, at ``at_ms`` (Unix ms); ``seq`` breaks ties in that ms;
    ``speaker`` names who said it, ``via`` says "chat" for a chat message."""
    item: Turn = {
        "pk": schema.session_pk(session_id),
        "sk": schema.turn_sk(at_ms, seq),
        "session_id": session_id,
        "role": role,
        "text": storable_text(text),
        "at": times.key_time_from_epoch_ms(at_ms),
        "expires_at": expires_at,
    }
    if item_id is not None:
        item["item_id"] = item_id
    if speaker:
        item["speaker"] = storable_text(speaker, MAX_SPEAKER_CHARS)
    if via:
        item["via"] = via
    return item


def connection_update(summary: ConnectionSummary) -> Update:
    """Rewrite a connection's summary whole (``SET`` of every attribute it has)."""
    return Update(
        pk=schema.session_pk(summary["session_id"]),
        sk=schema.connection_sk(summary["started_at"], summary["connection_id"]),
        assign=dict(summary),
    )


# Values


def storable_text(text: str, max_chars: int | None = None) -> str:
    """``text`` as DynamoDB can store it: lone surrogates become U+FFFD, cut to ``max_chars``.

    Everything else is kept as is (control characters included): stored data stays what
    was said; readers that print it escape it (the CLI's ``render``).
    """
    if max_chars is not None:
        text = text[:max_chars]
    if text.isascii() or not any(_SURROGATE_MIN <= c <= _SURROGATE_MAX for c in text):
        return text
    # In a str, a surrogate is always unpaired: json.loads joins the escaped pairs.
    return "".join("\ufffd" if _SURROGATE_MIN <= c <= _SURROGATE_MAX else c for c in text)


class SessionAgent(TypedDict):
    """``SESSION#<id>`` / ``AGENT``: which bot a relay session serves, and its persona.

    Written once by ``voicebot bot create``; read by the relay at session start (the
    session id is the token's subject, so a client cannot pick another bot's record).
    ``overlay`` holds only the fields the bot overrides (instructions, voice, greeting,
    tools by name), validated against the operator's agent config when written.
    """

    pk: str
    sk: str
    session_id: str
    bot_id: str
    created_at: str
    overlay: NotRequired[dict[str, Any]]


class ToolCallRecord(TypedDict):
    """``SESSION#<id>`` / ``TOOL#…``: a call of a relay tool, for resume and rollover.

    Written when the call starts (so a relay task that dies mid-call never lets another
    run it again: its ``call_id`` is known) and rewritten with ``output`` when it ends;
    the seed replays finished calls (``relay.tool_calls.seed_events``).
    """

    pk: str
    sk: str
    session_id: str
    call_id: str
    name: str
    arguments: str  # the model's JSON text, bounded
    at: str
    output: NotRequired[str]  # the function_call_output sent to the model
    ok: NotRequired[bool]
    expires_at: NotRequired[int]


class Note(TypedDict):
    """``BOT#<id>`` / ``NOTE#…``: a note the agent took during the meeting."""

    pk: str
    sk: str
    bot_id: str
    note_id: str
    text: str
    at: str
    session_id: NotRequired[str]
    expires_at: NotRequired[int]


def plain(value: Any) -> Any:
    """Turn DynamoDB ``Decimal`` numbers (at any depth) back into ``int``/``float``."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
