"""Plain HTTP on the relay's port: health, the agent page and its files, nothing outside them."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from relay.server import Relay
from tests.conftest import TIMEOUT
from tests.relay.conftest import FakeUpstream, StartRelay
from tests.relay.test_drain import http_get


async def raw_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of GET ``path``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: relay\r\n\r\n".encode())
        async with asyncio.timeout(TIMEOUT):
            response = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.fixture
async def site(tmp_path: Path, start_relay: StartRelay, fake_upstream: FakeUpstream) -> Relay:
    """A relay serving a small static folder, with a secret file next to it."""
    static = tmp_path / "static"
    (static / "js").mkdir(parents=True)
    (static / "index.html").write_text("<!doctype html><title>agent</title>")
    (static / "js" / "app.js").write_text("console.log(1)")
    (static / "tile.css").write_text("body{}")
    (static / "blob.bin").write_bytes(b"\x00\x01")
    (tmp_path / "secret.txt").write_text("do not serve")
    (static / "link.txt").symlink_to(tmp_path / "secret.txt")
    return await start_relay(fake_upstream.url, static_dir=static)


async def test_health_is_200_ok(site: Relay) -> None:
    """The load balancer's health check gets 200 ok while serving."""
    assert await http_get(site.port, "/healthz") == (200, b"ok\n")


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("/", "text/html; charset=utf-8", b"<!doctype html><title>agent</title>"),
        ("/static/js/app.js?v=3", "text/javascript; charset=utf-8", b"console.log(1)"),
        ("/static/tile.css", "text/css; charset=utf-8", b"body{}"),
        ("/static/blob.bin", "application/octet-stream", b"\x00\x01"),
    ],
    ids=["index", "script", "stylesheet", "unknown-type"],
)
async def test_static_files_are_served_with_their_type(
    site: Relay, path: str, content_type: str, body: bytes
) -> None:
    """The agent page and its assets come with an explicit type, nosniff and no referrer."""
    status, headers, got = await raw_get(site.port, path)
    assert status == 200
    assert headers["content-type"] == content_type
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert got == body


@pytest.mark.parametrize(
    "path",
    [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/js/..%2f..%2fsecret.txt",
        "/static/%2fetc%2fpasswd",
        "/static//etc/passwd",
        "/static/..\\secret.txt",
        "/static/link.txt",
        "/static/%00",
        "/static/%ff",
        "/static/",
        "/static/js",
        "/nope",
        "/static/missing.js",
    ],
    ids=[
        "dotdot",
        "encoded-dotdot",
        "encoded-slash",
        "nested-escape",
        "encoded-absolute",
        "absolute",
        "backslash",
        "symlink-out",
        "nul",
        "bad-utf8",
        "folder",
        "subfolder",
        "unknown-path",
        "missing",
    ],
)
async def test_nothing_outside_the_static_folder_is_served(site: Relay, path: str) -> None:
    """Traversal attempts, symlinks out and folders are plain 404s."""
    status, _, body = await raw_get(site.port, path)
    assert status == 404
    assert b"do not serve" not in body


async def test_the_real_agent_page_is_served(start_relay: StartRelay, fake_upstream) -> None:
    """GET / answers with the agent page from relay/static."""
    relay = await start_relay(fake_upstream.url)
    status, headers, body = await raw_get(relay.port, "/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert body
