"""The address other relay tasks reach this process's internal listener at.

On ECS (Fargate, ``awsvpc``) it is the task's private IPv4 address, read once at start
from the container metadata endpoint v4 (``$ECS_CONTAINER_METADATA_URI_V4``: the
container's document carries ``Networks[].IPv4Addresses[]``; docs/aws.md). Locally it is
the listener's own host, or 127.0.0.1 when that is a wildcard.

:func:`container_ipv4` is the pure part (a parsed document in, an address out).
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from relay.leaving import get_metadata


def container_ipv4(document: Any) -> str | None:
    """The first private IPv4 address in a container metadata document, if any."""
    if not isinstance(document, dict):
        return None
    networks = document.get("Networks")
    if not isinstance(networks, list):
        return None
    for network in networks:
        addresses = network.get("IPv4Addresses") if isinstance(network, dict) else None
        for address in addresses if isinstance(addresses, list) else []:
            if not isinstance(address, str):
                continue
            try:
                parsed = ipaddress.IPv4Address(address)
            except ValueError:
                continue
            if parsed.is_private and not parsed.is_loopback:
                return str(parsed)
    return None


async def advertised_host(
    bind_host: str,
    metadata_uri: str | None,
    timeout: float,  # noqa: ASYNC109 - the metadata request's deadline
) -> str:
    """The host part of this process's internal address.

    Raises:
        ValueError: on ECS, when the metadata names no private IPv4 address.
        OSError, TimeoutError: the metadata endpoint could not be read.
    """
    if metadata_uri:
        document = json.loads(await get_metadata(metadata_uri.rstrip("/"), timeout))
        address = container_ipv4(document)
        if address is None:
            raise ValueError("the container metadata names no private IPv4 address")
        return address
    return "127.0.0.1" if bind_host in ("0.0.0.0", "::", "") else bind_host
