"""The delivery-time guard: a bot's URL must resolve to public addresses only."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from functions.minutes.url_guard import UnsafeUrlError, check_public


def answers(*ips: str) -> Any:
    def resolve(host: str, port: int) -> list[Any]:
        del host
        family = socket.AF_INET6
        return [(family if ":" in ip else socket.AF_INET, 1, 6, "", (ip, port)) for ip in ips]

    return resolve


def test_a_public_address_passes() -> None:
    check_public("https://hooks.example.com/m", answers("93.184.216.34"))


@pytest.mark.parametrize(
    "ips",
    [
        ("127.0.0.1",),
        ("169.254.169.254",),  # the instance metadata service
        ("10.1.2.3",),
        ("93.184.216.34", "192.168.0.1"),  # one private answer is enough to refuse
        ("fe80::1%eth0",),
        ("::1",),
        ("100.64.0.1",),  # shared address space
    ],
)
def test_a_name_resolving_to_a_private_address_is_refused(ips: tuple[str, ...]) -> None:
    with pytest.raises(UnsafeUrlError):
        check_public("https://rebind.example.com/m", answers(*ips))


def test_loopback_literal_is_refused_with_the_real_resolver() -> None:
    with pytest.raises(UnsafeUrlError):
        check_public("https://127.0.0.1:8443/m")


def test_http_and_unresolvable_hosts_are_refused() -> None:
    with pytest.raises(UnsafeUrlError):
        check_public("http://hooks.example.com/m", answers("93.184.216.34"))

    def fails(host: str, port: int) -> list[Any]:
        raise socket.gaierror("no such name")

    with pytest.raises(UnsafeUrlError):
        check_public("https://nowhere.invalid/m", fails)
