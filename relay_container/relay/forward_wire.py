"""The internal link's wire format: forwarded meeting events, their answers, the link token.

One relay task forwards a meeting event to the task that holds its session over a
WebSocket to that task's internal listener (docs/design/meeting-routing.md). Binary
frames only, both fixed-layout, so neither side parses JSON it does not own:

- forward (sender → owner): ``b"F"``, sequence number (8 bytes, big-endian), session id
  length (2 bytes), session id (UTF-8), then the raw Recall message, untouched;
- answer (owner → sender): ``b"A"``, the same sequence number, then one status byte:
  :attr:`Answer.TAKEN` (a live session here took it) or :attr:`Answer.NOT_HERE` (no live
  session of that subject on this process: the sender looks the owner up again).

The link is authenticated once, at its handshake, with an HS256 token signed by the
relay's token secret for :data:`relay.tokens.INTERNAL_AUDIENCE` and a short lifetime:
a page's relay token is refused there, and a link token is refused by the public endpoint.

Pure functions over bytes; :class:`WireError` for anything malformed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from relay import tokens
from storage import schema

FORWARD: Final = b"F"
ANSWER: Final = b"A"
_FORWARD_HEAD: Final = struct.Struct(">cQH")
_ANSWER: Final = struct.Struct(">cQB")
#: Bytes a forward frame adds around the event (head + longest session id).
FORWARD_OVERHEAD: Final = _FORWARD_HEAD.size + schema.MAX_ID_BYTES
#: Lifetime of a link token: it only opens a link, which then lives as long as it works.
LINK_TOKEN_SECONDS: Final = 60
LINK_SUBJECT: Final = "relay-link"


class WireError(ValueError):
    """A frame that does not follow the internal link's format."""


class Answer(IntEnum):
    """What the owner did with one forwarded event."""

    NOT_HERE = 0
    TAKEN = 1


@dataclass(frozen=True, slots=True)
class Forward:
    """One forwarded event."""

    seq: int
    session_id: str
    payload: bytes


def encode_forward(seq: int, session_id: str, payload: bytes) -> bytes:
    """A forward frame; ``session_id`` must be a valid key id (storage.schema)."""
    raw_id = session_id.encode()
    return _FORWARD_HEAD.pack(FORWARD, seq, len(raw_id)) + raw_id + payload


def decode_forward(frame: bytes) -> Forward:
    """Parse a forward frame.

    Raises:
        WireError: wrong kind, truncated, or a session id that is not a valid key id.
    """
    if len(frame) < _FORWARD_HEAD.size:
        raise WireError("forward frame too short")
    kind, seq, id_len = _FORWARD_HEAD.unpack_from(frame)
    if kind != FORWARD:
        raise WireError("not a forward frame")
    end = _FORWARD_HEAD.size + id_len
    if id_len == 0 or end > len(frame):
        raise WireError("forward frame session id truncated")
    try:
        session_id = frame[_FORWARD_HEAD.size : end].decode()
    except UnicodeDecodeError:
        raise WireError("forward frame session id is not UTF-8") from None
    if not schema.is_valid_id(session_id):
        raise WireError("forward frame session id is invalid")
    return Forward(seq=seq, session_id=session_id, payload=bytes(frame[end:]))


def encode_answer(seq: int, answer: Answer) -> bytes:
    """An answer frame."""
    return _ANSWER.pack(ANSWER, seq, answer)


def decode_answer(frame: bytes) -> tuple[int, Answer]:
    """Parse an answer frame into ``(seq, answer)``.

    Raises:
        WireError: wrong kind, wrong length or an unknown status.
    """
    if len(frame) != _ANSWER.size:
        raise WireError("answer frame has the wrong length")
    kind, seq, status = _ANSWER.unpack(frame)
    if kind != ANSWER:
        raise WireError("not an answer frame")
    try:
        return seq, Answer(status)
    except ValueError:
        raise WireError("answer frame status is unknown") from None


def mint_link_token(secret: str, *, now: float) -> str:
    """A token that opens one internal link (short-lived, internal audience)."""
    return tokens.mint(
        secret, LINK_SUBJECT, LINK_TOKEN_SECONDS, now=now, audience=tokens.INTERNAL_AUDIENCE
    )


def verify_link_token(token: str, secret: str, *, now: float) -> tokens.Claims:
    """Verify a link token.

    Raises:
        tokens.TokenError: missing, forged, expired, or minted for another audience.
    """
    return tokens.verify(token, secret, now=now, audience=tokens.INTERNAL_AUDIENCE)
