"""The local stack for browser tests: a simulated model, real relays, a fake meeting mic.

Everything is a real process on loopback: ``python -m relay.simulator``, ``python -m relay``
(one or more), a switchable TCP proxy standing in for the load balancer, and Debian's
Chromium driven by Playwright with an espeak-ng WAV as its microphone. Chromium and
espeak-ng come from apt (``.ci/run`` installs them); without them the tests skip with a
clear message locally and fail in CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from relay import tokens
from tests.conftest import ROOT, TIMEOUT
from tests.deadlines import poll as poll  # re-exported: the e2e tests import it here

TOKEN_SECRET = "e2e-relay-token-secret-0123456789abcdef"
ARTIFACTS = ROOT / "test-artifacts"
SAMPLE_RATE = 24_000
#: The fake microphone loops this file: a spoken sentence, then quiet, so each loop is a turn.
WAV_SECONDS = 6.0
SPEECH = "Hello agent, can you hear me?"


#: Debian packages the browser tests run (a missing one is named with all the others).
BROWSER_TOOLS: Final = ("chromium", "espeak-ng")


def require_tool(name: str) -> str:
    """The tool's path; skip locally without it, fail in CI (which must install it).

    The message names every missing browser-test tool at once, so one install fixes all.
    """
    path = shutil.which(name)
    if path is None:
        missing = [tool for tool in BROWSER_TOOLS if shutil.which(tool) is None] or [name]
        message = (
            f"{', '.join(missing)} not installed (apt-get install {' '.join(missing)}); "
            "the browser tests need them"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


# The fake meeting: a WAV for Chromium's fake capture device ----------------------------


@dataclass(frozen=True)
class MeetingAudio:
    """The WAV Chromium plays as its microphone, and the same audio at 24 kHz."""

    path: Path
    pcm24k: np.ndarray  # float, one loop


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as wav:
        assert wav.getsampwidth() == 2
        assert wav.getnchannels() == 1
        rate = wav.getframerate()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return data.astype(np.float64), rate


def resample(signal_: np.ndarray, rate: int, to: int) -> np.ndarray:
    """Linear-interpolation resampling (enough for envelopes)."""
    times = np.arange(int(len(signal_) * to / rate)) / to
    resampled: np.ndarray = np.interp(times, np.arange(len(signal_)) / rate, signal_)
    return resampled


@pytest.fixture(scope="session")
def meeting_audio(tmp_path_factory: pytest.TempPathFactory) -> MeetingAudio:
    """espeak-ng speaks a sentence; padded with quiet to WAV_SECONDS at 48 kHz mono."""
    espeak = require_tool("espeak-ng")
    folder = tmp_path_factory.mktemp("meeting")
    raw = folder / "speech-raw.wav"
    subprocess.run([espeak, "-s", "160", "-w", str(raw), SPEECH], check=True, timeout=TIMEOUT)
    speech, rate = _read_wav(raw)
    speech48 = resample(speech, rate, 48_000)
    loop = np.zeros(int(WAV_SECONDS * 48_000))
    start = int(0.2 * 48_000)
    assert start + len(speech48) < len(loop), "the sentence must fit in one loop"
    loop[start : start + len(speech48)] = speech48
    path = folder / "meeting.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(48_000)
        wav.writeframes(np.clip(loop, -32768, 32767).astype("<i2").tobytes())
    return MeetingAudio(path=path, pcm24k=resample(loop, 48_000, SAMPLE_RATE))


# Processes --------------------------------------------------------------------------------


def _stop(proc: subprocess.Popen[bytes]) -> int:
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait()
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


@dataclass
class Simulator:
    """A ``python -m relay.simulator`` subprocess and its stats endpoint."""

    proc: subprocess.Popen[bytes]
    url: str

    @property
    def http(self) -> str:
        return self.url.replace("ws://", "http://").removesuffix("/v1/realtime")

    def sessions(self) -> list[dict[str, Any]]:
        response = httpx.get(self.http + "/_sim/sessions", timeout=TIMEOUT)
        response.raise_for_status()
        return response.json()["sessions"]  # type: ignore[no-any-return]

    def session(self, index: int = 0) -> dict[str, Any]:
        """One session's stats, or an empty dict while it does not exist yet."""
        sessions = self.sessions()
        return sessions[index] if len(sessions) > index else {}

    def audio(self, index: int) -> np.ndarray:
        response = httpx.get(f"{self.http}/_sim/sessions/{index}/audio", timeout=TIMEOUT)
        response.raise_for_status()
        return np.frombuffer(response.content, dtype="<i2").astype(np.float64)


