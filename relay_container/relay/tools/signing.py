"""Standard Webhooks signing of the relay's requests to HTTP tools (https://www.standardwebhooks.com/).

Pure: a secret, an id, a time and bytes in, a header value out. The secret is
``whsec_<base64>`` (what Svix and Recall use) or the bare base64; the HMAC key is its
decoded bytes. The
user's endpoint verifies with ``standardwebhooks`` or ``svix`` (docs/tools.md); the tests
verify our signatures with that library, so the two implementations check each other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Final

SECRET_PREFIX: Final = "whsec_"
#: Shortest decoded secret accepted (Svix's own secrets are 24 bytes; HMAC-SHA256 wants ≥ 16).
MIN_SECRET_BYTES: Final = 16


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (or bare base64, as the libraries take).

    Bare base64 lets the stack generate the secret: Secrets Manager's 32 alphanumeric
    characters are valid base64 for 24 bytes, and ``standardwebhooks.Webhook`` decodes
    them the same way.

    Raises:
        ValueError: not base64, or shorter than :data:`MIN_SECRET_BYTES` decoded.
    """
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # Unpadded base64 is accepted, as standardwebhooks and svix accept it.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"must be base64, optionally prefixed {SECRET_PREFIX}") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"must decode to at least {MIN_SECRET_BYTES} bytes")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for ``body``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
