"""Relay tokens: what is accepted and every way a token is refused (pure, no sockets)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import jwt
import pytest

from relay import tokens

SECRET = "s" * 40
NOW = 1_800_000_000.0


def _forge(claims: dict[str, object], secret: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg)


def _claims(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "sub": "session-1",
        "iat": int(NOW),
        "exp": int(NOW) + 60,
        "jti": "j1",
        "iss": tokens.ISSUER,
        "aud": tokens.AUDIENCE,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_minted_token_verifies_with_its_claims() -> None:
    """A token minted for a session verifies and carries that session as its subject."""
    token = tokens.mint(SECRET, "session-1", 120, now=NOW)
    claims = tokens.verify(token, SECRET, now=NOW + 1)
    assert claims.sub == "session-1"
    assert claims.exp == int(NOW) + 120
    assert len(claims.jti) == 32


def test_each_token_has_its_own_id() -> None:
    """Two tokens for the same subject differ in jti, so logs can tell them apart."""
    first = tokens.verify(tokens.mint(SECRET, "s", 60, now=NOW), SECRET, now=NOW)
    second = tokens.verify(tokens.mint(SECRET, "s", 60, now=NOW), SECRET, now=NOW)
    assert first.jti != second.jti


def _none_alg_token() -> str:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(_claims()).encode()).rstrip(b"=")
    return f"{header.decode()}.{body.decode()}."


HOSTILE = [
    ("", "missing token"),
    ("x" * 5000, "token too long"),
    ("not-a-jwt", "token is malformed"),
    (_forge(_claims(), secret="t" * 40), "token signature is invalid"),
    (_forge(_claims(exp=int(NOW) - 3600)), "token has expired"),
    (_forge(_claims(iat=int(NOW) + 3600, exp=int(NOW) + 7200)), "token is not valid yet"),
    (_forge(_claims(aud="something-else")), "token was not issued for this relay"),
    (_forge(_claims(iss="someone-else")), "token was not issued for this relay"),
    (_forge(_claims(sub=None)), "token lacks the sub claim"),
    (_forge(_claims(jti=None)), "token lacks the jti claim"),
    (_forge(_claims(exp=None)), "token lacks the exp claim"),
    (_forge(_claims(sub="")), "token subject is invalid"),
    (_forge(_claims(exp="soon")), "token times are invalid"),
    (_forge(_claims(), secret="s" * 64, alg="HS512"), "token algorithm is not allowed"),
    (_none_alg_token(), "token algorithm is not allowed"),
]


@pytest.mark.parametrize(
    ("token", "reason"),
    HOSTILE,
    ids=[
        "empty",
        "oversized",
        "garbage",
        "foreign-secret",
        "expired",
        "issued-in-future",
        "wrong-audience",
        "wrong-issuer",
        "no-sub",
        "no-jti",
        "no-exp",
        "empty-sub",
        "non-numeric-exp",
        "other-hmac-alg",
        "alg-none",
    ],
)
def test_refuses_hostile_tokens_with_a_safe_reason(token: str, reason: str) -> None:
    """Every bad token is refused with a short reason that never echoes the token."""
    with pytest.raises(tokens.TokenError) as caught:
        tokens.verify(token, SECRET, now=NOW)
    assert str(caught.value) == reason
    if token:
        assert token not in str(caught.value)


def test_clock_skew_within_leeway_is_tolerated() -> None:
    """A token that expired a few seconds ago (clock skew) is still accepted."""
    token = tokens.mint(SECRET, "s", 10, now=NOW)
    assert tokens.verify(token, SECRET, now=NOW + 10 + tokens.LEEWAY_SECONDS - 1).sub == "s"


@pytest.mark.parametrize(
    ("secret", "sub", "ttl"),
    [("short", "s", 60), (SECRET, "", 60), (SECRET, "x" * 201, 60), (SECRET, "s", 0)],
    ids=["short-secret", "empty-sub", "long-sub", "zero-ttl"],
)
def test_mint_refuses_bad_arguments(secret: str, sub: str, ttl: int) -> None:
    """Minting refuses weak secrets, empty or huge subjects and non-positive lifetimes."""
    with pytest.raises(tokens.TokenError):
        tokens.mint(secret, sub, ttl)


def test_command_line_mints_a_verifiable_token() -> None:
    """`python -m relay.tokens mint` prints a token the relay accepts."""
    out = subprocess.run(
        [sys.executable, "-m", "relay.tokens", "mint", "--sub", "bot-7", "--ttl", "90"],
        env={"RELAY_TOKEN_SECRET": SECRET, "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert tokens.verify(out.stdout.strip(), SECRET).sub == "bot-7"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["mint", "--sub", "s"], {}, "set RELAY_TOKEN_SECRET"),
        (["mint", "--sub", "s"], {"RELAY_TOKEN_SECRET": "short"}, "at least 32 bytes"),
        (["mint", "--sub", "s", "--ttl", "-5"], {"RELAY_TOKEN_SECRET": SECRET}, "ttl"),
        (["mint", "--ttl", "5"], {"RELAY_TOKEN_SECRET": SECRET}, "--sub"),
    ],
    ids=["no-secret", "weak-secret", "negative-ttl", "no-sub"],
)
def test_command_line_errors_are_one_line(args: list[str], env: dict[str, str], message: str):
    """Bad arguments to the mint command exit non-zero with a clear message, no traceback."""
    out = subprocess.run(
        [sys.executable, "-m", "relay.tokens", *args],
        env={**env, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
