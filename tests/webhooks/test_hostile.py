"""Hostile input at the receiver, over a real socket: what Recall (or anyone) can send.

The receiver is the module's ``uvicorn functions.webhooks.app:app`` subprocess storing
into moto's server. The promises under test:

* a *signed* body never gets a 5xx: it is stored (raw, with ``parse_error``, when it
  cannot be understood) and answered 2xx, because Recall retries a failing delivery and
  finally disables the endpoint, losing every later webhook;
* nothing it carries can move a bot's state backwards, freeze it, or change state that
  was never stored (a reused webhook id with another body);
* ids that become part of a key are refused when they hold control or bidi characters
  or are too long (the body is still kept raw);
* unsigned or malformed headers get a 4xx and store nothing; only our own outages
  answer 5xx (tests/webhooks/test_app_config.py and test_store.py cover those).

The last two tests are bounded property-based fuzzes (hypothesis, a few hundred
examples, no example database) of bodies and of headers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
import uuid
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.webhooks.signatures import decode_secret, sign
from tests.conftest import TIMEOUT
from tests.webhooks.conftest import (
    Receiver,
    body_of,
    new_webhook_id,
    payload,
    sign_standard,
)


@pytest.fixture
def receiver(served_receiver: Receiver) -> Receiver:
    """The module's running receiver."""
    return served_receiver


# Helpers


def signed_headers(secret: str, body: bytes, webhook_id: str | None = None) -> dict[str, str]:
    """Standard Webhooks headers for any bytes (the libraries only sign UTF-8 text)."""
    webhook_id = webhook_id or new_webhook_id()
    timestamp = str(int(datetime.now(UTC).timestamp()))
    signature = base64.b64encode(sign(decode_secret(secret), webhook_id, timestamp, body))
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + signature.decode(),
    }


