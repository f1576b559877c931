"""A turn's latency budget in headless Chromium: the agent page → relay → simulated model.

Runs on loopback only: ``python -m relay.simulator`` and ``python -m relay`` as processes,
Debian's Chromium (Playwright) whose fake microphone loops a WAV of one utterance (a
voiced tone burst) and quiet, so each loop is one turn. The page is opened with
``?latency=1`` and the bench reads ``agentStats.latency`` (docs/latency.md), collecting
every turn, then prints each leg's p50/p99 and the same for the relay's offsets.

The simulated model's own time is set, not measured: ``--think-ms`` (response.created →
first audio) and ``--transcription-ms`` (the final transcript after the commit). What the
page and the relay add is what is left (``addedMs``).

Alternatives: ``--latency-hint`` opens the page with ``?latencyHint=`` (interactive,
balanced, playback or seconds: the page's own option, docs/latency.md). ``--chunk-ms``
serves a copy of the page whose capture chunks are that long (the product's are 20 ms; not
a product setting) by a static server on loopback, with the relay named by ``?wss=``.
``--load N`` busy-loops N CPUs for the run (bench/cpu_load.py), to see the output buffer
underrun on a busy machine. Chromium gives its audio threads real-time priority
(SCHED_RR) where it may, which no busy loop preempts; ``--no-realtime`` starts it without
that privilege (no CAP_SYS_NICE, RLIMIT_RTPRIO 0: ``setpriv`` and ``prlimit``), as an
unprivileged browser runs, so its audio threads compete with the load. The run reports
the underruns the page saw after the warm-up (``agentStats.output``: Chromium's
``playbackStats`` and the playback worklet's gaps).
``--turn-taking addressed`` runs the relay's gate (wake phrase "heard": every simulated
transcript names it).

Run: ``.venv/bin/python -m bench.turn_latency [--turns 20] [--turn-taking always|addressed]
[--think-ms 0] [--transcription-ms 0] [--silence-ms 500] [--chunk-ms 20]
[--latency-hint interactive] [--load 0]``. Bounded: at most 200 turns and ``--max-seconds``
(default 300) of wall time, the load included.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import wave
from array import array
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

from playwright.sync_api import Page, sync_playwright

from bench.cpu_load import cpu_load
from bench.percentiles import format_table, summarize
from relay import tokens

ROOT: Final = Path(__file__).resolve().parent.parent
STATIC: Final = ROOT / "relay_container" / "relay" / "static"
SECRET: Final = "bench-turn-latency-secret-0123456789abcdef"
LEGS: Final = (
    "captureMs",
    "pageToRelayMs",
    "relayToModelMs",
    "modelMs",
    "modelToPageMs",
    "playbackMs",
    "outputMs",
    "vadRoundTripMs",
    "firstAudioMs",
    "addedMs",
    "endToEndMs",
)
RELAY_OFFSETS: Final = ("transcriptMs", "answerRequestedMs", "responseCreatedMs")
MAX_TURNS: Final = 200
RATE: Final = 48_000
NAMED_HINTS: Final = ("interactive", "balanced", "playback")
#: The counters of agentStats.output a run reports as differences (after the warm-up).
UNDERRUN_COUNTERS: Final = ("events", "ms", "playedMs")
#: Chromium refreshes AudioContext.playbackStats once a second.
STATS_REFRESH_SECONDS: Final = 1.2
SPEECH_SECONDS: Final = 0.8


def meeting_wav(path: Path, loop_seconds: float) -> None:
    """One loop: 0.2 s quiet, a 0.8 s voiced burst (a 180 Hz buzz with harmonics), quiet."""
    samples = array("h", bytes(2 * int(loop_seconds * RATE)))
    start = int(0.2 * RATE)
    for i in range(int(SPEECH_SECONDS * RATE)):
        t = i / RATE
        envelope = min(1.0, t / 0.02, (SPEECH_SECONDS - t) / 0.02)
        wave_ = sum(math.sin(2 * math.pi * 180 * k * t) / k for k in (1, 2, 3, 4))
        samples[start + i] = int(6000 * envelope * wave_)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.tobytes())


def latency_hint(text: str) -> str:
    """An argparse type: a name the page accepts, or seconds 0..0.5 (as the page checks)."""
    if text in NAMED_HINTS:
        return text
    try:
        seconds = float(text)
    except ValueError:
        message = f"{text!r}: not {'/'.join(NAMED_HINTS)} or seconds"
        raise argparse.ArgumentTypeError(message) from None
    if not 0 <= seconds <= 0.5:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds must be 0..0.5")
    return f"{seconds:g}"


def unprivileged(chromium: str, folder: Path) -> str:
    """A launcher that runs ``chromium`` unable to take real-time scheduling priority."""
    setpriv, prlimit = shutil.which("setpriv"), shutil.which("prlimit")
    if setpriv is None or prlimit is None:
        raise SystemExit("--no-realtime needs setpriv and prlimit (util-linux)")
    launcher = folder / "chromium-no-realtime"
    launcher.write_text(
        "#!/bin/sh\n"
        f"exec {setpriv} --inh-caps=-sys_nice --bounding-set=-sys_nice "
        f'{prlimit} --rtprio=0 -- {chromium} "$@"\n'
    )
    launcher.chmod(0o700)
    return str(launcher)


def patched_static(folder: Path, chunk_ms: int) -> Path:
    """A copy of the agent page (index.html at the root) whose chunks are ``chunk_ms``."""
    root = folder / "page"
    shutil.copytree(STATIC, root / "static")
    shutil.copy(STATIC / "index.html", root / "index.html")
    agent = root / "static" / "agent.js"
    text = _replace_once(agent.read_text(), "const CHUNK_MS = 20;", f"const CHUNK_MS = {chunk_ms};")
    agent.write_text(text)
    capture = root / "static" / "capture-worklet.js"
    capture.write_text(
        _replace_once(
            capture.read_text(),
            "const CHUNK_SAMPLES = 480;",
            f"const CHUNK_SAMPLES = {24 * chunk_ms};",
        )
    )
    return root


def _replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise SystemExit(f"the agent page changed: {old!r} not found once")
    return text.replace(old, new)


@contextlib.contextmanager
def static_server(root: Path) -> Iterator[str]:
    """The page copy over HTTP on loopback, in a thread."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="bench-static", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, SIGTERMed (then killed) at the end."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=out, cwd=ROOT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for_line(log: Path, proc: subprocess.Popen[bytes], marker: str, timeout: float) -> str:
    """The first line of ``log`` containing ``marker``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args!r} exited:\n{log.read_text()[-2000:]}")
        for line in log.read_text().splitlines():
            if marker in line:
                return line
        time.sleep(0.05)
    raise SystemExit(f"no {marker!r} from {proc.args!r} within {timeout} s")


def agent_config(path: Path, turn_taking: str, silence_ms: int) -> None:
    config: dict[str, Any] = {
        "turn_detection": {"silence_duration_ms": silence_ms},
        "transcription": {"model": "gpt-realtime-whisper"},
        "noise_reduction": None,
    }
    if turn_taking == "addressed":
        config["turn_taking"] = {"mode": "addressed", "wake_phrases": ["heard"]}
    path.write_text(json.dumps(config))


def collect(
    page: Page, turns: int, warmup: int, deadline: float
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every timed turn the page lists (by item id), once ``turns`` have the relay's word;
    and what ``agentStats.output`` counted between the warm-up's end and the last turn."""
    seen: dict[str, dict[str, Any]] = {}
    first: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        stats = page.evaluate("() => window.agentStats.latency")
        for turn in stats["recent"]:
            if isinstance(turn.get("modelMs"), (int, float)):
                seen[turn["itemId"]] = turn
        if first is None and len(seen) >= warmup:
            first = output_stats(page)
        if len(seen) >= turns:
            break
        time.sleep(0.5)
    time.sleep(STATS_REFRESH_SECONDS)
    last = output_stats(page)
    return list(seen.values()), output_counted(first or last, last)


