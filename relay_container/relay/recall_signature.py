"""Did Recall open this connection? The signature on a real-time websocket's upgrade request.

Recall signs every request it sends from a workspace with a verification secret, the
real-time websocket's HTTP upgrade included, with Standard Webhooks headers
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature``; legacy ``svix-*`` names
accepted too). An upgrade has no body: Recall's own verifier signs it with an empty payload,
so the signed content is ``{id}.{timestamp}.`` (docs/recall-realtime.md, "Authentication").

Pure: headers, key and time in; the delivery id out, or :class:`~relay.errors.AuthError`.
The webhook Lambda has its own verifier (``functions/webhooks/signatures.py``), which this
container cannot import (docs/design/architecture.md: relay and functions never import each
other); the HMAC itself is ``relay.tools.signing.sign``, the relay's one Standard Webhooks
signer.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Final

from relay.errors import AuthError
from relay.tools.signing import decode_secret, sign

#: How the stack's secrets start, before the operator fills them (infra/constructs/secrets.py).
PLACEHOLDER_PREFIX: Final = "UNSET-"
#: Accepted clock difference either way (as the webhook Lambda).
TOLERANCE_SECONDS: Final = 300
MAX_ID_CHARS: Final = 256
MAX_SIGNATURE_HEADER_CHARS: Final = 4096
MAX_SIGNATURES: Final = 16
#: Delivery ids remembered to refuse a replayed upgrade (more than a tolerance window holds).
SEEN_IDS: Final = 10_000


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return headers.get(f"webhook-{name}") or headers.get(f"svix-{name}")


def verification_keys(secret: str | None) -> tuple[bytes, ...]:
    """The HMAC keys of ``RECALL_WEBHOOK_SECRET``: space-separated ``whsec_…`` secrets (two
    while rotating), skipping the stack's ``UNSET-`` placeholder and anything not valid."""
    keys = []
    for entry in (secret or "").split():
        if entry.startswith(PLACEHOLDER_PREFIX):
            continue
        try:
            keys.append(decode_secret(entry))
        except ValueError:
            continue
    return tuple(keys)


def verify_upgrade(headers: Mapping[str, str], keys: Sequence[bytes], now: float) -> str:
    """The ``webhook-id`` of an upgrade request one of ``keys`` signed within the tolerance.

    Raises:
        AuthError: a header missing, malformed, out of time, or no signature matching.
    """
    msg_id = _header(headers, "id")
    stamp = _header(headers, "timestamp")
    signatures = _header(headers, "signature")
    if not msg_id or not stamp or not signatures:
        raise AuthError("missing Recall signature headers")
    if len(msg_id) > MAX_ID_CHARS or len(signatures) > MAX_SIGNATURE_HEADER_CHARS:
        raise AuthError("Recall signature headers too long")
    if not stamp.isdigit() or len(stamp) > 12:
        raise AuthError("bad webhook-timestamp")
    if abs(now - int(stamp)) > TOLERANCE_SECONDS:
        raise AuthError("webhook-timestamp outside the tolerance")
    offered = [e.encode() for e in signatures.split(" ")[:MAX_SIGNATURES] if e.startswith("v1,")]
    for key in keys:
        expected = sign(key, msg_id, int(stamp), b"").encode()
        if any(hmac.compare_digest(entry, expected) for entry in offered):
            return msg_id
    raise AuthError("no valid Recall signature")


class SeenIds:
    """The newest delivery ids accepted, so an upgrade request replayed is refused."""

    def __init__(self, bound: int = SEEN_IDS) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._bound = bound

    def first_time(self, msg_id: str) -> bool:
        """True the first time ``msg_id`` is seen (and remember it)."""
        if msg_id in self._ids:
            return False
        self._ids[msg_id] = None
        if len(self._ids) > self._bound:
            self._ids.popitem(last=False)
        return True