@dataclass
class Relay:
    """A ``python -m relay`` subprocess."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def drain(self) -> int:
        """SIGTERM (what ECS sends after the balancer drained the task); the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=3 * TIMEOUT)


@dataclass
class Stack:
    """Starts processes for one test and stops them all at its end."""

    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    relays: int = 0

    def simulator(self, *args: str) -> Simulator:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relay.simulator", "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("simulator listening on "), line
        return Simulator(proc, line.removeprefix("simulator listening on "))

    def relay(self, simulator: Simulator, **env: str) -> Relay:
        self.relays += 1
        log = self.tmp / f"relay-{self.relays}.log"
        environ = {
            **os.environ,
            "PORT": "0",  # the relay reports the port it bound: no race for a free one
            "RELAY_INTERNAL_PORT": "0",  # likewise; the owner registry records it
            "RELAY_HOST": "127.0.0.1",
            "RELAY_TOKEN_SECRET": TOKEN_SECRET,
            "OPENAI_REALTIME_URL": simulator.url,
            "OPENAI_API_KEY": "sk-e2e-dummy",
            "DRAIN_SECONDS": "1",
            **env,
        }
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "relay"], env=environ, stdout=out, stderr=out, cwd=ROOT
            )
        self.procs.append(proc)
        port = poll(lambda: _listening_port(proc, log), "relay listening")
        relay = Relay(proc, port, log)
        poll(lambda: _healthy(relay), "relay healthy")
        return relay

    def close(self) -> None:
        for proc in reversed(self.procs):
            _stop(proc)


def _listening_port(proc: subprocess.Popen[bytes], log: Path) -> int | None:
    """The port from the relay's "relay listening" log line, once it is written."""
    if proc.poll() is not None:
        raise RuntimeError(f"relay exited early:\n{log.read_text()[-2000:]}")
    for line in log.read_text().splitlines():
        if '"relay listening"' in line:
            return int(json.loads(line)["url"].split(":")[2].split("/")[0])
    return None


def _healthy(relay: Relay) -> bool:
    if relay.proc.poll() is not None:
        raise RuntimeError(f"relay exited early:\n{relay.log.read_text()[-2000:]}")
    try:
        return httpx.get(relay.http + "/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """Processes for one test, all stopped at its end."""
    stack = Stack(tmp_path)
    try:
        yield stack
    finally:
        stack.close()


def mint(
    sub: str = "e2e-bot", ttl: int = 600, secret: str = TOKEN_SECRET, now: float | None = None
) -> str:
    return tokens.mint(secret, sub, ttl, now=time.time() if now is None else now)


# The load balancer stand-in -------------------------------------------------------------


class SwitchableProxy:
    """A TCP proxy on loopback whose target can be switched, as a balancer moves new
    connections to another task while existing ones stay where they are."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0  # bound in _run, read back from the socket
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="e2e-proxy", daemon=True)
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def __enter__(self) -> SwitchableProxy:
        self.thread.start()
        assert self.ready.wait(TIMEOUT), "proxy did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", 0)
        )
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    def cut(self) -> None:
        """Drop every connection at the TCP level (no WebSocket close), as a network blip."""
        asyncio.run_coroutine_threadsafe(self._cut(), self.loop).result(TIMEOUT)

    async def _cut(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _shutdown(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.target_port), TIMEOUT
            )
        except OSError:
            writer.close()
            self.tasks.discard(task)
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            writer.close()
            up_writer.close()
            self.tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()


# The browser ------------------------------------------------------------------------------


# Module scope, not session: Playwright's sync API keeps an event loop running in this
# thread until it stops, and pytest-asyncio cannot run the async tests of later modules
# while it does.
@pytest.fixture(scope="module")
def playwright_session() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright_session: Playwright, meeting_audio: MeetingAudio) -> Iterator[Browser]:
    """Debian's Chromium, headless, with the meeting WAV as its (looping) microphone."""
    chromium = require_tool("chromium")
    browser = playwright_session.chromium.launch(
        executable_path=chromium,
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={meeting_audio.path}",
            "--autoplay-policy=no-user-gesture-required",
        ],
    )
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh 1280x720 page (its own context: storage starts empty)."""
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def agent_stats(page: Page) -> dict[str, Any]:
    return page.evaluate("() => ({...window.agentStats})")  # type: ignore[no-any-return]
