"""Relay tokens: the one definition of their format, minting and verification.

A relay token is an HS256 JWT (PyJWT) signed with ``RELAY_TOKEN_SECRET`` carrying ``sub``
(the session or bot it is bound to), ``iat``, ``exp``, ``jti``, and fixed ``iss``/``aud``
so a token minted for something else with the same secret is refused. Pure functions: the
clock is an argument. The CLI imports this module; nothing else defines the format.

``python -m relay.tokens mint --sub ID --ttl SECONDS`` prints one (secret from
``RELAY_TOKEN_SECRET``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import jwt

ALGORITHM: Final = "HS256"
ISSUER: Final = "recall-voice-agent"
AUDIENCE: Final = "relay"
#: Audience of the tokens one relay task presents to another's internal listener
#: (relay/forward_wire.py): never accepted by the public endpoint, nor the reverse.
INTERNAL_AUDIENCE: Final = "relay-internal"
#: HMAC keys shorter than the hash output weaken HS256 (RFC 7518 §3.2).
MIN_SECRET_BYTES: Final = 32
MAX_TOKEN_CHARS: Final = 4096
MAX_SUBJECT_CHARS: Final = 200
DEFAULT_TTL_SECONDS: Final = 3600
#: Clock skew tolerated between the minting machine and the relay.
LEEWAY_SECONDS: Final = 30


class TokenError(Exception):
    """A token that must be refused; ``str(error)`` is safe to show (never the token)."""


@dataclass(frozen=True, slots=True)
class Claims:
    """What the relay trusts after verification."""

    sub: str
    jti: str
    exp: int
    iat: int


def check_secret(secret: str) -> None:
    """Refuse a signing secret too short for HS256."""
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise TokenError(f"the token secret must be at least {MIN_SECRET_BYTES} bytes")


def mint(
    secret: str,
    sub: str,
    ttl_seconds: int,
    *,
    now: float | None = None,
    audience: str = AUDIENCE,
) -> str:
    """Return a signed token for ``sub`` valid for ``ttl_seconds`` from ``now``."""
    check_secret(secret)
    if not sub or len(sub) > MAX_SUBJECT_CHARS or not sub.isprintable():
        raise TokenError(f"sub must be 1-{MAX_SUBJECT_CHARS} printable characters")
    if ttl_seconds <= 0:
        raise TokenError("ttl must be positive")
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": sub,
        "iat": issued,
        "exp": issued + ttl_seconds,
        "jti": uuid.uuid4().hex,
        "iss": ISSUER,
        "aud": audience,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(
    token: str, secret: str, *, now: float | None = None, audience: str = AUDIENCE
) -> Claims:
    """Verify signature, algorithm, issuer, audience and lifetime; return the claims.

    Raises:
        TokenError: with a short reason that names no secret and echoes no token.
    """
    if not token:
        raise TokenError("missing token")
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenError("token too long")
    options: jwt.types.Options = {
        "require": ["sub", "exp", "iat", "jti", "iss", "aud"],
        "verify_exp": False,  # checked below against the injected clock
        "verify_iat": False,
    }
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=ISSUER,
            options=options,
        )
    except jwt.InvalidSignatureError:
        raise TokenError("token signature is invalid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(f"token lacks the {exc.claim} claim") from None
    except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
        raise TokenError("token was not issued for this relay") from None
    except jwt.InvalidAlgorithmError:
        raise TokenError("token algorithm is not allowed") from None
    except jwt.InvalidTokenError:
        raise TokenError("token is malformed") from None
    sub, jti, exp, iat = claims["sub"], claims["jti"], claims["exp"], claims["iat"]
    if not (isinstance(sub, str) and sub and len(sub) <= MAX_SUBJECT_CHARS):
        raise TokenError("token subject is invalid")
    if not (isinstance(jti, str) and jti):
        raise TokenError("token id is invalid")
    if not (isinstance(exp, int) and isinstance(iat, int)):
        raise TokenError("token times are invalid")
    current = time.time() if now is None else now
    if exp + LEEWAY_SECONDS <= current:
        raise TokenError("token has expired")
    if iat - LEEWAY_SECONDS > current:
        raise TokenError("token is not valid yet")
    return Claims(sub=sub, jti=jti, exp=exp, iat=iat)


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """``python -m relay.tokens mint --sub ID --ttl SECONDS``: print a token on stdout."""
    parser = argparse.ArgumentParser(prog="python -m relay.tokens", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    mint_cmd = commands.add_parser("mint", help="print a relay token")
    mint_cmd.add_argument("--sub", required=True, help="session or bot id the token is bound to")
    mint_cmd.add_argument("--ttl", type=int, default=DEFAULT_TTL_SECONDS, help="lifetime, s")
    args = parser.parse_args(argv)
    secret = environ.get("RELAY_TOKEN_SECRET", "")
    if not secret:
        print("error: set RELAY_TOKEN_SECRET to the relay's token secret", file=sys.stderr)
        return 2
    try:
        print(mint(secret, args.sub, args.ttl))
    except TokenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
