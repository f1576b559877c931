"""Added latency of a relay tool call: ``function_call_arguments.done`` → output sent.

Drives the simulated GA model (``relay.simulator``, in-process, over a real socket) with
the relay's tool path (``ToolCallTracker`` + ``ToolRegistry`` + ``ToolRunner``): each round,
a participant's text asks for a tool, the model answers and calls it, and the runner
measures from the moment ``response.function_call_arguments.done`` is read to the moment
the ``function_call_output`` is handed to the socket. Built-ins measured:

- ``end_turn_silently``: no I/O, so the relay's own cost (parse, wait for the
  ``response.done`` that confirms the answer completed, dispatch, serialize);
- ``take_note``: one DynamoDB ``PutItem`` against moto's server on loopback (a
  subprocess), the shape of the real path (a real table adds its own few milliseconds).

Run: ``.venv/bin/python -m bench.tool_latency [--rounds 300]``. Prints p50/p99 in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import boto3
from websockets.asyncio.client import connect

from relay.agent import AgentConfig
from relay.simulator import SimulatorOptions, listening_url, serve_simulator
from relay.tool_calls import UPSTREAM_EVENT_TYPES, ToolCallTracker
from relay.tool_runner import ToolRunner
from relay.tools.builtins import ToolContext
from relay.tools.registry import build_registry
from storage import schema

BOT_ID = "6f7d2a8e-1c1b-4c1e-9a8f-0d9d4c1b2a3e"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(tool: str, rounds: int, table: str | None, endpoint: str | None) -> list[float]:
    tools = AgentConfig.model_validate({"tools": [{"builtin": tool}]}).tools
    registry = build_registry(tools, table_name=table, dynamodb_endpoint=endpoint)
    server = await serve_simulator("127.0.0.1", 0, SimulatorOptions(pace=0.0, reply_ms=40))
    url = listening_url(server) + "?model=gpt-realtime-2.1"
    text = "take a note: bench" if tool == "take_note" else f"call {tool} with {{}}"
    try:
        async with connect(url, additional_headers={"Authorization": "Bearer sk-sim"}) as ws:
            tracker = ToolCallTracker(registry.names, registry.declarations())
            runner = ToolRunner(
                registry,
                tracker,
                ToolContext(session_id="bench", bot_id=BOT_ID),
                send_upstream=lambda frame: ws.send(frame, text=True),
            )
            session = {"type": "realtime", "tools": registry.declarations()}
            await ws.send(json.dumps({"type": "session.update", "session": session}))
            for _ in range(rounds):
                item = {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": text}],
                }
                await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
                await ws.send(json.dumps({"type": "response.create"}))
                expected = len(runner.latencies_ms) + 1
                # Until the call's output went out and the model finished what followed.
                while len(runner.latencies_ms) < expected or runner.running:
                    raw = await ws.recv()
                    event_type: Any = json.loads(raw)["type"]
                    if event_type in UPSTREAM_EVENT_TYPES:
                        runner.on_upstream(event_type, raw)
                if tool != "end_turn_silently":
                    while json.loads(await ws.recv())["type"] != "response.done":
                        pass
            await runner.aclose()
            return list(runner.latencies_ms)
    finally:
        await registry.aclose()
        server.close()
        await server.wait_closed()


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    # moto accepts any credentials; never a real account's.
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    proc, endpoint = start_moto()
    try:
        client = boto3.client("dynamodb", endpoint_url=endpoint)
        client.create_table(**schema.create_table_request("bench"))
        for tool, table in (("end_turn_silently", None), ("take_note", "bench")):
            samples = asyncio.run(measure(tool, args.rounds, table, endpoint))
            print(
                f"{tool:18} n={len(samples)} p50={statistics.median(samples):.2f} ms "
                f"p99={percentile(samples, 0.99):.2f} ms max={max(samples):.2f} ms"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