def output_stats(page: Page) -> dict[str, Any]:
    return page.evaluate("() => window.agentStats.output")  # type: ignore[no-any-return]


def output_counted(first: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    """The output's settings as last reported, its underrun counters as differences."""
    counted = {key: last.get(key) for key in ("latencyHint", "baseLatencyMs", "outputLatencyMs")}
    counted["sampleRate"] = last.get("sampleRate")
    before, after = first.get("underruns"), last.get("underruns")
    if isinstance(before, dict) and isinstance(after, dict):
        for key in UNDERRUN_COUNTERS:
            counted[f"underrun_{key}"] = round(after[key] - before[key], 3)
    counted["gaps"] = last["gaps"] - first["gaps"]
    counted["gapMs"] = round(last["gapMs"] - first["gapMs"], 3)
    return counted


def run(args: argparse.Namespace) -> dict[str, Any]:
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium not installed (apt-get install chromium)")
    loop_seconds = (
        1.0 + (args.silence_ms + args.think_ms + args.transcription_ms + args.reply_ms) / 1000 + 0.8
    )
    deadline = time.monotonic() + args.max_seconds
    with tempfile.TemporaryDirectory(prefix="turn-latency-") as tmp:
        folder = Path(tmp)
        if args.no_realtime:
            chromium = unprivileged(chromium, folder)
        wav = folder / "meeting.wav"
        meeting_wav(wav, loop_seconds)
        agent_path = folder / "agent.json"
        agent_config(agent_path, args.turn_taking, args.silence_ms)
        sim_args = [sys.executable, "-m", "relay.simulator", "--host", "127.0.0.1", "--port", "0"]
        sim_args += ["--reply-ms", str(args.reply_ms), "--think-ms", str(args.think_ms)]
        sim_args += ["--transcription-ms", str(args.transcription_ms), "--max-turn-ms", "0"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "RELAY_"))}
        with process(sim_args, env, folder / "sim.log") as sim:
            line = wait_for_line(folder / "sim.log", sim, "simulator listening on ", 30)
            sim_url = line.split("simulator listening on ")[1].strip()
            relay_env = {
                **env,
                "PORT": "0",
                "RELAY_HOST": "127.0.0.1",
                "RELAY_TOKEN_SECRET": SECRET,
                "OPENAI_REALTIME_URL": sim_url,
                "OPENAI_API_KEY": "sk-bench-dummy",
                "AGENT_CONFIG": str(agent_path),
                "DRAIN_SECONDS": "1",
            }
            with process([sys.executable, "-m", "relay"], relay_env, folder / "relay.log") as relay:
                line = wait_for_line(folder / "relay.log", relay, '"relay listening"', 30)
                port = int(json.loads(line)["url"].split(":")[2].split("/")[0])
                relay_http = f"http://127.0.0.1:{port}"
                token = tokens.mint(SECRET, "bench-turn-latency", 3600)
                query = f"?latency=1&latencyHint={args.latency_hint}"
                with contextlib.ExitStack() as stack:
                    if args.chunk_ms == 20:
                        url = f"{relay_http}/{query}#token={token}"
                    else:
                        base = stack.enter_context(
                            static_server(patched_static(folder, args.chunk_ms))
                        )
                        wss = f"ws://127.0.0.1:{port}/v1/realtime"
                        url = f"{base}/{query}&wss={wss}#token={token}"
                    load = stack.enter_context(
                        cpu_load(args.load, max(1.0, deadline - time.monotonic()))
                    )
                    turns, output = drive(
                        chromium, wav, url, args.turns + args.warmup, args.warmup, deadline
                    )
    turns = turns[args.warmup :]
    return {
        "turns": len(turns),
        "load": load,
        "realtime": not args.no_realtime,
        "output": output,
        "legs": summarize(turns, LEGS),
        "relay": summarize([t.get("relay") or {} for t in turns], RELAY_OFFSETS),
    }


