"""Who is calling: the relay token from a handshake request, verified into Claims.

A token is accepted from ``Authorization: Bearer <token>`` (the openai SDKs), the
subprotocol ``openai-insecure-api-key.<token>`` (browsers, which cannot set headers) or
``?token=`` (simple pages). Verification is ``relay.tokens.verify``; this module only finds
the token and never logs or echoes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.headers import parse_subprotocol
from websockets.typing import Subprotocol

from relay import tokens
from relay.errors import AuthError

KEY_SUBPROTOCOL_PREFIX: Final = "openai-insecure-api-key."


def offered_subprotocols(headers: Headers) -> list[str]:
    """Every subprotocol the client offered, in order (empty if the header is malformed)."""
    offered: list[str] = []
    for value in headers.get_all("Sec-WebSocket-Protocol"):
        try:
            offered.extend(parse_subprotocol(value))
        except ValueError:
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


def find_token(path: str, headers: Headers) -> str | None:
    """The relay token presented by a handshake request, or None."""
    authorization = headers.get_all("Authorization")
    if authorization:
        scheme, _, value = authorization[0].partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    for name in offered_subprotocols(headers):
        if name.startswith(KEY_SUBPROTOCOL_PREFIX):
            return name[len(KEY_SUBPROTOCOL_PREFIX) :]
    query = urlsplit(path).query
    if query:
        values = parse_qs(query, max_num_fields=20).get("token")
        if values:
            return values[0]
    return None


def authenticate(path: str, headers: Headers, secret: str, *, now: float) -> tokens.Claims:
    """Verify the request's relay token.

    Raises:
        AuthError: no token, or a token that does not verify (the message says why,
            never what the token was).
    """
    token = find_token(path, headers)
    if token is None:
        raise AuthError(
            "missing relay token: send Authorization: Bearer <token>, the subprotocol "
            "openai-insecure-api-key.<token>, or ?token=<token>"
        )
    try:
        return tokens.verify(token, secret, now=now)
    except tokens.TokenError as exc:
        raise AuthError(f"relay token refused: {exc}") from None
