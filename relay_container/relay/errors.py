"""The relay's one error hierarchy: every refusal and fault, carrying its wire form.

Each class says how it reaches the client: ``http_status`` when it refuses a handshake,
``close_code`` (RFC 6455 §7.4.1) when it ends a live session, and ``error_type`` /
``error_code`` for the OpenAI-shaped ``error`` event sent before the close. The boundary
(``server.py`` for handshakes, ``session.py`` for live sessions) maps them once; nothing
below catches them.
"""

from __future__ import annotations

from typing import ClassVar

from websockets.frames import CloseCode


class RelayError(Exception):
    """Base class; ``str(error)`` is safe to show a client and to log (never a secret)."""

    http_status: ClassVar[int] = 500
    close_code: ClassVar[int] = CloseCode.INTERNAL_ERROR
    error_type: ClassVar[str] = "server_error"
    #: The ``error.code`` of the client's error event (an instance may narrow it).
    error_code: str = "relay_error"


class ConfigError(RelayError):
    """The environment does not describe a runnable relay; lists every problem at once."""

    error_code = "invalid_config"

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid relay configuration: " + "; ".join(self.problems))


class AuthError(RelayError):
    """No relay token, or one that does not verify (401 at the handshake)."""

    http_status = 401
    close_code = CloseCode.POLICY_VIOLATION
    error_type = "invalid_request_error"
    error_code = "invalid_relay_token"


class BadRequestError(RelayError):
    """A handshake the relay cannot read or will not take as sent (400), e.g. a token in
    the query string or more query fields than it parses."""

    http_status = 400
    close_code = CloseCode.POLICY_VIOLATION
    error_type = "invalid_request_error"
    error_code = "bad_request"


class ForbiddenError(RelayError):
    """A valid token asking for something the relay does not allow (403), e.g. a model."""

    http_status = 403
    close_code = CloseCode.POLICY_VIOLATION
    error_type = "invalid_request_error"
    error_code = "forbidden"


class CapacityError(RelayError):
    """The process holds RELAY_MAX_SESSIONS already: 503 so the balancer tries another task."""

    http_status = 503
    close_code = CloseCode.TRY_AGAIN_LATER
    error_code = "relay_full"


class SubjectLimitError(RelayError):
    """The token's subject holds RELAY_MAX_SESSIONS_PER_SUBJECT sessions already (429)."""

    http_status = 429
    close_code = CloseCode.POLICY_VIOLATION
    error_type = "invalid_request_error"
    error_code = "too_many_sessions"


class DrainingError(RelayError):
    """The relay is shutting down: 503 to new handshakes, 1001 to live sessions."""

    http_status = 503
    close_code = CloseCode.GOING_AWAY
    error_code = "relay_draining"


class UpstreamError(RelayError):
    """OpenAI refused, failed or dropped the session (1011 to the client)."""

    http_status = 502
    close_code = CloseCode.INTERNAL_ERROR
    error_code = "upstream_error"


class QueueOverflowError(RelayError):
    """The client sent more than the pre-upstream queue holds before the model was ready."""

    close_code = CloseCode.POLICY_VIOLATION
    error_type = "invalid_request_error"
    error_code = "relay_queue_overflow"


class SessionTooLongError(RelayError):
    """The session reached RELAY_MAX_SESSION_SECONDS."""

    close_code = CloseCode.POLICY_VIOLATION
    error_type = "invalid_request_error"
    error_code = "session_expired"


class ProtocolViolationError(RelayError):
    """The client broke WebSocket framing (RFC 6455 §7.4.1: 1002, or 1009 when too big)."""

    close_code = CloseCode.PROTOCOL_ERROR
    error_type = "invalid_request_error"
    error_code = "protocol_error"


class MessageTooBigError(ProtocolViolationError):
    """A client message larger than RELAY_MAX_FRAME_BYTES (1009)."""

    close_code = CloseCode.MESSAGE_TOO_BIG
    error_code = "message_too_big"


class InvalidEventError(RelayError):
    """A client frame the relay will not forward (not UTF-8, not a JSON event, binary).

    Not fatal: the client gets an ``error`` event and the session continues.
    """

    close_code = CloseCode.POLICY_VIOLATION
    error_type = "invalid_request_error"
    error_code = "invalid_event"

    def __init__(self, message: str, *, code: str = "invalid_event") -> None:
        super().__init__(message)
        self.error_code = code


class ClientAbuseError(RelayError):
    """A client that does not read what it is sent, or keeps sending invalid events (1008).

    Every byte the relay queues toward a client is bounded: one that lets them pile up, or
    makes the relay answer a flood of invalid events, is cut rather than served.
    """

    close_code = CloseCode.POLICY_VIOLATION
    error_type = "invalid_request_error"
    error_code = "relay_client_abuse"


class TransitionError(RuntimeError):
    """An input the session core cannot take in its current state (a bug in the caller)."""
