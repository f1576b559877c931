"""Who is calling: the relay token from a handshake request, verified into Claims.

A token is accepted from ``Authorization: Bearer <token>`` (the openai SDKs) or the
subprotocol ``openai-insecure-api-key.<token>`` (browsers, which cannot set headers), and
never from the query string: a URL's query lands in CloudFront and load-balancer access
logs, so ``?token=`` is refused with 400 whether or not another token came with it (the
agent page carries its token in the URL fragment, ``#token=``, which no server sees).
Verification is ``relay.tokens.verify``; this module only finds the token and never logs
or echoes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from websockets.datastructures import Headers
from websockets.exceptions import InvalidHeader
from websockets.headers import parse_subprotocol
from websockets.typing import Subprotocol

from relay import tokens
from relay.errors import AuthError, BadRequestError

KEY_SUBPROTOCOL_PREFIX: Final = "openai-insecure-api-key."
#: What a client without a usable token is told (no shape of a real token in it).
TOKEN_HINT: Final = (
    "send Authorization: Bearer <relay token>, or offer the subprotocol "
    "openai-insecure-api-key.<relay token>"
)


def offered_subprotocols(headers: Headers) -> list[str]:
    """Every subprotocol the client offered, in order (empty if the header is malformed)."""
    offered: list[str] = []
    for value in headers.get_all("Sec-WebSocket-Protocol"):
        try:
            offered.extend(parse_subprotocol(value))
        except (ValueError, InvalidHeader):
            return []
    return offered


def select_subprotocol(offered: Sequence[str]) -> Subprotocol | None:
    """The subprotocol to answer with: ``realtime`` if offered, else the first one offered
    that is not a credential, else none (the openai Python SDK offers none).

    Browsers fail the handshake when they offered subprotocols and the server picks none,
    so a page must offer ``realtime`` (as OpenAI's own browser client does) next to the key.
    """
    if "realtime" in offered:
        return Subprotocol("realtime")
    for name in offered:
        if not name.startswith(KEY_SUBPROTOCOL_PREFIX):
            return Subprotocol(name)
    return None


def find_token(headers: Headers) -> str | None:
    """The relay token presented by a handshake request's headers, or None."""
    authorization = headers.get_all("Authorization")
    if authorization:
        scheme, _, value = authorization[0].partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    for name in offered_subprotocols(headers):
        if name.startswith(KEY_SUBPROTOCOL_PREFIX):
            return name[len(KEY_SUBPROTOCOL_PREFIX) :]
    return None


def authenticate(
    query: Mapping[str, Sequence[str]], headers: Headers, secret: str, *, now: float
) -> tokens.Claims:
    """Verify the request's relay token.

    Args:
        query: the request's parsed query string (``server.parse_query``).

    Raises:
        BadRequestError: a token in the query string (400; it is not even looked at).
        AuthError: no token, or a token that does not verify (the message says why,
            never what the token was).
    """
    if "token" in query:
        raise BadRequestError(
            "relay tokens are refused in the query string, which access logs keep: " + TOKEN_HINT
        )
    token = find_token(headers)
    if token is None:
        raise AuthError(f"missing relay token: {TOKEN_HINT}")
    try:
        return tokens.verify(token, secret, now=now)
    except tokens.TokenError as exc:
        raise AuthError(f"relay token refused: {exc}") from None
