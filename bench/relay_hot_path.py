"""The relay's own Python per audio round trip, without sockets: a profile-friendly figure.

Owns: timing the two callbacks every relayed round trip runs — the client's append
through ``RelaySession.data_received`` (the shell, then its ``SessionCore``) and the
model's delta through the upstream protocol's ``data_received`` — on a real
``RelaySession`` whose transports only count writes. The kernel and the event loop are
left out on purpose: what is left is the code this repository controls, measured in CPU
time (``time.process_time``) so a busy shared machine slows it down less than it does
wall-clock figures. ``bench/relay_load.py`` gives
the end-to-end numbers.

Run: ``python -m bench.relay_hot_path [--round-trips 200000] [--repeat 5]``; prints the
best and median µs per round trip over the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import time
from collections.abc import Sequence
from typing import Any

from websockets.client import ClientProtocol
from websockets.uri import parse_uri

from relay import wire
from relay.admission import Admission
from relay.agent import AgentConfig
from relay.config import RelayConfig
from relay.metrics import Metrics
from relay.policy import SessionPolicy
from relay.recorder import NullRecorder
from relay.session import RelaySession
from relay.session_context import SessionContext
from relay.session_setup import SessionSetups
from relay.tokens import Claims
from relay.upstream import UpstreamConnection

AUDIO = base64.b64encode(bytes(range(256)) * 3 + bytes(192)).decode()  # 960 bytes of PCM16


class CountingTransport:
    """Accepts writes like a socket that is never full."""

    def __init__(self) -> None:
        self.bytes = 0
        self.protocol: Any = None

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def write(self, data: bytes) -> None:
        self.bytes += len(data)

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass


async def open_session() -> tuple[RelaySession, CountingTransport, CountingTransport]:
    """A session past both handshakes, reached through its public inputs: started on a
    counting client transport, its dial answered with a counting upstream connection."""
    upstream_transport = CountingTransport()

    async def dial(**_: Any) -> UpstreamConnection:
        # The dialler's state once the model's 101 is in: a transport and a settled future.
        connection = UpstreamConnection(ClientProtocol(parse_uri("ws://127.0.0.1:9/")), b"")
        connection.transport = upstream_transport  # type: ignore[assignment]
        connection.opened.set_result(None)
        return connection

    context = SessionContext(
        config=RelayConfig(token_secret="b" * 32, rollover_seconds=0),
        policy=SessionPolicy(()),
        setups=SessionSetups(AgentConfig()),
        metrics=Metrics(namespace="n", service="s", active_sessions=lambda: 0),
        recorder=NullRecorder(),
        dial=dial,
    )
    session = RelaySession(
        context,
        claims=Claims(sub="bench", jti="j", exp=0, iat=0),
        ticket=Admission(0, 0).admit("bench"),
        model="m",
        on_finished=lambda _: None,
    )
    client = CountingTransport()
    session.start(client, b"")  # type: ignore[arg-type]
    for _ in range(100):  # the dial task runs on the next turns of the loop
        if session.core.up.is_open:
            break
        await asyncio.sleep(0)
    if not session.core.up.is_open:
        raise RuntimeError("the session never opened its upstream leg")
    return session, upstream_transport, client


def frames() -> tuple[bytes, bytes]:
    """One masked client append and one unmasked model delta, as on the wire."""
    append = (
        '{"type":"input_audio_buffer.append","event_id":"b1.2.1732900000000000",'
        f'"audio":"{AUDIO}"}}'
    ).encode()
    delta = (
        '{"type":"response.output_audio.delta","event_id":"b1.2.1732900000000000",'
        '"response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,'
        f'"delta":"{AUDIO}"}}'
    ).encode()
    return wire.encode(wire.TEXT, append, mask=True), wire.encode(wire.TEXT, delta, mask=False)


async def measure(round_trips: int) -> float:
    """µs of CPU per round trip over ``round_trips`` iterations."""
    session, upstream, _ = await open_session()
    append, delta = frames()
    client_in = session.data_received
    model_in = upstream.protocol.data_received  # what the event loop calls
    for _ in range(1000):  # warm caches and specialisations
        client_in(append)
        model_in(delta)
    start = time.process_time()
    for _ in range(round_trips):
        client_in(append)
        model_in(delta)
    elapsed = time.process_time() - start
    if session.core.frames_up < round_trips or session.core.frames_down < round_trips:
        raise RuntimeError("the session did not relay every frame: the figure would be wrong")
    return 1e6 * elapsed / round_trips


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay_hot_path", description=__doc__)
    parser.add_argument("--round-trips", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    if not 1 <= args.round_trips <= 5_000_000 or not 1 <= args.repeat <= 50:
        parser.error("--round-trips must be 1..5,000,000 and --repeat 1..50")
    figures = [asyncio.run(measure(args.round_trips)) for _ in range(args.repeat)]
    print(
        f"relay hot path: best {min(figures):.2f} µs, median {statistics.median(figures):.2f} µs "
        f"of CPU per round trip (client append in, model delta out; {args.round_trips} each)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
