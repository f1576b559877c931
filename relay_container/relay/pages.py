"""Plain HTTP answers: ``/healthz``, the agent page at ``/`` and its files under ``/static/``.

Serves whatever is in the static folder (owned by the agent page), read per request so
a developer's edits show at once, with an explicit content type, ``nosniff``, and no way
out of the folder (``..``, encoded slashes, backslashes, NULs and symlinks that leave it
are all 404). Anything else is 404; WebSocket upgrades are not handled here.
"""

from __future__ import annotations

import email.utils
import http
from pathlib import Path, PurePosixPath
from typing import Final
from urllib.parse import unquote, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Response

HEALTH_PATH: Final = "/healthz"
STATIC_PREFIX: Final = "/static/"
MAX_FILE_BYTES: Final = 8 * 2**20

CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".wasm": "application/wasm",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}


def plain_response(status: int, text: str, *, head: bool = False) -> Response:
    """A short text/plain response that closes the connection."""
    body = text.encode()
    return _response(status, "text/plain; charset=utf-8", b"" if head else body, len(body))


def page_response(target: str, method: str, static_dir: Path, *, draining: bool) -> Response:
    """Answer a plain HTTP request for ``target`` (path and query)."""
    if method not in ("GET", "HEAD"):
        response = plain_response(405, "method not allowed\n")
        response.headers["Allow"] = "GET, HEAD"
        return response
    head = method == "HEAD"
    path = urlsplit(target).path
    if path == HEALTH_PATH:
        return (
            plain_response(503, "draining\n", head=head)
            if draining
            else plain_response(200, "ok\n", head=head)
        )
    if path in ("/", "/index.html"):
        return _file_response(static_dir, "index.html", head=head)
    if path.startswith(STATIC_PREFIX):
        return _file_response(static_dir, path[len(STATIC_PREFIX) :], head=head)
    return plain_response(404, "not found\n", head=head)


def resolve_static(static_dir: Path, relative: str) -> Path | None:
    """The file ``relative`` (URL-encoded) names inside ``static_dir``, or None if it is
    not a regular file strictly inside the folder."""
    decoded = unquote(relative, errors="strict") if "%" in relative else relative
    if not decoded or "\\" in decoded or "\x00" in decoded:
        return None
    parts = PurePosixPath(decoded).parts
    if not parts or decoded.startswith("/") or any(p in ("..", ".") for p in parts):
        return None
    try:
        root = static_dir.resolve(strict=True)
        candidate = root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


def _file_response(static_dir: Path, relative: str, *, head: bool) -> Response:
    try:
        path = resolve_static(static_dir, relative)
    except UnicodeDecodeError:
        path = None
    if path is None:
        return plain_response(404, "not found\n", head=head)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return plain_response(404, "not found\n", head=head)
        body = b"" if head else path.read_bytes()
    except OSError:
        return plain_response(404, "not found\n", head=head)
    content_type = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    response = _response(200, content_type, body, size)
    response.headers["Cache-Control"] = "no-cache"
    return response


def _response(status: int, content_type: str, body: bytes, length: int) -> Response:
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(length)),
            ("Content-Type", content_type),
            ("X-Content-Type-Options", "nosniff"),
            # A page opened with ?token= (the old form) must not hand it on as a Referer.
            ("Referrer-Policy", "no-referrer"),
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, body)
