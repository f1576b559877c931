"""Item shapes stored in the application table, as TypedDicts with their converters.

Each shape lists the attributes its writer sets; readers tolerate missing optional ones.
Values are plain Python (``str``, ``int``, ``bool``, ``dict``), which is what boto3's
resource layer and ``TypeSerializer`` accept (``int`` not ``float``: DynamoDB numbers
come back as ``Decimal``, which :func:`plain` turns back into ``int``/``float``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, NotRequired, TypedDict


class BotState(TypedDict):
    """``BOT#<id>`` / ``STATE``: the bot's latest known status."""

    pk: str
    sk: str
    bot_id: str
    status: NotRequired[str]  # Recall's data.data.code, e.g. "in_call_recording"
    sub_code: NotRequired[str | None]
    event: NotRequired[str]  # e.g. "bot.in_call_recording"
    updated_at: NotRequired[str]  # data.data.updated_at of the event that set `status`
    created_at: NotRequired[str]
    session_id: NotRequired[str]  # our relay session (token subject), from bot metadata
    region: NotRequired[str]
    meeting_url: NotRequired[str]
    bot_name: NotRequired[str]
    metadata: NotRequired[dict[str, str]]
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
    usage: NotRequired[dict[str, int]]  # summed usage of every response.done
    responses: NotRequired[int]
    expires_at: NotRequired[int]


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
