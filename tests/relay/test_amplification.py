"""A client that never reads cannot make the relay queue bytes for it (issue 12, item 1).

The relay answers some client frames itself (an ``error`` event for an invalid one, a pong
for a ping). A client that sends those as fast as it can and never reads used to grow the
relay without bound (~100 MB → 460 MB in 50 s) and stall every session on the process.
Here a real relay process (``python -m relay``) is attacked over a raw socket whose receive
buffer is small and never drained; its RSS must stay flat within a few MB, the attacker
must be cut, and another session on the same process must keep working meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay import wire
from tests.conftest import TIMEOUT
from tests.relay.conftest import (
    FakeUpstream,
    append_event,
    mint,
)
from tests.relay.test_drain import RelayProcess, health, spawn_relay

#: The attack's length: long enough to have grown the old relay by tens of MB.
ATTACK_SECONDS = 4.0
#: RSS growth allowed during the attack (allocator noise, one session's buffers).
MAX_GROWTH_KB = 6 * 1024


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` in KB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
async def relay_proc(fake_upstream: FakeUpstream, tmp_path: Path) -> AsyncIterator[RelayProcess]:
    async with spawn_relay(fake_upstream, tmp_path, LOG_LEVEL="WARNING") as relay:
        yield relay


def attacker_socket(port: int, token: str) -> socket.socket:
    """A WebSocket past its handshake, with a tiny receive buffer it never drains."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /v1/realtime HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    sock.setblocking(False)
    return sock


async def attack(sock: socket.socket, frame: bytes) -> bool:
    """Send ``frame`` as fast as the socket takes it for ATTACK_SECONDS; True if cut."""
    loop = asyncio.get_running_loop()
    burst = frame * 256
    ends = loop.time() + ATTACK_SECONDS
    while loop.time() < ends:
        try:
            sock.send(burst)
        except BlockingIOError:
            await asyncio.sleep(0.001)  # our own send buffer is full: let the relay read
        except OSError:  # reset or broken pipe: the relay cut us
            return True
        else:
            await asyncio.sleep(0)
    return False


async def cut_within_timeout(sock: socket.socket) -> None:
    """The relay ends the connection: what it queued is read, then EOF or a reset."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            try:
                if sock.recv(1 << 16) == b"":
                    return
            except BlockingIOError:
                await asyncio.sleep(0.01)
            except OSError:
                return


@pytest.mark.parametrize(
    "frame",
    [
        # Empty binary frames (6 bytes, each worth a ~200-byte error event) and unsolicited
        # pongs, so keepalive never cuts it.
        wire.encode(wire.BINARY, b"", mask=True) * 50 + wire.encode(wire.PONG, b"", mask=True),
        # Pings with the largest payload, each answered with a pong.
        wire.encode(wire.PING, b"p" * 125, mask=True),
    ],
    ids=["invalid-frames", "pings"],
)
async def test_a_client_that_never_reads_is_cut_and_the_relay_stays_flat(
    relay_proc: RelayProcess, frame: bytes
) -> None:
    """The attacker is cut; RSS stays within a few MB; health and other sessions go on."""
    from websockets.asyncio.client import connect

    pid = relay_proc.proc.pid
    before = rss_kb(pid)
    sock = attacker_socket(relay_proc.port, mint("bot-attacker"))
    try:
        cut_during = await attack(sock, frame)
        during = rss_kb(pid)
        assert await health(relay_proc.port) == 200
        # Another session on the same process is served meanwhile.
        headers = {"Authorization": f"Bearer {mint('bot-honest')}"}
        async with connect(relay_proc.url, additional_headers=headers) as honest:
            await honest.send(append_event(seed=1))
            async with asyncio.timeout(TIMEOUT):
                assert "session.created" in str(await honest.recv())
        if not cut_during:
            await cut_within_timeout(sock)
    finally:
        sock.close()
    growth = during - before
    assert growth < MAX_GROWTH_KB, f"the relay grew {growth} KB under the attack"
