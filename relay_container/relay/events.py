"""The few Realtime event facts the relay reads, and the error events it writes.

``peek_type(raw)`` finds a client event's ``type`` without decoding its payload: events
serialized with ``type`` first (the openai SDKs, ``JSON.stringify`` of a literal) are read
by looking at their first bytes; anything else is decoded once as JSON. Base64 audio is
never decoded. Deeper validation is the model's job: it answers a bad event with its own
``error`` event, which the relay forwards.
"""

from __future__ import annotations

import json
import uuid
from typing import Final

SESSION_UPDATE: Final = "session.update"
RESPONSE_CREATE: Final = "response.create"
INPUT_AUDIO_APPEND: Final = "input_audio_buffer.append"

#: Client events the relay rewrites (policy.py); every other type passes untouched.
FILTERED_TYPES: Final = frozenset({SESSION_UPDATE, RESPONSE_CREATE})

_PREFIXES: Final = (b'{"type":"', b'{"type": "')
#: Event types are short dotted names; longer means something is off: decode instead.
_MAX_TYPE_BYTES: Final = 96


def peek_type(raw: bytes) -> str | None:
    """Return the ``type`` of a client event, or None if ``raw`` is not a JSON event object.

    ``raw`` is UTF-8 (checked by the caller).
    """
    for prefix in _PREFIXES:
        if raw.startswith(prefix) and raw.endswith(b"}"):
            start = len(prefix)
            end = raw.find(b'"', start, start + _MAX_TYPE_BYTES)
            if end > start and raw.find(b"\\", start, end) < 0:
                return raw[start:end].decode()
            break
    try:
        event = json.loads(raw)
    except ValueError:
        return None
    if isinstance(event, dict):
        kind = event.get("type")
        if isinstance(kind, str) and kind:
            return kind
    return None


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
