"""``python -m relay.simulator``: the simulator as a process, until SIGTERM/SIGINT.

When ready it prints exactly one line, ``simulator listening on ws://HOST:PORT/v1/realtime``;
it exits 0 on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import relay.simulator
from relay.simulator.records import SimulatorOptions
from relay.simulator.server import listening_url, serve_simulator


async def _main(host: str, port: int, options: SimulatorOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await serve_simulator(host, port, options)
    sys.stdout.write(f"simulator listening on {listening_url(server)}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m relay.simulator``: run until SIGTERM/SIGINT."""
    defaults = SimulatorOptions()
    parser = argparse.ArgumentParser(
        prog="python -m relay.simulator", description=relay.simulator.__doc__
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply-ms", type=int, default=defaults.reply_ms)
    parser.add_argument("--pace", type=float, default=defaults.pace)
    parser.add_argument("--vad-threshold-dbfs", type=float, default=defaults.vad_threshold_dbfs)
    parser.add_argument("--api-key", default=None, help="require exactly this key")
    parser.add_argument(
        "--max-turn-ms",
        type=int,
        default=defaults.max_turn_ms,
        help="end a turn with no pause after this long (0: only silence ends a turn)",
    )
    parser.add_argument(
        "--call-on-speech", default=None, help="call this declared function after each turn"
    )
    parser.add_argument(
        "--transcripts",
        type=Path,
        default=None,
        help="a text file, one turn's words per line: the Nth turn heard is transcribed "
        "as the Nth line (a scripted meeting)",
    )
    parser.add_argument(
        "--think-ms",
        type=int,
        default=defaults.think_ms,
        help="the model's own time from response.created to its first audio",
    )
    parser.add_argument(
        "--transcription-ms",
        type=int,
        default=defaults.transcription_ms,
        help="input transcription arrives this long after the commit",
    )
    args = parser.parse_args(argv)
    transcripts: tuple[str, ...] = ()
    if args.transcripts is not None:
        try:
            lines = args.transcripts.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            parser.error(f"--transcripts: {exc}")
        transcripts = tuple(line.strip() for line in lines if line.strip())
    for name in ("max_turn_ms", "think_ms", "transcription_ms"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be 0 or more")
    options = SimulatorOptions(
        reply_ms=args.reply_ms,
        pace=args.pace,
        vad_threshold_dbfs=args.vad_threshold_dbfs,
        api_key=args.api_key,
        max_turn_ms=args.max_turn_ms,
        call_on_speech=args.call_on_speech,
        transcripts=transcripts,
        think_ms=args.think_ms,
        transcription_ms=args.transcription_ms,
    )
    asyncio.run(_main(args.host, args.port, options))
