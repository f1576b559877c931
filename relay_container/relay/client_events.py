"""ClientEvents: what a client text message is, and what the session policy makes of it.

The session core forwards a client message only once it is known to be one JSON event
object with one string ``type`` (``relay.events.peek_type``, which never decodes audio)
in valid UTF-8. Binary frames are refused (the Realtime protocol is JSON text). The two
event types the policy rewrites (``session.update``, ``response.create``) are passed
through ``SessionPolicy``. A refusal is an OpenAI-shaped ``error`` event for the client;
the session continues.

The audio append, nearly every client message, never comes here: the core recognises it
from its first bytes (:func:`is_plain_append`).
"""

from __future__ import annotations

from typing import Final

from relay import wire
from relay.errors import InvalidEventError
from relay.events import (
    APPEND_HEADS,
    FILTERED_TYPES,
    TYPE_KEY,
    error_event,
    loads_strict,
    peek_type,
)
from relay.policy import SessionPolicy
from relay.tool_calls import ToolCallTracker
from relay.tool_guard import CLIENT_EVENT_TYPES as GUARDED_TYPES

_BINARY: Final = wire.BINARY


def is_plain_append(payload: bytes) -> bool:
    """An ``input_audio_buffer.append`` the policy never rewrites, known from its bytes.

    One literal ``"type"`` and no escapes, so no second type key can hide in it (see
    ``events.peek_type``).
    """
    return (
        payload.startswith(APPEND_HEADS)
        and payload.endswith(b"}")
        and payload.find(TYPE_KEY, 8) < 0
        and payload.find(b"\\") < 0
    )


class ClientEvents:
    """Checks one session's client messages, one at a time (see the module docstring)."""

    __slots__ = ("model", "policy", "session_id", "tools")

    def __init__(
        self,
        policy: SessionPolicy,
        *,
        model: str,
        session_id: str,
        tools: ToolCallTracker | None = None,
    ) -> None:
        self.policy = policy
        #: The session's model: the operator's value when a client sends ``model``.
        self.model = model
        self.session_id = session_id
        #: The relay tools' guard: a client never invokes, forces or redefines one.
        self.tools = tools

    def check(self, opcode: int, payload: bytes) -> tuple[str | None, bytes, bytes | None]:
        """(its type, or None if it must not be forwarded; the bytes to forward; an error
        event for the client, or None). The policy may drop an event silently (a locked
        field refused without ``locked_fields_error``): no type, no error."""
        if opcode == _BINARY:
            return (
                None,
                payload,
                _refusal(
                    "binary frames are not part of the Realtime protocol: send JSON text events",
                    "binary_not_supported",
                ),
            )
        if not payload.isascii():
            try:
                payload.decode()
            except UnicodeDecodeError:
                return None, payload, _refusal("the text frame is not valid UTF-8", "invalid_utf8")
        kind = peek_type(payload)
        if kind is None:
            return (
                None,
                payload,
                _refusal(
                    "expected a JSON object with one string `type` field and no duplicate keys",
                    "invalid_json",
                ),
            )
        if self.tools is not None and kind in GUARDED_TYPES:
            try:
                event = loads_strict(payload)
            except (ValueError, RecursionError):
                return None, payload, _refusal("the event is not valid JSON", "invalid_json")
            if isinstance(event, dict):
                guarded = self.tools.check_client_event(kind, event)
                if guarded.refusal is not None:
                    return None, payload, guarded.refusal
                if guarded.forward is not None:
                    payload = guarded.forward  # the relay's tools merged into the client's
        if kind not in FILTERED_TYPES:
            return kind, payload, None
        verdict = self.policy.apply(kind, payload, model=self.model, session_id=self.session_id)
        if verdict.forward is None:
            return None, payload, verdict.reply
        return kind, verdict.forward, verdict.reply


def _refusal(message: str, code: str) -> bytes:
    error = InvalidEventError(message, code=code)
    return error_event(str(error), error_type=error.error_type, code=error.error_code)
