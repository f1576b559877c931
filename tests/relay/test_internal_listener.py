"""The internal listener admits only other relay tasks and only well-formed forwards."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from relay import forward_wire, tokens
from relay.forward_wire import Answer
from relay.internal_listener import InternalListener
from relay.owner_link import FORWARD_PATH
from tests.conftest import TIMEOUT
from tests.relay.conftest import SECRET, SENSITIVE, mint

MAX_EVENT = 4096


class Taken:
    """Local delivery stand-in: session ``live`` takes events."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bytes]] = []

    def __call__(self, session_id: str, payload: bytes) -> bool:
        if session_id != "live":
            return False
        self.events.append((session_id, payload))
        return True


@pytest.fixture
def taken() -> Taken:
    return Taken()


@pytest.fixture
async def listener(taken: Taken) -> AsyncIterator[InternalListener]:
    listener = InternalListener(
        "127.0.0.1", 0, SECRET, taken, max_event_bytes=MAX_EVENT, close_timeout=1.0
    )
    await listener.start()
    try:
        yield listener
    finally:
        await listener.aclose()


def url(listener: InternalListener, path: str = FORWARD_PATH) -> str:
    return f"ws://127.0.0.1:{listener.port}{path}"


def link_token(secret: str = SECRET, now: float | None = None, **kw: str) -> str:
    token = tokens.mint(
        secret,
        kw.get("sub", forward_wire.LINK_SUBJECT),
        forward_wire.LINK_TOKEN_SECONDS,
        now=time.time() if now is None else now,
        audience=kw.get("audience", tokens.INTERNAL_AUDIENCE),
    )
    SENSITIVE.add(token)
    return token


def open_link(listener: InternalListener, token: str | None, path: str = FORWARD_PATH):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return connect(
        url(listener, path), additional_headers=headers, open_timeout=TIMEOUT, compression=None
    )


async def test_forwards_are_answered_in_order(listener: InternalListener, taken: Taken) -> None:
    """A live session takes its events; a subject with no session here is answered NOT_HERE."""
    async with open_link(listener, link_token()) as ws:
        for seq, sid in enumerate(["live", "gone", "live"], start=1):
            await ws.send(forward_wire.encode_forward(seq, sid, b'{"n":%d}' % seq))
        answers = [forward_wire.decode_answer(await ws.recv()) for _ in range(3)]
    assert answers == [(1, Answer.TAKEN), (2, Answer.NOT_HERE), (3, Answer.TAKEN)]
    assert taken.events == [("live", b'{"n":1}'), ("live", b'{"n":3}')]


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "not-a-jwt",
        link_token(secret="another-secret-" + "y" * 30),
        link_token(now=time.time() - 3600),
        link_token(audience=tokens.AUDIENCE),  # a page's relay token, same secret
        "x" * (tokens.MAX_TOKEN_CHARS + 1),
    ],
    ids=["missing", "empty", "malformed", "forged", "expired", "page-token", "oversized"],
)
async def test_refuses_links_without_a_valid_link_token(
    listener: InternalListener, taken: Taken, token: str | None
) -> None:
    """The handshake is refused with 401 unless a fresh internal link token comes with it."""
    with pytest.raises(InvalidStatus) as refused:
        async with open_link(listener, token):
            pass
    assert refused.value.response.status_code == 401
    assert listener.refused_handshakes == 1
    assert taken.events == []


async def test_a_page_token_is_refused_with_the_real_minter(listener: InternalListener) -> None:
    """The token the CLI mints for a page cannot open an internal link."""
    with pytest.raises(InvalidStatus) as refused:
        async with open_link(listener, mint("live")):
            pass
    assert refused.value.response.status_code == 401


async def test_a_link_token_is_refused_by_the_public_verifier() -> None:
    """A link token cannot be used as a page's relay token."""
    with pytest.raises(tokens.TokenError):
        tokens.verify(link_token(), SECRET)


async def test_other_paths_are_not_found(listener: InternalListener) -> None:
    """Only the forward path exists, even with a valid token."""
    with pytest.raises(InvalidStatus) as refused:
        async with open_link(listener, link_token(), path="/v1/realtime"):
            pass
    assert refused.value.response.status_code == 404


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (forward_wire.encode_forward(1, "live", b"x" * (MAX_EVENT + 1000)), 1009),
        ("text", 1008),
        (b"F", 1008),
        (b"Z" + bytes(20), 1008),
        (forward_wire.encode_answer(1, Answer.TAKEN), 1008),
        (b"F" + bytes(8) + b"\x00\x10" + b"short", 1008),
        (b"F" + bytes(8) + b"\x00\x03" + b"a b" + b"{}", 1008),
        (b"F" + bytes(8) + b"\x00\x02" + b"\xff\xfe" + b"{}", 1008),
    ],
    ids=[
        "oversized",
        "text",
        "truncated-head",
        "unknown-kind",
        "answer-sent-to-owner",
        "truncated-id",
        "id-with-space",
        "id-not-utf8",
    ],
)
async def test_malformed_or_oversized_frames_close_the_link(
    listener: InternalListener, taken: Taken, frame: bytes | str, code: int
) -> None:
    """A bad frame closes the link (1009 too big, 1008 malformed); nothing is delivered."""
    async with open_link(listener, link_token()) as ws:
        await ws.send(frame)
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert ws.close_code == code
    assert taken.events == []


async def test_closing_the_listener_closes_links_with_1001(listener: InternalListener) -> None:
    """When a relay stops, its links end with 1001 (senders look the owner up again)."""
    async with open_link(listener, link_token()) as ws:
        await listener.aclose()
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 1001
