"""verify_webhook against deliveries signed by the standardwebhooks and svix packages."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from functions.webhooks.errors import SignatureError
from functions.webhooks.signatures import decode_secret, verify_webhook
from tests.webhooks.conftest import new_secret, sign_standard, sign_svix

NOW = 1_795_975_392
AT = datetime.fromtimestamp(NOW, UTC)
BODY = b'{"event":"bot.done","data":{"data":{"code":"done"}}}'
SECRET = new_secret()
OTHER = new_secret()


def manual_signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The spec's formula written out in the test (for bodies the libraries cannot take)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@pytest.mark.parametrize("signer", [sign_standard, sign_svix], ids=["standardwebhooks", "svix"])
def test_accepts_delivery_signed_by_independent_library(signer: Callable[..., dict[str, str]]):
    """A delivery signed by either reference library verifies and yields its webhook id."""
    headers = signer(SECRET, BODY, webhook_id="msg_abc", at=AT)
    verified = verify_webhook(headers, BODY, [SECRET], now=NOW)
    assert verified.webhook_id == "msg_abc"
    assert verified.timestamp == NOW


def test_accepts_any_of_rotated_secrets():
    """While we rotate, a delivery signed with the old secret still verifies."""
    headers = sign_standard(OTHER, BODY, at=AT)
    assert verify_webhook(headers, BODY, [SECRET, OTHER], now=NOW)


def test_accepts_one_matching_signature_among_several():
    """While Recall rotates, one matching v1 entry among several is enough."""
    good = sign_standard(SECRET, BODY, webhook_id="msg_1", at=AT)
    wrong = sign_standard(OTHER, BODY, webhook_id="msg_1", at=AT)["webhook-signature"]
    headers = {**good, "webhook-signature": f"v1a,AAAA {wrong} {good['webhook-signature']}"}
    assert verify_webhook(headers, BODY, [SECRET], now=NOW).webhook_id == "msg_1"


def test_header_names_are_case_insensitive():
    """REST-style capitalised header names verify like HTTP API's lowercase ones."""
    headers = {k.title(): v for k, v in sign_standard(SECRET, BODY, at=AT).items()}
    assert verify_webhook(headers, BODY, [SECRET], now=NOW)


def test_verifies_raw_bytes_that_are_not_utf8():
    """The HMAC covers the raw bytes, so a body that is not UTF-8 still verifies."""
    body = b"\xff\xfe not utf-8 \x80"
    headers = {
        "webhook-id": "msg_raw",
        "webhook-timestamp": str(NOW),
        "webhook-signature": manual_signature(SECRET, "msg_raw", str(NOW), body),
    }
    assert verify_webhook(headers, body, [SECRET], now=NOW).webhook_id == "msg_raw"


@pytest.mark.parametrize("skew", [-300, 300], ids=["5min-old", "5min-ahead"])
def test_accepts_timestamps_at_the_tolerance_edge(skew: int):
    """Exactly five minutes either way is still accepted."""
    headers = sign_standard(SECRET, BODY, at=datetime.fromtimestamp(NOW + skew, UTC))
    assert verify_webhook(headers, BODY, [SECRET], now=NOW)


def _signed() -> dict[str, str]:
    return sign_standard(SECRET, BODY, webhook_id="msg_1", at=AT)


def _without(name: str) -> dict[str, str]:
    return {k: v for k, v in _signed().items() if k != name}


def _with(**changes: str) -> dict[str, str]:
    return {**_signed(), **{k.replace("_", "-"): v for k, v in changes.items()}}


def _at(offset: int) -> dict[str, str]:
    return sign_standard(SECRET, BODY, at=datetime.fromtimestamp(NOW + offset, UTC))


def _many_signatures() -> dict[str, str]:
    good = _signed()
    return {**good, "webhook-signature": "v1,AAAA " * 16 + good["webhook-signature"]}


