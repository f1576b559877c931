"""Sessions moving off a leaving relay: what a meeting hears while a deploy replaces its task.

Owns: one measured run of the migration path, on loopback: moto's DynamoDB server, the
simulated GA model, relay A and relay B (both in this process), and N clients that talk
like the agent page (20 ms appends, a spoken turn then silence, the model's answer back).
Once every session on A has been answered once, A is told to leave (``Relay.drain``, what
SIGTERM runs): it stops admitting at once and hands each session over at its next turn
boundary with 1001 "relay draining: reconnect". Each client then reconnects to B, as the
page does through the load balancer; B resumes the conversation from the table.

Per session it reports the reconnect gap (A's close → B's ``session.created``) and the
audio gap (the last answer audio from A → the first from B, which includes waiting for the
next turn to be spoken and answered), whether B's model was seeded with the conversation,
and overall the sessions lost (never answered on B) and how long until A held nothing.

Run: ``python -m bench.migration [--sessions 50] [--drain-seconds 60]``; prints a summary
and exits 1 if a session was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from relay import tokens
from relay.config import RelayConfig
from relay.record_writer import SessionRecorder
from relay.server import Relay
from relay.simulator import SimulatorOptions, listening_url, serve_simulator
from storage import schema

SECRET = "bench-migration-secret-" + "x" * 20
CHUNK = 20 * 48  # 20 ms of PCM16 at 24 kHz
#: A spoken turn: 400 ms of a loud tone, then more silence than the server VAD waits for.
TURN = array(
    "h", (int(8000 * math.sin(2 * math.pi * 220 * i / 24000)) for i in range(24 * 400))
).tobytes() + bytes(48 * 700)
DRAIN_REASON = "relay draining: reconnect"


class BenchError(Exception):
    """The run could not be made (a part did not start)."""


@dataclass
class Call:
    """One client's view of its session."""

    index: int
    answered_on_a: asyncio.Event = field(default_factory=asyncio.Event)
    last_audio_a: float | None = None
    closed_a: float | None = None
    close_code: int | None = None
    created_b: float | None = None
    first_audio_b: float | None = None
    turns_b: int = 0
    error: str | None = None


