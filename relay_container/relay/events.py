"""The relay's event vocabulary: every Realtime event type it reads, and how it finds them.

One module holds what the relay knows of the GA protocol's events, so no other module
sniffs bytes or spells an event name:

- the names (client and server events), grouped by what the relay does with them:
  rewritten by the policy (:data:`FILTERED_TYPES`), recorded (:data:`RECORDED_EVENT_TYPES`),
  acknowledging a set-up event (:data:`ACK_TYPES`), never recorded (:data:`UNRECORDED_HEADS`);
- the sniffers: :func:`peek_type` (client events, exact), :func:`recorded_type` and
  :func:`server_event_type` (server events, a bounded look at the first bytes), and the
  append fast path's :data:`APPEND_HEADS`;
- the error events the relay writes (:func:`error_event`).

``peek_type(raw)`` finds a client event's ``type`` without decoding its payload: events
serialized with ``type`` first (the openai SDKs, ``JSON.stringify`` of a literal) are read
by looking at their first bytes; anything else is decoded once as JSON. Base64 audio is
never decoded. Deeper validation is the model's job: it answers a bad event with its own
``error`` event, which the relay forwards. What the relay does decode, it decodes strictly
(``loads_strict``): duplicate keys, ``NaN``/``Infinity`` and nesting too deep for the
parser are all "not JSON", never an exception that ends the session.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Final

# Client events (openai-python types/realtime/*_event_param.py).
SESSION_UPDATE: Final = "session.update"
RESPONSE_CREATE: Final = "response.create"
CONVERSATION_ITEM_CREATE: Final = "conversation.item.create"
INPUT_AUDIO_APPEND: Final = "input_audio_buffer.append"
ITEM_TRUNCATE: Final = "conversation.item.truncate"
#: Relay-only: a client asks for its session's turn timings (relay.turn_timing); the relay
#: answers it with :data:`RELAY_LATENCY` and never forwards either.
RELAY_LATENCY_GET: Final = "relay.latency.get"
RELAY_LATENCY: Final = "relay.latency"

#: Client events the relay rewrites (policy.py); every other type passes untouched.
#: These are every GA client event that can carry instructions, tools or a prompt
#: reference (docs/clients.md, "What a locked field covers").
FILTERED_TYPES: Final = frozenset({SESSION_UPDATE, RESPONSE_CREATE, CONVERSATION_ITEM_CREATE})
#: How the openai SDKs and JSON.stringify begin an append (``type`` first, then its end quote).
APPEND_HEADS: Final = (
    b'{"type":"input_audio_buffer.append"',
    b'{"type": "input_audio_buffer.append"',
)

# Server events (openai-python types/realtime/*_event.py).
ERROR: Final = "error"
SESSION_CREATED: Final = "session.created"
SESSION_UPDATED: Final = "session.updated"
ITEM_ADDED: Final = "conversation.item.added"
ITEM_DONE: Final = "conversation.item.done"
SPEECH_STARTED: Final = "input_audio_buffer.speech_started"
SPEECH_STOPPED: Final = "input_audio_buffer.speech_stopped"
INPUT_COMMITTED: Final = "input_audio_buffer.committed"
TRANSCRIPTION_COMPLETED: Final = "conversation.item.input_audio_transcription.completed"
TRANSCRIPTION_FAILED: Final = "conversation.item.input_audio_transcription.failed"
RESPONSE_CREATED: Final = "response.created"
RESPONSE_DONE: Final = "response.done"
OUTPUT_AUDIO_TRANSCRIPT_DONE: Final = "response.output_audio_transcript.done"
OUTPUT_TEXT_DONE: Final = "response.output_text.done"
OUTPUT_ITEM_ADDED: Final = "response.output_item.added"
ARGUMENTS_DONE: Final = "response.function_call_arguments.done"

#: Events that acknowledge one set-up event each (a fresh upstream's ``session.created``,
#: one ``session.updated`` per update, ``item.added`` and ``item.done`` per seeded item).
ACK_TYPES: Final = frozenset({SESSION_CREATED, SESSION_UPDATED, ITEM_ADDED, ITEM_DONE})
#: Acknowledgements of the relay's own seeds that a resumed client never sees.
SEED_ACK_TYPES: Final = frozenset({ITEM_ADDED, ITEM_DONE})
#: ``event_id`` prefix of the relay's own seed events, found again in the model's errors.
SEED_EVENT_ID_PREFIX: Final = "relay_seed_"
SEED_ERROR_MARK: Final = b'"relay_seed_'
#: Events where the conversation's turn taking changes; only their type is read.
TURN_TAKING_EVENT_TYPES: Final[frozenset[str]] = frozenset(
    {
        SPEECH_STARTED,
        SPEECH_STOPPED,
        INPUT_COMMITTED,
        TRANSCRIPTION_COMPLETED,
        TRANSCRIPTION_FAILED,
        RESPONSE_CREATED,
        RESPONSE_DONE,
    }
)
#: Recorded events whose content is read (parsed once, checked, bounded).
PARSED_EVENT_TYPES: Final[frozenset[str]] = frozenset(
    {
        INPUT_COMMITTED,
        TRANSCRIPTION_COMPLETED,
        OUTPUT_AUDIO_TRANSCRIPT_DONE,
        OUTPUT_TEXT_DONE,
        RESPONSE_DONE,
    }
)
#: The only upstream event types the session hands to its record (the parsed ones, plus
#: the turn-taking ones); :func:`recorded_type` finds them without decoding anything.
RECORDED_EVENT_TYPES: Final[frozenset[str]] = PARSED_EVENT_TYPES | TURN_TAKING_EVENT_TYPES
#: Events a session with relay tools hands to its tool runner (``relay.tool_calls``): where
#: a function call appears, its arguments end, and responses start and end.
TOOL_EVENT_TYPES: Final[frozenset[str]] = frozenset(
    {OUTPUT_ITEM_ADDED, ARGUMENTS_DONE, RESPONSE_CREATED, RESPONSE_DONE}
)
#: How the model's audio delta begins (OpenAI and the simulator put ``type`` first).
AUDIO_DELTA_HEADS: Final = (
    b'{"type":"response.output_audio.delta"',
    b'{"type": "response.output_audio.delta"',
)
#: The model's most frequent events, never recorded: skipped before :func:`recorded_type`.
UNRECORDED_HEADS: Final = (
    b'{"type":"response.output_audio.delta"',
    b'{"type":"response.output_audio_transcript.delta"',
)

_PREFIXES: Final = (b'{"type":"', b'{"type": "')
#: The key as it appears in JSON; base64 audio and escaped strings never contain it.
TYPE_KEY: Final = b'"type"'
#: Event types are short dotted names; longer means something is off: decode instead.
_MAX_TYPE_BYTES: Final = 96


def peek_type(raw: bytes) -> str | None:
    """Return the ``type`` of a client event, or None if ``raw`` is not a JSON event object.

    ``raw`` is UTF-8 (checked by the caller). The first-bytes answer is given only when
    ``"type"`` occurs once in the frame and nothing in it is escaped: a second ``type``
    key, literal or escaped (``"\\u0074ype"``), makes duplicate keys, which parsers resolve
    differently, and could smuggle a different event past the policy. Anything else is
    decoded, and duplicate keys at any depth are refused.
    """
    for prefix in _PREFIXES:
        if raw.startswith(prefix) and raw.endswith(b"}"):
            start = len(prefix)
            end = raw.find(b'"', start, start + _MAX_TYPE_BYTES)
            if end > start and raw.find(b"\\") < 0 and raw.find(TYPE_KEY, end) < 0:
                return raw[start:end].decode()
            break
    try:
        event = loads_strict(raw)
    except ValueError:
        return None
    if isinstance(event, dict):
        kind = event.get("type")
        if isinstance(kind, str) and kind:
            return kind
    return None


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate keys")
    return obj


def _no_constants(name: str) -> Any:
    # NaN, Infinity and -Infinity are Python extensions, not JSON (RFC 8259 §6).
    raise ValueError(f"{name} is not a JSON number")


def loads_strict(raw: bytes) -> Any:
    """``json.loads`` that refuses duplicate keys at any depth, ``NaN`` and ``Infinity``.

    Raises:
        ValueError: not strict JSON, including nesting deeper than the parser's
            recursion limit (``RecursionError`` is turned into ValueError here, so a
            2 KB frame of brackets is a bad event, not a crash).
    """
    try:
        return json.loads(raw, object_pairs_hook=_unique_pairs, parse_constant=_no_constants)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def error_event(
    message: str,
    *,
    error_type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    event_id: str | None = None,
) -> bytes:
    """An OpenAI-shaped ``error`` server event, serialized.

    Shape: ``{"type":"error","event_id":…,"error":{"type","code","message","param","event_id"}}``
    (the GA server event; ``error.event_id`` names the client event it answers).
    """
    return json.dumps(
        {
            "type": "error",
            "event_id": f"event_relay_{uuid.uuid4().hex[:20]}",
            "error": {
                "type": error_type,
                "code": code,
                "message": message,
                "param": param,
                "event_id": event_id,
            },
        },
        separators=(",", ":"),
    ).encode()


#: Bytes of an upstream event looked at by :func:`server_event_type`.
_SERVER_PEEK_BYTES: Final = 200


def server_event_type(raw: bytes) -> str | None:
    """The ``type`` of a server event from its first bytes (no decoding), or None.

    For the few upstream events the relay must recognise outside the hot path (a fresh
    upstream's acknowledgements); servers put ``type`` first or after a short
    ``event_id``. A false match is possible only for events the caller does not expect.
    """
    at = raw.find(TYPE_KEY, 0, _SERVER_PEEK_BYTES)
    if at < 0:
        return None
    start = at + len(TYPE_KEY)
    while start < _SERVER_PEEK_BYTES and raw[start : start + 1] in (b" ", b":"):
        start += 1
    if raw[start : start + 1] != b'"':
        return None
    start += 1
    end = raw.find(b'"', start, start + _MAX_TYPE_BYTES)
    if end <= start:
        return None
    try:
        return raw[start:end].decode()
    except UnicodeDecodeError:
        return None


#: Bytes of a frame :func:`recorded_type` looks at: the top-level ``type`` of a server
#: event comes first, or after a short ``event_id``.
TYPE_PEEK_BYTES: Final = 160
_TYPE_FIRST: Final = b'{"type":"'
_RECORDED_TYPE_BYTES: Final[dict[bytes, str]] = {t.encode(): t for t in RECORDED_EVENT_TYPES}
_TOOL_TYPE_BYTES: Final[dict[bytes, str]] = {t.encode(): t for t in TOOL_EVENT_TYPES}
_LONGEST_WATCHED_TYPE: Final = max(len(t) for t in RECORDED_EVENT_TYPES | TOOL_EVENT_TYPES)


def recorded_type(payload: bytes) -> str | None:
    """The type of an upstream event if it is one of :data:`RECORDED_EVENT_TYPES`, else None.

    The upstream path's filter: it looks at the first :data:`TYPE_PEEK_BYTES` bytes only
    and decodes nothing, so an audio delta costs one bounded ``find``. A false match (the
    text appearing inside another value) is harmless: the record checks the parsed type.
    """
    return _RECORDED_TYPE_BYTES.get(_leading_type(payload))


def tool_event_type(payload: bytes) -> str | None:
    """The type of an upstream event if it is one of :data:`TOOL_EVENT_TYPES`, else None
    (the same bounded look as :func:`recorded_type`; the runner checks the parsed type)."""
    return _TOOL_TYPE_BYTES.get(_leading_type(payload))


def _leading_type(payload: bytes) -> bytes:
    if payload.startswith(_TYPE_FIRST):  # what OpenAI and our simulator send
        start = len(_TYPE_FIRST)
    else:
        at = payload.find(TYPE_KEY, 0, TYPE_PEEK_BYTES)
        if at < 0:
            return b""
        start = at + len(TYPE_KEY)
        while start < TYPE_PEEK_BYTES and payload[start : start + 1] in (b" ", b":"):
            start += 1
        if payload[start : start + 1] != b'"':
            return b""
        start += 1
    end = payload.find(b'"', start, start + _LONGEST_WATCHED_TYPE + 1)
    return payload[start:end] if end >= 0 else b""