def drive(
    chromium: str, wav: Path, url: str, turns: int, warmup: int, deadline: float
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={wav}",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        try:
            page = browser.new_page()
            page.goto(url)
            found, output = collect(page, turns, warmup, deadline)
            found.sort(key=lambda t: t.get("endToEndMs") is None)  # stable: keeps page order
            return found, output
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=1, help="first turns left out")
    parser.add_argument("--turn-taking", choices=("always", "addressed"), default="always")
    parser.add_argument("--think-ms", type=int, default=0)
    parser.add_argument("--transcription-ms", type=int, default=0)
    parser.add_argument("--silence-ms", type=int, default=500)
    parser.add_argument("--reply-ms", type=int, default=600)
    parser.add_argument("--chunk-ms", type=int, choices=(10, 20, 40), default=20)
    parser.add_argument(
        "--latency-hint",
        type=latency_hint,
        default="interactive",
        help="?latencyHint= for the page: interactive, balanced, playback or seconds 0..0.5",
    )
    parser.add_argument(
        "--load", type=int, default=0, help="CPUs to busy-loop during the run (0: none)"
    )
    parser.add_argument(
        "--no-realtime",
        action="store_true",
        help="run Chromium without real-time scheduling for its audio threads",
    )
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if not 1 <= args.turns + args.warmup <= MAX_TURNS:
        parser.error(f"--turns + --warmup must be 1..{MAX_TURNS}")
    if not 0 <= args.load <= 16:
        parser.error("--load must be 0..16")
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    settings = (
        f"turn_taking={args.turn_taking} chunk={args.chunk_ms} ms hint={args.latency_hint} "
        f"silence={args.silence_ms} ms realtime={not args.no_realtime} "
        f"think={args.think_ms} ms transcription={args.transcription_ms} ms"
    )
    print(f"{result['turns']} turns; {settings}; load: {result['load']}")
    print("output after the warm-up:", json.dumps(result["output"]))
    print(format_table(result["legs"]))
    print("relay offsets after speech_stopped:")
    print(format_table(result["relay"]))


if __name__ == "__main__":
    main()
