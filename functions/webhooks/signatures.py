"""Standard Webhooks signature verification, pure: headers, raw body, secrets and time in.

Owns the one question "did Recall send exactly these bytes, recently?". It reads no
clock, no environment and no socket, so it is tested exhaustively with hostile inputs.

The scheme (https://www.standardwebhooks.com/, Svix-compatible; docs/recall-webhooks.md):

* headers ``webhook-id``, ``webhook-timestamp`` (Unix seconds), ``webhook-signature``; legacy
  workspaces send the same three as ``svix-id``/``svix-timestamp``/``svix-signature``;
* secret ``whsec_<base64>``; key = the decoded bytes;
* signature = base64(HMAC-SHA256(key, ``{id}.{timestamp}.`` + raw body bytes));
* ``webhook-signature`` is a space-separated list of ``v1,<base64>`` entries (several while
  the sender rotates); one match against any of our secrets (several while we rotate) is
  enough; entries of other versions (``v1a`` is asymmetric) are ignored;
* the timestamp must be within the tolerance of ``now`` in both directions (replays, and
  clocks set to the future).

Why not ``standardwebhooks.Webhook.verify``: it reads the wall clock (we take ``now`` so
tests and replays are deterministic), decodes the body as text (we sign the raw bytes, so a
body that is not UTF-8 still verifies and is kept raw), reads only ``webhook-*`` headers and
raises ``ValueError`` on a malformed entry instead of rejecting it. The library (and
``svix``) sign the deliveries in our tests, so the two implementations check each other.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from functions.webhooks.errors import SignatureError

SECRET_PREFIX: Final = "whsec_"
DEFAULT_TOLERANCE_SECONDS: Final = 300
#: Bounds on the headers we look at, so a hostile request cannot make us do much work.
MAX_ID_LENGTH: Final = 256
MAX_SIGNATURE_HEADER_LENGTH: Final = 8192
MAX_SIGNATURES: Final = 16
MAX_TIMESTAMP_DIGITS: Final = 12


@dataclass(frozen=True, slots=True)
class VerifiedDelivery:
    """What a valid signature vouches for."""

    webhook_id: str
    timestamp: int


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (padding optional).

    Raises:
        ValueError: not ``whsec_`` followed by non-empty, valid base64.
    """
    return _decode_secret(secret)


@functools.lru_cache(maxsize=16)
def _decode_secret(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is base64 after whsec_") from None
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def sign(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> bytes:
    """The raw HMAC-SHA256 signature of one delivery."""
    signed = b"".join((webhook_id.encode(), b".", timestamp.encode(), b".", body))
    return hmac.new(key, signed, hashlib.sha256).digest()


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Iterable[str],
    now: float,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> VerifiedDelivery:
    """Check a delivery's signature headers against ``body`` and ``secrets`` at time ``now``.

    Args:
        headers: the request headers; names are matched case-insensitively.
        body: the raw body bytes exactly as received.
        secrets: ``whsec_`` secrets; any one may match. Invalid ones are skipped.
        now: the current Unix time in seconds.
        tolerance_seconds: how far the timestamp may be from ``now``, either way.

    Returns:
        The verified webhook id (the idempotency key) and timestamp.

    Raises:
        SignatureError: missing or malformed headers, a timestamp outside the tolerance,
            or no signature that matches any secret. The message never echoes a signature.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    webhook_id = _header(lowered, "id")
    raw_timestamp = _header(lowered, "timestamp")
    raw_signatures = _header(lowered, "signature")

    if len(webhook_id) > MAX_ID_LENGTH or not webhook_id.isprintable():
        raise SignatureError("the webhook id header is malformed")
    if not (raw_timestamp.isascii() and raw_timestamp.isdigit()) or (
        len(raw_timestamp) > MAX_TIMESTAMP_DIGITS
    ):
        raise SignatureError("the webhook timestamp header is not Unix seconds")
    timestamp = int(raw_timestamp)
    if timestamp < now - tolerance_seconds:
        raise SignatureError("the webhook timestamp is too old (more than 5 minutes)")
    if timestamp > now + tolerance_seconds:
        raise SignatureError("the webhook timestamp is in the future (more than 5 minutes)")
    if len(raw_signatures) > MAX_SIGNATURE_HEADER_LENGTH:
        raise SignatureError("the webhook signature header is too long")

    offered = _v1_signatures(raw_signatures)
    if not offered:
        raise SignatureError("the webhook signature header has no v1 signature")
    matched = False
    for secret in secrets:
        try:
            key = decode_secret(secret)
        except ValueError:
            continue
        expected = sign(key, webhook_id, raw_timestamp, body)
        # Compare against every entry without stopping early: constant time per entry.
        for candidate in offered:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("no webhook signature matches the configured secret")
    return VerifiedDelivery(webhook_id=webhook_id, timestamp=timestamp)


def _header(lowered: Mapping[str, str], suffix: str) -> str:
    """``webhook-<suffix>``, else the legacy ``svix-<suffix>``."""
    value = lowered.get(f"webhook-{suffix}") or lowered.get(f"svix-{suffix}") or ""
    value = value.strip()
    if not value:
        raise SignatureError(f"the webhook-{suffix} (or svix-{suffix}) header is missing")
    return value


def _v1_signatures(header: str) -> list[bytes]:
    """The decoded ``v1,<base64>`` entries of a signature header; others are skipped."""
    found: list[bytes] = []
    for entry in header.split()[:MAX_SIGNATURES]:
        version, _, encoded = entry.partition(",")
        if version != "v1" or not encoded:
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found
