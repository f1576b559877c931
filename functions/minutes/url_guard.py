"""Refuse to deliver to a private address: the server-side request forgery guard.

A bot's own minutes endpoint (``minutes_url``, set through the control API by whoever
may create bots) is a URL the minutes function will POST to from inside AWS. Without a
guard it could name the instance metadata service (169.254.169.254), a VPC address or
loopback, and the function would send the meeting's minutes there, or probe it.
:func:`check_public` resolves the host and refuses the URL unless it is ``https`` and
every address it resolves to is global (``ipaddress``'s ``is_global``: not private,
loopback, link-local, shared, reserved or multicast).

Limit: the check resolves the name, then httpx resolves it again to connect; a name
whose answer changes in between (DNS rebinding) could slip through. The function runs
outside any VPC, so what remains reachable that way is the public internet and the
Lambda's own loopback (where nothing listens).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

Resolver = Callable[[str, int], Sequence[Any]]
#: getaddrinfo's answers are (family, type, proto, canonname, sockaddr); sockaddr[0] is the IP.
_SOCKADDR: Final = 4


class UnsafeUrlError(ValueError):
    """The URL is not https, or names (or resolves to) a non-public address."""


def _resolve(host: str, port: int) -> Sequence[Any]:
    return socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)


def check_public(url: str, resolve: Resolver = _resolve) -> None:
    """Raise :class:`UnsafeUrlError` unless ``url`` is https to public addresses only."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise UnsafeUrlError("a bot's minutes URL must be https:// with a host")
    try:
        answers = resolve(parts.hostname, parts.port or 443)
    except OSError:
        raise UnsafeUrlError("the minutes URL's host does not resolve") from None
    if not answers:
        raise UnsafeUrlError("the minutes URL's host does not resolve")
    for answer in answers:
        address = ipaddress.ip_address(str(answer[_SOCKADDR][0]).split("%", 1)[0])
        if not address.is_global:
            raise UnsafeUrlError("the minutes URL's host is not a public address")