def post_like_recall(receiver: Receiver, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST once, and again while the answer is a 503, as Recall retries one (with a deadline).

    A 503 is our own outage (here: moto answering slower than the store's 2 s read timeout
    on a loaded machine), never the body's fault; what is asserted is the final answer.
    """
    deadline = time.monotonic() + TIMEOUT
    while True:
        response = receiver.post(body, headers)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response


def stored_body(item: dict[str, Any]) -> bytes:
    """The raw bytes a ``DELIVERY`` item holds."""
    encoding = item.get("body_encoding")
    if encoding == "base64":
        return base64.b64decode(item["body"])
    if encoding == "zlib+base64":
        return zlib.decompress(base64.b64decode(item["body"]))
    text: str = item["body"]
    return text.encode()


def assert_kept(receiver: Receiver, webhook_id: str, body: bytes) -> dict[str, Any]:
    """The delivery is stored once, with exactly the bytes that were sent."""
    item = receiver.table.delivery(webhook_id)
    assert item is not None, "a signed delivery was not stored"
    assert stored_body(item) == body
    assert item["body_sha256"] == hashlib.sha256(body).hexdigest()
    return item


def raw_request(url: str, head: bytes, body: bytes = b"") -> int:
    """Send one request byte for byte (no client-side header checks); the status code."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT) as sock:
        sock.sendall(head + body)
        received = b""
        while b"\r\n" not in received:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
    status_line = received.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 "), f"no HTTP answer: {received[:80]!r}"
    return int(status_line.split()[1])


def head_of(headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """A POST to the webhook path with exactly these header lines."""
    lines = [b"POST /webhooks/recall HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    if not any(name.lower() in {b"content-length", b"transfer-encoding"} for name, _ in headers):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


# Signed bodies that once answered 500, and their relatives


def _with(name: str, change: Callable[[dict[str, Any]], None], **ids: str) -> bytes:
    event = payload(name, **ids)
    change(event)
    return body_of(event)


def _set(*path: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(event: dict[str, Any]) -> None:
        node: Any = event
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def _nested(depth: int) -> bytes:
    return b'{"event":"bot.done","data":{"extra":' + b"[" * depth + b"]" * depth + b"}}"


#: (id, signed body, the answer's status, whether the bot's state may exist afterwards)
SIGNED_HOSTILE: list[tuple[str, bytes, str]] = [
    ("nested-1000-deep", _nested(1000), "stored_unparsed"),
    ("nested-100000-deep", _nested(100_000), "stored_unparsed"),
    (
        "updated-at-year-1-east-of-utc",
        _with("bot.done", _set("data", "data", "updated_at", value="0001-01-01T00:00:00+01:00")),
        "stored_unparsed",
    ),
    (
        "updated-at-year-9999-west-of-utc",
        _with("bot.done", _set("data", "data", "updated_at", value="9999-12-31T23:59:59-01:00")),
        "stored_unparsed",
    ),
    (
        "chat-text-lone-surrogate",
        _with(
            "participant_events.chat_message", _set("data", "data", "data", "text", value="\ud83d")
        ),
        "stored",
    ),
    (
        "participant-name-lone-surrogate",
        _with(
            "participant_events.join", _set("data", "data", "participant", "name", value="A\udc00")
        ),
        "stored",
    ),
    (
        "transcript-word-lone-surrogate",
        _with("transcript.data", _set("data", "data", "words", 0, "text", value="\ud800!")),
        "stored",
    ),
    (
        "bot-id-over-2kb",
        _with("bot.done", _set("data", "bot", "id", value="b" * 2100)),
        "stored_unparsed",
    ),
    (
        "bot-id-with-escape-codes",
        _with("bot.done", _set("data", "bot", "id", value="bot\x1b[2J")),
        "stored_unparsed",
    ),
    (
        "bot-id-with-bidi-override",
        _with("bot.done", _set("data", "bot", "id", value="bot\u202eevil")),
        "stored_unparsed",
    ),
    (
        "bot-id-lone-surrogate",
        _with("bot.done", _set("data", "bot", "id", value="\udfff")),
        "stored_unparsed",
    ),
    (
        "session-id-with-newline",
        _with("bot.done", _set("data", "bot", "metadata", value={"session_id": "s\n1"})),
        "stored_unparsed",
    ),
    (
        "event-name-300kb",
        _with("bot.done", _set("event", value="bot." + "x" * 300_000)),
        "stored_unparsed",
    ),
    (
        "code-300kb",
        _with("bot.done", _set("data", "data", "code", value="c" * 300_000)),
        "stored_unparsed",
    ),
    (
        "event-name-with-terminal-title",
        _with("bot.done", _set("event", value="bot.\x1b]0;owned\x07")),
        "stored_unparsed",
    ),
    (
        "sub-code-lone-surrogate",
        _with("bot.fatal", _set("data", "data", "sub_code", value="\ud83d")),
        "stored_unparsed",
    ),
    ("nan-and-infinity", b'{"event":"x.y","data":{"n":NaN,"i":-Infinity}}', "stored"),
    ("empty-body", b"", "stored_unparsed"),
    ("not-utf8", b'{"event":"bot.done\xed\xa0\xbd"}', "stored_unparsed"),
    ("json-array", b"[]", "stored_unparsed"),
]


@pytest.mark.parametrize(
    ("body", "status"),
    [case[1:] for case in SIGNED_HOSTILE],
    ids=[case[0] for case in SIGNED_HOSTILE],
)
def test_signed_hostile_body_is_stored_and_acknowledged(
    receiver: Receiver, body: bytes, status: str
):
    """A signed body that is deep, absurd, oversized or badly encoded answers 200 and is kept."""
    headers = signed_headers(receiver.secrets[0], body)
    response = post_like_recall(receiver, body, headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] in {status, "duplicate"}
    item = assert_kept(receiver, headers["webhook-id"], body)
    assert ("parse_error" in item) is (status == "stored_unparsed")


def test_lone_surrogate_in_chat_is_shown_replaced_in_the_timeline(receiver: Receiver):
    """A chat message with a lone surrogate lands in the bot's history with U+FFFD in its place."""
    bot = str(uuid.uuid4())
    event = payload("participant_events.chat_message", bot_id=bot)
    event["data"]["data"]["data"]["text"] = "hi \ud83d there"
    assert receiver.deliver(event).status_code == 200
    [item] = receiver.table.history(bot)
    assert item["summary"].endswith("hi \ufffd there")


@pytest.mark.parametrize(
    "bot_id",
    ["bot\x1b[2J", "bot\u202eevil", "bot\x00", "b" * 2100, "😀" * 100, "bot id"],
    ids=["escape", "bidi-override", "nul", "over-2kb", "400-bytes-of-emoji", "space"],
)
def test_bot_id_that_cannot_be_a_key_is_refused_and_kept_raw(receiver: Receiver, bot_id: str):
    """A status for a bot id with control/bidi characters or over 256 bytes makes no bot."""
    event = payload("bot.in_call_recording", bot_id=bot_id)
    body = body_of(event)
    headers = sign_standard(receiver.secrets[0], body)
    response = receiver.post(body, headers)
    assert response.status_code == 200
    assert response.json()["status"] == "stored_unparsed"
    assert "data.bot.id" in response.json()["parse_error"]
    assert receiver.table.state(bot_id[:1000]) is None
    assert receiver.table.history(bot_id[:1000]) == []
    assert_kept(receiver, headers["webhook-id"], body)


# Issue 12, item 9: state never moves backwards, and cannot be frozen


def test_state_does_not_move_back_to_a_year_before_1000(receiver: Receiver):
    """call_ended in 2026 followed by joining_call dated 0999 leaves the bot call_ended."""
    bot = str(uuid.uuid4())
    assert receiver.deliver(payload("bot.call_ended", bot_id=bot)).status_code == 200
    ancient = payload("bot.joining_call", bot_id=bot, updated_at="0999-06-01T00:00:00Z")
    response = receiver.deliver(ancient)
    assert response.status_code == 200
    state = receiver.table.state(bot)
    assert state is not None
    assert (state["status"], state["updated_at"]) == ("call_ended", "2026-11-29T18:45:01.000000Z")


def test_a_status_dated_far_in_the_future_cannot_freeze_the_state(receiver: Receiver):
    """A status dated year 9000 is kept raw but not applied, so later real statuses still land."""
    bot = str(uuid.uuid4())
    future = payload("bot.in_call_recording", bot_id=bot, updated_at="9000-01-01T00:00:00Z")
    response = receiver.deliver(future)
    assert response.json()["status"] == "stored_unparsed"
    assert "ahead" in response.json()["parse_error"]
    assert receiver.deliver(payload("bot.call_ended", bot_id=bot)).status_code == 200
    state = receiver.table.state(bot)
    assert state is not None
    assert state["status"] == "call_ended"


def test_stored_times_have_one_width(receiver: Receiver):
    """Every time the receiver stores for a bot is 27 characters, so text order is time order."""
    bot = str(uuid.uuid4())
    receiver.deliver(payload("bot.joining_call", bot_id=bot, updated_at="2026-11-29T18:03:10Z"))
    state = receiver.table.state(bot)
    assert state is not None
    [event] = receiver.table.history(bot)
    stamps = [state["updated_at"], state["created_at"], event["updated_at"], event["received_at"]]
    assert {len(s) for s in stamps} == {27}
    assert state["gsi1sk"] == f"2026-11-29T18:03:10.000000Z#{bot}"


# Issue 12, item 10: a reused webhook id


def test_reused_webhook_id_with_another_body_changes_nothing(receiver: Receiver):
    """A second body under a stored webhook id is answered 'conflict' and applied nowhere."""
    bot = str(uuid.uuid4())
    webhook_id = new_webhook_id()
    first = body_of(payload("bot.joining_call", bot_id=bot))
    assert receiver.post(first, sign_standard(receiver.secrets[0], first, webhook_id)).json()[
        "status"
    ] == ("stored")
    other = body_of(payload("bot.call_ended", bot_id=bot))
    response = receiver.post(other, sign_standard(receiver.secrets[0], other, webhook_id))
    assert response.status_code == 200
    assert response.json()["status"] == "conflict"
    state = receiver.table.state(bot)
    assert state is not None
    assert state["status"] == "joining_call"
    assert [h["event"] for h in receiver.table.history(bot)] == ["bot.joining_call"]
    assert_kept(receiver, webhook_id, first)


def test_reused_webhook_id_with_the_same_body_is_a_duplicate(receiver: Receiver):
    """The same bytes again (a Svix retry, even signed at another time) answer 'duplicate'."""
    bot = str(uuid.uuid4())
    body = body_of(payload("bot.in_call_recording", bot_id=bot))
    webhook_id = new_webhook_id()
    later = datetime.now(UTC) - timedelta(seconds=30)
    statuses = [
        receiver.post(body, sign_standard(receiver.secrets[0], body, webhook_id, at)).json()[
            "status"
        ]
        for at in (None, later)
    ]
    assert statuses == ["stored", "duplicate"]


# Headers


def _header_cases(secret: str) -> list[tuple[str, list[tuple[bytes, bytes]], bytes, set[int]]]:
    body = body_of(payload("bot.done", bot_id="header-bot"))
    good = {k.encode(): v.encode() for k, v in signed_headers(secret, body).items()}

    def but(**changes: bytes) -> list[tuple[bytes, bytes]]:
        headers = dict(good)
        for name, value in changes.items():
            headers[name.replace("_", "-").encode()] = value
        return list(headers.items())

    unauthorized = {401}
    bad_request = {400, 401, 431}
    return [
        ("id-over-256", but(webhook_id=b"m" * 300), body, unauthorized),
        ("id-with-control", but(webhook_id=b"msg_\x01x"), body, bad_request),
        ("id-with-latin1", but(webhook_id=b"msg_\xe9\xff"), body, unauthorized),
        ("timestamp-arabic-digits", but(webhook_timestamp="١٧٠٠٠".encode()), body, unauthorized),
        ("timestamp-negative", but(webhook_timestamp=b"-1"), body, unauthorized),
        (
            "timestamp-plus",
            but(webhook_timestamp=b"+" + good[b"webhook-timestamp"]),
            body,
            unauthorized,
        ),
        ("timestamp-40-digits", but(webhook_timestamp=b"9" * 40), body, unauthorized),
        (
            "timestamp-float",
            but(webhook_timestamp=good[b"webhook-timestamp"] + b".0"),
            body,
            unauthorized,
        ),
        ("signature-10k-entries", but(webhook_signature=b"v1,AAAA " * 1250), body, bad_request),
        ("signature-not-base64", but(webhook_signature=b"v1,!!!"), body, unauthorized),
        (
            "signature-v1a-only",
            but(webhook_signature=b"v1a," + good[b"webhook-signature"][3:]),
            body,
            unauthorized,
        ),
        ("signature-empty", but(webhook_signature=b""), body, unauthorized),
        (
            "signature-repeated-bad-last",
            [*good.items(), (b"webhook-signature", b"v1,Zm9v")],
            body,
            unauthorized,
        ),
        (
            "forged-with-header-100kb",
            [*but(webhook_signature=b"v1,Zm9v"), (b"x-pad", b"p" * 100_000)],
            body,
            bad_request,
        ),
        ("content-length-garbage", [*good.items(), (b"Content-Length", b"12abc")], body, {400}),
    ]


HEADER_CASE_IDS = [case[0] for case in _header_cases("whsec_" + "A" * 32)]


@pytest.mark.parametrize("case", HEADER_CASE_IDS)
def test_malformed_headers_get_a_4xx_and_store_nothing(receiver: Receiver, case: str):
    """Malformed, oversized or ambiguous signature headers answer 4xx; nothing is stored."""
    cases = {c[0]: c[1:] for c in _header_cases(receiver.secrets[0])}
    headers, body, expected = cases[case]
    before = receiver.table.size()
    status = raw_request(receiver.url, head_of(headers, body), body)
    assert status in expected
    assert receiver.table.size() == before
    assert receiver.table.state("header-bot") is None


# Bounded fuzzing

#: Any code point, surrogates and controls included (hypothesis leaves out Cs by default).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=24)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=10,
)
OFFSETS = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)
TIMES = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=OFFSETS
).map(datetime.isoformat)
#: Where a mutation lands in a recorded payload.
PATHS: list[tuple[str | int, ...]] = [
    ("event",),
    ("data",),
    ("data", "data"),
    ("data", "data", "code"),
    ("data", "data", "sub_code"),
    ("data", "data", "updated_at"),
    ("data", "bot"),
    ("data", "bot", "id"),
    ("data", "bot", "metadata"),
    ("data", "bot", "metadata", "session_id"),
    ("data", "data", "participant"),
    ("data", "data", "participant", "name"),
    ("data", "data", "data"),
    ("data", "data", "data", "text"),
    ("data", "data", "words"),
    ("data", "data", "words", 0, "start_timestamp", "absolute"),
    ("data", "data", "timestamp", "absolute"),
]
RECORDED = [
    "bot.done",
    "bot.fatal",
    "recording.done",
    "transcript.data",
    "participant_events.chat_message",
    "participant_events.join",
    "calendar.update",
]


def _put(event: Any, path: tuple[str | int, ...], value: Any) -> None:
    """Set ``value`` at ``path`` where the path exists down to its parent; else do nothing."""
    node = event
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return
    key = path[-1]
    in_dict = isinstance(node, dict) and isinstance(key, str)
    in_list = isinstance(node, list) and isinstance(key, int) and key < len(node)
    if in_dict or in_list:
        node[path[-1]] = value


@st.composite
def recall_like_bodies(draw: st.DrawFn) -> bytes:
    """A recorded Recall payload with up to three fields replaced by anything at all."""
    event = payload(draw(st.sampled_from(RECORDED)))
    for _ in range(draw(st.integers(0, 3))):
        _put(event, draw(st.sampled_from(PATHS)), draw(JSON_VALUES | TIMES | ANY_TEXT))
    text = json.dumps(event, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")  # raw surrogates make it invalid UTF-8


BODIES = (
    recall_like_bodies()
    | st.binary(max_size=512)
    | st.integers(1, 5000).map(_nested)
    | JSON_VALUES.map(lambda v: json.dumps(v).encode())
)


@settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(body=BODIES)
def test_fuzz_a_signed_body_is_always_stored_and_never_a_5xx(served_receiver: Receiver, body):
    """Whatever a signed body holds, the answer is 200 and the exact bytes are stored once."""
    headers = signed_headers(served_receiver.secrets[0], body)
    response = post_like_recall(served_receiver, body, headers)
    assert response.status_code == 200, response.text
    # "duplicate" only when a retried attempt had already stored it before its 503.
    assert response.json()["status"] in {"stored", "stored_unparsed", "duplicate"}
    assert_kept(served_receiver, headers["webhook-id"], body)


HEADER_BYTES = st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@settings(max_examples=250, deadline=None, database=None)
@given(
    webhook_id=HEADER_BYTES,
    timestamp=HEADER_BYTES | st.integers(-(10**15), 10**15).map(lambda n: str(n).encode()),
    signature=HEADER_BYTES | HEADER_BYTES.map(lambda b: b"v1," + base64.b64encode(b)),
    legacy=st.booleans(),
)
def test_fuzz_unsigned_headers_get_a_4xx(
    served_receiver: Receiver, webhook_id: bytes, timestamp: bytes, signature: bytes, legacy: bool
):
    """Random id, timestamp and signature headers never get past the check, nor a 5xx."""
    prefix = b"svix-" if legacy else b"webhook-"
    body = body_of(payload("bot.done", bot_id="fuzz-header-bot"))
    headers = [
        (prefix + b"id", webhook_id),
        (prefix + b"timestamp", timestamp),
        (prefix + b"signature", signature),
    ]
    status = raw_request(served_receiver.url, head_of(headers, body), body)
    assert status in {400, 401}
    assert served_receiver.table.state("fuzz-header-bot") is None
