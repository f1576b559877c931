"""What a bot's own minutes endpoint may be: the ``minutes_url`` stored on its session.

``voicebot bot create --minutes-url`` and the control API's ``minutes_url`` check a URL
with :func:`minutes_url_problem` before storing it (``storage.minutes.SessionBot``):
``https`` only, a host name, no user name or password in it (a stored URL is shown by
``bot show`` and must not carry credentials), no fragment, at most
:data:`MAX_MINUTES_URL_CHARS` characters, nothing but printable ASCII. A token in the
query is allowed (many endpoints authenticate that way) and never logged.

Where the URL *resolves* to is checked again by the minutes function at delivery time
(``functions.minutes.url_guard``: no private, loopback or link-local address), because a
name can point anywhere later. It refuses to resolve names itself: pure, no I/O.
"""

from __future__ import annotations

import ipaddress
from typing import Final
from urllib.parse import urlsplit

MAX_MINUTES_URL_CHARS: Final = 2048


def minutes_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a minutes endpoint (``None``: nothing)."""
    if not url or len(url) > MAX_MINUTES_URL_CHARS:
        return f"1-{MAX_MINUTES_URL_CHARS} characters"
    if not url.isascii() or not url.isprintable() or any(c.isspace() for c in url):
        return "printable ASCII without spaces (percent-encode the rest)"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "not a valid URL"
    del port  # parsed only to refuse a malformed one
    if parts.scheme != "https":
        return "must be an https:// URL"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "must not carry credentials (user:password@); put a token in the query"
    if parts.fragment:
        return "must not have a #fragment"
    host = parts.hostname or ""
    if not host:
        return "must name a host"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost" or host.endswith(".localhost"):
            return "must be a public host"
        return None
    if not address.is_global:
        return "must be a public host"
    return None
