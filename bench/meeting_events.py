"""Cost of Recall's real-time meeting events at the relay.

Two figures:

- **per event, in process**: ``parse_meeting_event`` + ``Meeting.on_event`` (the roster,
  the speech timeline and the item for the model), for a realistic mix (join, speech_on,
  speech_off, chat); microseconds per event;
- **over the socket**: a signed ``/recall/events/`` connection to a relay on loopback, with
  a live session (the simulated model, in-process): time from ``send`` of an event to the
  moment the session's meeting has applied it (polled on the same loop, so an upper
  bound), p50/p99 in ms, for ``--events`` events sent within the connection's burst.

Run: ``.venv/bin/python -m bench.meeting_events [--events 150] [--rounds 20000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import time

from websockets.asyncio.client import connect

from cli import recall_events
from relay import tokens
from relay.config import RelayConfig
from relay.meeting import Meeting
from relay.meeting_events import parse_meeting_event
from relay.server import Relay
from relay.simulator import SimulatorOptions, listening_url, serve_simulator

SECRET = "whsec_" + base64.b64encode(b"bench-workspace-secret-32-bytes!").decode()
TOKEN_SECRET = "bench-token-secret-" + "x" * 40


def mix(n: int, session_id: str = "bench") -> list[bytes]:
    kinds = ["join", "speech_on", "speech_off", "chat_message"]
    out = []
    for i in range(n):
        kind = kinds[i % 4]
        who = recall_events.participant(i % 7, f"Person {i % 7}")
        text = "Ava, what is next?" if kind == "chat_message" else None
        out.append(recall_events.event(kind, who, session_id=session_id, text=text).encode())
    return out


def in_process(rounds: int) -> float:
    events = mix(400)
    meeting = Meeting()
    started = time.perf_counter()
    for i in range(rounds):
        meeting.on_event(parse_meeting_event(events[i % len(events)]), i * 0.01)
    return (time.perf_counter() - started) / rounds * 1e6


async def over_socket(count: int) -> list[float]:
    sim = await serve_simulator("127.0.0.1", 0, SimulatorOptions(pace=0.0))
    config = RelayConfig(
        token_secret=TOKEN_SECRET,
        openai_api_key="sk-bench",
        host="127.0.0.1",
        port=0,
        upstream_url=listening_url(sim),
        metrics_interval=0,
        recall_webhook_secret=SECRET,
    )
    relay = Relay(config)
    await relay.start()
    token = tokens.mint(TOKEN_SECRET, "bench", 600)
    waits: list[float] = []
    try:
        headers = {"Authorization": f"Bearer {token}"}
        async with connect(relay.url, additional_headers=headers) as client:
            while '"session.updated"' not in str(await client.recv()):
                pass
            session = next(iter(relay.sessions))
            url = relay.url.replace("/v1/realtime", "/recall/events/")
            signed = recall_events.signed_upgrade_headers(SECRET)
            async with connect(url, additional_headers=signed, compression=None) as ws:
                for event in mix(count):
                    before = session.core.meeting.events
                    sent = time.perf_counter()
                    await ws.send(event.decode())
                    # A poll is the measurement: the session has no event to wait on.
                    while session.core.meeting.events == before:  # noqa: ASYNC110
                        await asyncio.sleep(0)
                    waits.append((time.perf_counter() - sent) * 1000)
    finally:
        await relay.close()
        sim.close()
        await sim.wait_closed()
    return waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=20_000)
    args = parser.parse_args()
    print(f"in process: {in_process(args.rounds):.1f} µs per event (parse + meeting)")
    waits = sorted(asyncio.run(over_socket(args.events)))
    p99 = waits[min(len(waits) - 1, int(0.99 * len(waits)))]
    print(
        f"over the socket: {len(waits)} events, send → applied p50 "
        f"{statistics.median(waits):.2f} ms, p99 {p99:.2f} ms"
    )


if __name__ == "__main__":
    main()
