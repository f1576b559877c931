"""A bot's minutes URL: https, a public host, no credentials, bounded."""

from __future__ import annotations

import pytest

from storage.delivery_url import MAX_MINUTES_URL_CHARS, minutes_url_problem


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/minutes",
        "https://hooks.example.com:8443/m?token=abc",
        "https://93.184.216.34/m",
    ],
)
def test_public_https_urls_are_accepted(url: str) -> None:
    assert minutes_url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://hooks.example.com/m", "https"),
        ("ftp://hooks.example.com/m", "https"),
        ("https://user:pass@hooks.example.com/m", "credentials"),
        ("https://token@hooks.example.com/m", "credentials"),
        ("https://hooks.example.com/m#frag", "fragment"),
        ("https://127.0.0.1/m", "public host"),
        ("https://169.254.169.254/latest/meta-data", "public host"),
        ("https://10.0.0.5/m", "public host"),
        ("https://[::1]/m", "public host"),
        ("https://localhost/m", "public host"),
        ("https://x.localhost/m", "public host"),
        ("https:///m", "host"),
        ("https://hooks.example.com:99999/m", "valid URL"),
        ("https://hooks.example.com/a b", "printable"),
        ("https://hooks.example.com/\u00e9", "printable"),
        ("https://hooks.example.com/\x00", "printable"),
        ("", "characters"),
        ("https://hooks.example.com/" + "a" * MAX_MINUTES_URL_CHARS, "characters"),
    ],
)
def test_unsafe_or_malformed_urls_are_refused(url: str, problem: str) -> None:
    found = minutes_url_problem(url)
    assert found is not None
    assert problem in found
