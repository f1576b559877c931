"""The address a relay task advertises for its internal listener."""

from __future__ import annotations

from typing import Any

import pytest

from relay.task_address import advertised_host, container_ipv4

#: The shape of ``$ECS_CONTAINER_METADATA_URI_V4`` on Fargate (docs/design/meeting-routing.md).
FARGATE_CONTAINER = {
    "Name": "relay",
    "Networks": [
        {
            "NetworkMode": "awsvpc",
            "IPv4Addresses": ["10.0.1.57"],
            "AttachmentIndex": 0,
            "IPv4SubnetCIDRBlock": "10.0.0.0/24",
        }
    ],
}


def test_reads_the_tasks_private_address_from_the_container_metadata() -> None:
    """The task's own private IPv4 is what other tasks dial."""
    assert container_ipv4(FARGATE_CONTAINER) == "10.0.1.57"


@pytest.mark.parametrize(
    "document",
    [
        None,
        [],
        {},
        {"Networks": "10.0.0.1"},
        {"Networks": [{"IPv4Addresses": ["not-an-ip", 7]}]},
        {"Networks": [{"IPv4Addresses": ["8.8.8.8"]}]},
        {"Networks": [{"IPv4Addresses": ["127.0.0.1"]}]},
        {"Networks": ["x"]},
    ],
    ids=["null", "list", "empty", "networks-text", "garbage", "public", "loopback", "bad-net"],
)
def test_no_usable_private_address_is_none(document: Any) -> None:
    """Anything but a private, non-loopback IPv4 is not an address to advertise."""
    assert container_ipv4(document) is None


@pytest.mark.parametrize(
    ("bind", "expected"), [("0.0.0.0", "127.0.0.1"), ("::", "127.0.0.1"), ("10.1.2.3", "10.1.2.3")]
)
async def test_local_runs_advertise_the_bound_host(bind: str, expected: str) -> None:
    """Without ECS metadata the listener's own host is used; a wildcard means loopback."""
    assert await advertised_host(bind, None, 1.0) == expected