async def speak(ws: ClientConnection) -> None:
    """One turn, paced like a microphone."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n, i in enumerate(range(0, len(TURN), CHUNK), start=1):
        audio = base64.b64encode(TURN[i : i + CHUNK]).decode()
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
        await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))


async def converse(ws: ClientConnection, call: Call, *, on_b: bool, stop: asyncio.Event) -> None:
    """Speak turns and listen until the session closes (A) or two turns are answered (B)."""

    async def listen() -> None:
        async for raw in ws:
            event: dict[str, Any] = json.loads(raw)
            kind = event["type"]
            now = time.monotonic()
            if kind == "response.output_audio.delta":
                if on_b:
                    call.first_audio_b = call.first_audio_b or now
                else:
                    call.last_audio_a = now
            elif kind == "response.done":
                if on_b:
                    call.turns_b += 1
                    if call.turns_b >= 2:
                        return
                else:
                    call.answered_on_a.set()
            elif kind == "session.created" and on_b:
                call.created_b = now

    listener = asyncio.create_task(listen())
    try:
        while not listener.done() and not stop.is_set():
            try:
                await speak(ws)
            except ConnectionClosed:
                break
        await listener
    except ConnectionClosed:
        pass
    finally:
        listener.cancel()


async def run_call(call: Call, a_url: str, b_url: str, stop: asyncio.Event) -> None:
    token = tokens.mint(SECRET, f"bench-call-{call.index}", 3600)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with connect(a_url, additional_headers=headers, compression=None) as ws:
            await converse(ws, call, on_b=False, stop=stop)
            call.closed_a = time.monotonic()
            call.close_code = ws.close_code
        if (call.close_code, ws.close_reason) != (1001, DRAIN_REASON):
            call.error = f"A closed with {call.close_code} {ws.close_reason!r}"
            return
        async with connect(b_url, additional_headers=headers, compression=None) as ws:
            await converse(ws, call, on_b=True, stop=asyncio.Event())
    except (OSError, ConnectionClosed) as exc:
        call.error = f"{type(exc).__name__}: {exc}"


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
            return proc, endpoint
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise BenchError("moto's server did not start")


async def measure(sessions: int, drain_seconds: float) -> dict[str, Any]:
    """One run; the summary as a dict. The environment is as it was afterwards (a test
    runs this in the suite's process)."""
    saved = dict(os.environ)
    try:
        return await _measure(sessions, drain_seconds)
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def _measure(sessions: int, drain_seconds: float) -> dict[str, Any]:
    moto, endpoint = start_moto()
    # The relays' own DynamoDB clients find moto through the environment; loopback only,
    # with credentials that reach no account.
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(name, value)
    table = "migration"
    boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1").create_table(
        **schema.create_table_request(table)
    )
    simulator = await serve_simulator("127.0.0.1", 0, SimulatorOptions(pace=1.0, reply_ms=300))
    relays: list[Relay] = []
    try:
        for _ in range(2):
            config = RelayConfig(
                token_secret=SECRET,
                openai_api_key="sk-bench-simulator",
                host="127.0.0.1",
                port=0,
                internal_port=0,
                upstream_url=listening_url(simulator),
                table_name=table,
                metrics_interval=0,
                max_sessions=0,
                max_sessions_per_subject=0,
                drain_seconds=drain_seconds,
            )
            recorder = SessionRecorder(table, region="us-east-1", endpoint_url=endpoint)
            relay = Relay(config, recorder=recorder)
            await relay.start()
            relays.append(relay)
        relay_a, relay_b = relays
        calls = [Call(i) for i in range(sessions)]
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(run_call(call, relay_a.url, relay_b.url, stop)) for call in calls
        ]
        async with asyncio.timeout(60 + sessions):
            await asyncio.gather(*(call.answered_on_a.wait() for call in calls))
        left_at = time.monotonic()
        drain = asyncio.create_task(relay_a.drain(drain_seconds))
        async with asyncio.timeout(drain_seconds + 30):
            while relay_a.sessions:  # noqa: ASYNC110 - the relay has no "empty" event to await
                await asyncio.sleep(0.01)
        a_empty_s = time.monotonic() - left_at
        async with asyncio.timeout(60 + sessions):
            await asyncio.gather(*tasks)
        stop.set()
        await drain
        served = await asyncio.to_thread(sim_sessions, listening_url(simulator))
        seeded = sum(1 for s in served if s.get("items_created"))
    finally:
        for relay in relays:
            await relay.close()
        simulator.close()
        await simulator.wait_closed()
        moto.terminate()
        moto.wait(timeout=10)
    lost = [c for c in calls if c.error is not None or c.turns_b == 0]
    reconnect = [1000 * (c.created_b - c.closed_a) for c in calls if c.created_b and c.closed_a]
    audio = [
        1000 * (c.first_audio_b - c.last_audio_a)
        for c in calls
        if c.first_audio_b and c.last_audio_a
    ]
    return {
        "sessions": sessions,
        "lost": len(lost),
        "errors": sorted({c.error for c in lost if c.error})[:5],
        "seeded_on_b": seeded,
        "a_empty_s": round(a_empty_s, 2),
        "reconnect_ms": percentiles(reconnect),
        "audio_gap_ms": percentiles(audio),
    }


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 1),
        "p99": round(ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)], 1),
        "max": round(ordered[-1], 1),
    }


def sim_sessions(url: str) -> list[dict[str, Any]]:
    status = url.replace("ws://", "http://").replace("/v1/realtime", "/_sim/sessions")
    with urllib.request.urlopen(status, timeout=10) as response:
        sessions: list[dict[str, Any]] = json.load(response)["sessions"]
        return sessions


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.migration", description=__doc__)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--drain-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    if not 1 <= args.sessions <= 200 or not 1 <= args.drain_seconds <= 600:
        parser.error("--sessions must be 1..200 and --drain-seconds 1..600")
    summary = asyncio.run(measure(args.sessions, args.drain_seconds))
    print(json.dumps(summary, indent=2))
    return 1 if summary["lost"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