HOSTILE: list[tuple[str, Callable[[], dict[str, str]], bytes, list[str]]] = [
    ("no-headers", dict, BODY, [SECRET]),
    ("missing-id", lambda: _without("webhook-id"), BODY, [SECRET]),
    ("missing-timestamp", lambda: _without("webhook-timestamp"), BODY, [SECRET]),
    ("missing-signature", lambda: _without("webhook-signature"), BODY, [SECRET]),
    ("empty-signature", lambda: _with(webhook_signature=""), BODY, [SECRET]),
    ("stale-301s", lambda: _at(-301), BODY, [SECRET]),
    ("future-301s", lambda: _at(301), BODY, [SECRET]),
    ("stale-a-day", lambda: _at(-86_400), BODY, [SECRET]),
    ("timestamp-not-a-number", lambda: _with(webhook_timestamp="yesterday"), BODY, [SECRET]),
    ("timestamp-float", lambda: _with(webhook_timestamp=f"{NOW}.0"), BODY, [SECRET]),
    ("timestamp-negative", lambda: _with(webhook_timestamp=f"-{NOW}"), BODY, [SECRET]),
    ("timestamp-huge", lambda: _with(webhook_timestamp="9" * 40), BODY, [SECRET]),
    ("timestamp-moved-1s", lambda: _with(webhook_timestamp=str(NOW + 1)), BODY, [SECRET]),
    ("id-changed", lambda: _with(webhook_id="msg_2"), BODY, [SECRET]),
    ("id-too-long", lambda: _with(webhook_id="m" * 300), BODY, [SECRET]),
    ("id-control-chars", lambda: _with(webhook_id="msg\x00"), BODY, [SECRET]),
    ("body-tampered", _signed, BODY.replace(b"done", b"dona"), [SECRET]),
    ("body-extra-space", _signed, BODY + b" ", [SECRET]),
    ("body-empty", _signed, b"", [SECRET]),
    ("wrong-secret", _signed, BODY, [OTHER]),
    ("no-valid-secret", _signed, BODY, ["whsec_", "not-a-secret"]),
    ("no-secrets", _signed, BODY, []),
    ("only-v1a-entry", lambda: _with(webhook_signature="v1a,AAAA"), BODY, [SECRET]),
    (
        "v2-prefix",
        lambda: _with(webhook_signature="v2," + _signed()["webhook-signature"][3:]),
        BODY,
        [SECRET],
    ),
    (
        "no-version",
        lambda: _with(webhook_signature=_signed()["webhook-signature"][3:]),
        BODY,
        [SECRET],
    ),
    ("bad-base64", lambda: _with(webhook_signature="v1,!!!notbase64!!!"), BODY, [SECRET]),
    (
        "truncated-signature",
        lambda: _with(webhook_signature=_signed()["webhook-signature"][:-4]),
        BODY,
        [SECRET],
    ),
    ("header-too-long", lambda: _with(webhook_signature="v1,AAAA " * 2000), BODY, [SECRET]),
    ("match-after-16-entries", _many_signatures, BODY, [SECRET]),
]


@pytest.mark.parametrize(
    ("make_headers", "body", "secrets"),
    [pytest.param(h, b, s, id=i) for i, h, b, s in HOSTILE],
)
def test_rejects_hostile_delivery(
    make_headers: Callable[[], dict[str, str]], body: bytes, secrets: list[str]
):
    """A forged, replayed, tampered or malformed delivery raises SignatureError (401)."""
    headers = make_headers()
    with pytest.raises(SignatureError) as caught:
        verify_webhook(headers, body, secrets, now=NOW)
    assert caught.value.status_code == 401
    for entry in headers.get("webhook-signature", "").split():
        value = entry.partition(",")[2] or entry
        assert len(value) < 8 or value not in caught.value.message


@pytest.mark.parametrize(
    "secret",
    ["whsec_", "dGVzdA==", "whsec_!!!!", "whsec_dGVz dA==", "WHSEC_dGVzdA=="],
    ids=["empty", "no-prefix", "not-base64", "inner-space", "wrong-case-prefix"],
)
def test_decode_secret_rejects_malformed(secret: str):
    """A secret that is not whsec_<base64> is refused with ValueError."""
    with pytest.raises(ValueError, match="webhook secret"):
        decode_secret(secret)


def test_decode_secret_accepts_unpadded_base64():
    """Unpadded base64 (as some dashboards copy it) decodes to the same key."""
    padded = "whsec_" + base64.b64encode(b"0123456789").decode()
    assert padded.endswith("=")
    assert decode_secret(padded.rstrip("=")) == decode_secret(padded) == b"0123456789"
