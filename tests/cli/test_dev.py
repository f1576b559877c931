"""`voicebot dev` as a user runs it: a subprocess whose printed URLs, session and webhooks work.

One local stack serves the module (moto + webhook app + simulator + relay, started by the
real command); the `bot show` / `bots` tests read what the real webhook app and the real
relay wrote into it. The last test stops it with SIGINT and checks no child is left.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml
from websockets.asyncio.client import connect

from relay import tokens
from tests.cli.conftest import CLI_ENV_UNSET, RECALL_KEY, TOKEN_SECRET, run_cli
from tests.cli.fake_recall import Answer, FakeRecall
from tests.conftest import ROOT, TIMEOUT, free_port
from tests.deadlines import poll

BANNER_END = re.compile(r"^  voicebot webhook send-sample ")
#: Where the runs in this module write their dev profile (never the developer's own).
PROFILE_DIR = Path(tempfile.mkdtemp(prefix="voicebot-dev-test-"))


@dataclass
class DevRun:
    """The running `voicebot dev` process and what it printed."""

    proc: subprocess.Popen[str]
    stdout: list[str]
    profile: Path
    stderr: list[str] = field(default_factory=list)
    banner: dict[str, str] = field(default_factory=dict)
    watch: list[str] = field(default_factory=list)

    @property
    def page_url(self) -> str:
        return self.banner["agent page"]

    @property
    def page_token(self) -> str:
        return parse_qs(urlsplit(self.page_url).fragment)["token"][0]

    @property
    def page_session(self) -> str:
        return str(tokens.verify(self.page_token, TOKEN_SECRET).sub)

    @property
    def ports(self) -> list[int]:
        """The relay, webhook and DynamoDB ports, from the printed URLs."""
        urls = [self.banner["relay"], self.banner["webhook URL"], self.banner["DynamoDB"]]
        return [int(urlsplit(url.split()[0]).port or 0) for url in urls]

    def env(self) -> dict[str, str]:
        """What a second terminal needs to read the local table."""
        return {"AWS_ENDPOINT_URL_DYNAMODB": self.banner["DynamoDB"].split()[0]}

    def profile_env(self) -> dict[str, str]:
        """A second terminal with no flags and no AWS settings: only the dev profile."""
        return {"VOICEBOT_DEV_PROFILE": str(self.profile)}


def dev_env(profile: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLI_ENV_UNSET}
    profile = profile or PROFILE_DIR / f"{time.monotonic_ns()}.json"
    env.update(PYTHONUNBUFFERED="1", VOICEBOT_DEV_PROFILE=str(profile), **extra)
    return env


def pump(stream: Any, into: queue.Queue[str | None]) -> None:
    with stream:
        for line in stream:
            into.put(line.rstrip("\n"))
    into.put(None)


def collect(stream: Any, into: list[str]) -> None:
    with stream:
        into.extend(line.rstrip("\n") for line in stream)


def start_dev(
    args: list[str], env: dict[str, str]
) -> tuple[subprocess.Popen[str], queue.Queue[str | None], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "dev", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    stderr: list[str] = []
    threading.Thread(target=pump, args=(proc.stdout, lines), daemon=True).start()
    threading.Thread(target=collect, args=(proc.stderr, stderr), daemon=True).start()
    return proc, lines, stderr


def descendants(pid: int) -> set[int]:
    """PIDs of every live descendant of ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def is_running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def read_banner(
    proc: subprocess.Popen[str], lines: queue.Queue[str | None], profile: Path, stderr: list[str]
) -> DevRun:
    """Read `voicebot dev`'s stdout up to the end of its banner."""
    run = DevRun(proc=proc, stdout=[], profile=profile, stderr=stderr)
    deadline = time.monotonic() + 6 * TIMEOUT
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"no banner in time; stderr: {stderr[-20:]}")
        if line is None:
            pytest.fail(f"voicebot dev exited {proc.wait()}; stderr: {stderr[-20:]}")
        run.stdout.append(line)
        match = re.match(r"^  ([a-zA-Z ]+):\s+(\S.*)$", line)
        if match:
            run.banner[match.group(1)] = match.group(2)
        elif line.startswith("  voicebot webhook send-sample"):
            run.banner["send-sample"] = line.strip()
        elif line.startswith("  voicebot "):
            run.watch.append(line.strip())
        if BANNER_END.match(line):
            return run


def stop_dev(proc: subprocess.Popen[str], signum: int = signal.SIGINT) -> None:
    """Stop a `voicebot dev` still running, and anything it left (even if a test failed)."""
    if proc.poll() is None:
        pids = descendants(proc.pid)
        proc.send_signal(signum)
        try:
            proc.wait(timeout=3 * TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pid in pids:
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running_dev(**extra: str) -> Iterator[DevRun]:
    """`voicebot dev` on free ports with a known token secret, from its banner until stopped."""
    ports = [str(free_port()) for _ in range(3)]
    profile = PROFILE_DIR / f"{time.monotonic_ns()}.json"
    proc, lines, stderr = start_dev(
        ["--relay-port", ports[0], "--webhook-port", ports[1], "--dynamodb-port", ports[2]],
        dev_env(profile, RELAY_TOKEN_SECRET=TOKEN_SECRET, **extra),
    )
    try:
        yield read_banner(proc, lines, profile, stderr)
    finally:
        stop_dev(proc)


@pytest.fixture(scope="module", autouse=True)
def _remove_profiles() -> Iterator[None]:
    """The profiles this module's runs wrote go when it is done."""
    yield
    shutil.rmtree(PROFILE_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def dev() -> Iterator[DevRun]:
    """One `voicebot dev` for the module's read-only tests (the last one stops it)."""
    with running_dev() as run:
        yield run


def test_every_printed_url_answers(dev: DevRun):
    """The agent page, webhook endpoint, DynamoDB server and model URLs all answer."""
    with httpx.Client(timeout=TIMEOUT) as http:
        page = http.get(dev.page_url)
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        # The receiver only accepts POSTs; any answer but a server error proves it is there.
        assert http.get(dev.banner["webhook URL"]).status_code < 500
        assert http.get(dev.banner["DynamoDB"].split()[0]).status_code < 500
        model = re.search(r"\((ws://\S+)\)", dev.banner["model"])
        assert model is not None, dev.banner["model"]
        stats = model.group(1).replace("ws://", "http://").replace("/v1/realtime", "/_sim/sessions")
        assert http.get(stats).status_code == 200
    assert dev.banner["relay"].startswith("ws://127.0.0.1:")
    assert dev.banner["webhook secret"].startswith("whsec_")
    claims = tokens.verify(dev.page_token, TOKEN_SECRET)  # RELAY_TOKEN_SECRET was honoured
    assert claims.sub.startswith("dev-")


def pcm_frames(loud_ms: int, quiet_ms: int) -> list[str]:
    """Base64 PCM16 24 kHz mono in 20 ms frames: a loud tone, then silence."""
    frames = []
    for index in range((loud_ms + quiet_ms) // 20):
        loud = index * 20 < loud_ms
        samples = [
            int(12000 * math.sin(2 * math.pi * 220 * n / 24000)) if loud else 0 for n in range(480)
        ]
        frames.append(
            base64.b64encode(
                b"".join(s.to_bytes(2, "little", signed=True) for s in samples)
            ).decode()
        )
    return frames


async def talk(relay_ws: str, token: str) -> list[str]:
    """One conversation turn through the relay; returns the event types received."""
    seen: list[str] = []

    async def until(ws: Any, wanted: str) -> dict[str, Any]:
        async with asyncio.timeout(3 * TIMEOUT):
            while True:
                event: dict[str, Any] = json.loads(await ws.recv())
                seen.append(event["type"])
                if event["type"] == wanted:
                    return event

    async with connect(
        relay_ws,
        additional_headers={"Authorization": f"Bearer {token}"},
        compression=None,
        open_timeout=TIMEOUT,
    ) as ws:
        await until(ws, "session.created")
        await until(ws, "session.updated")
        for frame in pcm_frames(loud_ms=700, quiet_ms=900):
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": frame}))
        delta = await until(ws, "response.output_audio.delta")
        assert base64.b64decode(delta["delta"])
        await until(ws, "response.done")
    return seen


async def test_session_through_relay_and_simulator(dev: DevRun):
    """A Realtime client with the printed token gets session events and audio back."""
    seen = await talk(dev.banner["relay"], dev.page_token)

    assert seen[0] == "session.created"
    assert "input_audio_buffer.speech_started" in seen
    assert "response.output_audio.delta" in seen


async def test_local_agent_is_the_repositorys_agent_yaml(dev: DevRun):
    """`make dev` talks like the deployment: the relay applies relay_container/agent.yaml."""
    agent = yaml.safe_load((ROOT / "relay_container" / "agent.yaml").read_text())
    async with connect(
        dev.banner["relay"],
        additional_headers={"Authorization": f"Bearer {dev.page_token}"},
        compression=None,
        open_timeout=TIMEOUT,
    ) as ws:
        async with asyncio.timeout(3 * TIMEOUT):
            while (event := json.loads(await ws.recv()))["type"] != "session.updated":
                pass
    assert event["session"]["instructions"] == agent["instructions"]
    assert event["session"]["audio"]["output"]["voice"] == agent["voice"]


def test_printed_sample_webhook_command_is_stored(dev: DevRun):
    """The printed send-sample command delivers a signed webhook the webhook app stores."""
    argv = shlex.split(dev.banner["send-sample"])
    assert argv[:3] == ["voicebot", "webhook", "send-sample"]
    result = run_cli([*argv[1:], "--bot-id", "sample-bot-1"])
    assert result.exit_code == 0, result.output
    assert "HTTP 200" in result.stdout or "HTTP 20" in result.stdout

    shown = run_cli(["bot", "show", "sample-bot-1", "--table", "voicebot-dev", "--json"], dev.env())
    assert shown.exit_code == 0, shown.output
    bot = json.loads(shown.stdout)
    assert bot["bot"]["status"] == "in_call_recording"
    assert [e["event"] for e in bot["events"]] == ["bot.in_call_recording"]


def test_unsigned_webhook_is_refused(dev: DevRun):
    """A sample signed with another secret is refused, and send-sample says so on one line."""
    other = "whsec_" + base64.b64encode(b"x" * 24).decode()
    result = run_cli(["webhook", "send-sample", dev.banner["webhook URL"], "--secret", other])
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {dev.banner['webhook URL']} answered 401")


def deliver(dev: DevRun, event: dict[str, Any]) -> None:
    """A signed delivery of ``event`` (Standard Webhooks, by the standardwebhooks library)."""
    from standardwebhooks.webhooks import Webhook

    body = json.dumps(event)
    webhook_id = f"msg_{os.urandom(8).hex()}"
    now = datetime.now(UTC)
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(dev.banner["webhook secret"]).sign(webhook_id, now, body),
        "content-type": "application/json",
    }
    answer = httpx.post(dev.banner["webhook URL"], content=body, headers=headers, timeout=TIMEOUT)
    assert answer.status_code < 300, answer.text


def status_event(
    bot_id: str, code: str, updated_at: str, sub_code: str | None = None
) -> dict[str, Any]:
    return {
        "event": f"bot.{code}",
        "data": {
            "data": {"code": code, "sub_code": sub_code, "updated_at": updated_at},
            "bot": {"id": bot_id, "metadata": {}},
        },
    }


@pytest.fixture
def fake_recall_for(dev: DevRun) -> Iterator[FakeRecall]:
    fake = FakeRecall()
    fake.start()
    try:
        yield fake
    finally:
        fake.close()


async def test_bot_show_tells_the_whole_story(dev: DevRun, fake_recall_for: FakeRecall):
    """After create, webhooks and a relay session, bot show has state, timeline and transcript."""
    # Given a bot created through the fake Recall, recorded in the local table, whose
    # first webhook (in_call_recording) raced ahead of the CLI's record.
    bot_id = "bot-story-1"
    now = datetime.now(UTC)
    at = {n: (now + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ") for n in (-5, 0, 1)}
    deliver(dev, status_event(bot_id, "in_call_recording", at[0]))
    fake_recall_for.script(Answer(201, {"id": bot_id}))
    env = {
        **dev.env(),
        "RECALL_API_KEY": RECALL_KEY,
        "RECALL_API_BASE": fake_recall_for.url,
        "RELAY_TOKEN_SECRET": TOKEN_SECRET,
        "RECALL_REGION": "eu-central-1",
    }
    created = run_cli(
        [
            "bot",
            "create",
            "--meeting-url",
            "https://zoom.us/j/123456789",
            "--name",
            "Story",
            "--page-url",
            dev.page_url.split("?")[0],
            "--table",
            "voicebot-dev",
            "--json",
        ],
        env,
    )
    assert created.exit_code == 0, created.output
    session_id = json.loads(created.stdout)["session_id"]
    page = fake_recall_for.requests[0].body["output_media"]["camera"]["config"]["url"]
    bot_token = parse_qs(urlsplit(page).fragment)["token"][0]

    # When the page's session runs through the relay, and more webhooks arrive (one late).
    await talk(dev.banner["relay"], bot_token)
    deliver(dev, status_event(bot_id, "joining_call", at[-5]))  # late: must not regress
    deliver(dev, status_event(bot_id, "call_ended", at[1], "call_ended_by_host"))

    # Then bot show has everything, and status never moved backwards.
    def shown() -> dict[str, Any] | None:
        result = run_cli(["bot", "show", bot_id, "--table", "voicebot-dev", "--json"], dev.env())
        assert result.exit_code == 0, result.output
        data: dict[str, Any] = json.loads(result.stdout)
        done = data["connections"] and data["connections"][0].get("ended_at") and data["turns"]
        return data if done else None

    data = poll(shown, "relay records")
    bot = data["bot"]
    assert bot["status"] == "call_ended"
    assert bot["sub_code"] == "call_ended_by_host"
    assert bot["session_id"] == session_id
    assert bot["region"] == "eu-central-1"
    assert bot["bot_name"] == "Story"
    assert [e["event"] for e in data["events"]] == [
        "bot.joining_call",
        "bot.in_call_recording",
        "bot.call_ended",
    ]
    [connection] = data["connections"]  # written by the relay itself
    assert connection["session_id"] == session_id
    assert connection["close_code"] == 1000
    assert connection["usage"]["total_tokens"] > 0
    assert {t["role"] for t in data["turns"]} == {"user", "assistant"}

    human = run_cli(["bot", "show", bot_id, "--table", "voicebot-dev"], dev.env())
    assert human.exit_code == 0
    assert re.search(r"^status\s+call_ended$", human.stdout, re.M)
    assert "Events (3)" in human.stdout
    assert "Relay sessions (1)" in human.stdout
    assert re.search(r"^\s+(\S+ ago|just now)\s+user\s+\(heard", human.stdout, re.M)

    listed = run_cli(["bots", "--table", "voicebot-dev", "--json"], dev.env())
    assert listed.exit_code == 0, listed.output
    assert bot_id in [b["bot_id"] for b in json.loads(listed.stdout)]
    table = run_cli(["bots", "--table", "voicebot-dev"], dev.env())
    header = table.stdout.splitlines()[0]
    assert header.split() == [
        "BOT",
        "ID",
        "STATUS",
        "SUB",
        "CODE",
        "NAME",
        "REGION",
        "CREATED",
        "UPDATED",
    ]
    print(human.stdout, table.stdout, sep="\n")  # shown with -s: what a user reads
    row = next(line for line in table.stdout.splitlines() if line.startswith(bot_id))
    assert row.index("call_ended") == header.index("STATUS")  # aligned columns


def test_unknown_bot_is_one_line(dev: DevRun):
    """bot show of a bot never seen says so on one line."""
    result = run_cli(["bot", "show", "no-such-bot", "--table", "voicebot-dev"], dev.env())
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: no bot no-such-bot in table voicebot-dev"


#: A stand-in for a stack left running: a process that holds a port and says so.
PORT_HOLDER = (
    "import socket, sys, time\n"
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
    "print(s.getsockname()[1], flush=True)\n"
    "time.sleep(600)\n"
)


def test_port_in_use_names_the_process_holding_it():
    """A port already taken makes `voicebot dev` exit at once, naming the process and the flag."""
    holder = subprocess.Popen(
        [sys.executable, "-c", PORT_HOLDER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        port = int(holder.stdout.readline())
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli",
                "dev",
                "--webhook-port",
                str(port),
                "--relay-port",
                str(free_port()),
                "--dynamodb-port",
                str(free_port()),
            ],
            cwd=ROOT,
            env=dev_env(),
            capture_output=True,
            text=True,
            timeout=3 * TIMEOUT,
        )
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(
        f"error: port {port} on 127.0.0.1 is already in use by pid {holder.pid} ("
    )
    assert "python" in errors[0]
    assert "-c import socket" in errors[0]
    assert errors[0].endswith(f"; stop it (kill {holder.pid}) or pick another with --webhook-port")
    assert "Traceback" not in result.stderr


def test_missing_dependency_is_one_line_error():
    """A module the local stack needs that cannot be imported is one error line."""
    code = "import sys; sys.modules['uvicorn'] = None; from cli.main import main; main()"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "dev",
            "--relay-port",
            str(free_port()),
            "--webhook-port",
            str(free_port()),
            "--dynamodb-port",
            str(free_port()),
        ],
        cwd=ROOT,
        env=dev_env(),
        capture_output=True,
        text=True,
        timeout=3 * TIMEOUT,
    )
    assert result.returncode == 1
    assert "error: missing dependency: uvicorn (install with: pip install -e" in result.stderr
    assert "Traceback" not in result.stderr


def test_child_that_dies_is_reported_with_its_output():
    """A relay that cannot start is reported with its last lines, and nothing is left running."""
    ports = [str(free_port()) for _ in range(3)]
    proc, _, stderr = start_dev(
        ["--relay-port", ports[0], "--webhook-port", ports[1], "--dynamodb-port", ports[2]],
        dev_env(RELAY_MAX_SESSIONS="lots"),  # the relay refuses this configuration
    )
    pids: set[int] = set()
    deadline = time.monotonic() + 6 * TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        pids |= descendants(proc.pid)
        time.sleep(0.05)
    assert proc.wait(timeout=TIMEOUT) == 1
    text = "\n".join(stderr)
    assert "error: relay exited with code 2; its last lines:" in text
    assert "RELAY_MAX_SESSIONS" in text
    assert pids
    assert [pid for pid in pids if is_running(pid)] == []


def test_no_flags_needed_while_dev_runs(dev: DevRun):
    """With only the dev profile, `bots`, `transcript` and `bot show` reach the local stack
    and show the agent page's conversation."""
    # Given a conversation on the agent page's own token (what the browser page does).
    asyncio.run(talk(dev.banner["relay"], dev.page_token))
    session = dev.page_session
    assert f"voicebot transcript {session}" in dev.watch
    assert dev.profile.stat().st_mode & 0o077 == 0  # owner-only

    # Then `bots` lists it, with no --table, no AWS endpoint and no region.
    listed = run_cli(["bots", "--json"], dev.profile_env())
    assert listed.exit_code == 0, listed.output
    assert session in [b["bot_id"] for b in json.loads(listed.stdout)]
    assert "the local stack of voicebot dev" in listed.stderr

    def turns() -> list[dict[str, Any]] | None:
        result = run_cli(["transcript", session, "--json"], dev.profile_env())
        assert result.exit_code == 0, result.output
        found: list[dict[str, Any]] = json.loads(result.stdout)
        return found if {t["role"] for t in found} >= {"user", "assistant"} else None

    poll(turns, "the page's turns in the local table")
    text = run_cli(["transcript", session], dev.profile_env())
    assert re.search(r"^\d\d:\d\d:\d\d  user\s+\(heard \d", text.stdout, re.M), text.stdout
    assert re.search(r"^\d\d:\d\d:\d\d  assistant\s+\S", text.stdout, re.M), text.stdout
    shown = run_cli(["bot", "show", session], dev.profile_env())
    assert shown.exit_code == 0, shown.output
    assert re.search(r"^Relay sessions \([1-9]\d*\)$", shown.stdout, re.M), shown.stdout
    assert "agent page (voicebot dev)" in shown.stdout


def test_a_named_stack_is_not_the_dev_stack(dev: DevRun):
    """--stack means the deployed stack: the dev profile does not answer for it."""
    result = run_cli(["bots", "--stack", "SomeStack"], dev.profile_env())
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot read stack 'SomeStack'")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"[1, 2]",
        b'{"pid": 1}',
        b"x" * 100_000,
        json.dumps(
            {
                "pid": os.getpid(),
                "table_name": "t",
                "dynamodb_url": "http://198.51.100.7:8001",
                "region": "us-east-1",
                "relay_url": "http://127.0.0.1:1/",
                "webhook_url": "http://127.0.0.1:2/",
                "page_session": "dev-x",
            }
        ).encode(),
    ],
    ids=["empty", "malformed", "not-an-object", "missing-fields", "oversized", "remote-endpoint"],
)
def test_a_bad_profile_is_no_profile(tmp_path: Path, content: bytes):
    """A profile that is not one `voicebot dev` wrote is ignored: the command asks for a stack."""
    profile = tmp_path / "dev.json"
    profile.write_bytes(content)
    result = run_cli(["bots"], {"VOICEBOT_DEV_PROFILE": str(profile)})
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot read stack 'RecallVoiceAgent'")


def test_a_profile_left_by_a_dead_run_is_no_profile(tmp_path: Path):
    """A profile whose writer is gone (kill -9) never points a command at a dead stack."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    profile = tmp_path / "dev.json"
    profile.write_text(
        json.dumps(
            {
                "pid": gone.pid,
                "table_name": "voicebot-dev",
                "dynamodb_url": "http://127.0.0.1:9",
                "region": "us-east-1",
                "relay_url": "http://127.0.0.1:1/",
                "webhook_url": "http://127.0.0.1:2/",
                "page_session": "dev-x",
            }
        )
    )
    result = run_cli(["bots"], {"VOICEBOT_DEV_PROFILE": str(profile)})
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot read stack 'RecallVoiceAgent'")


def ports_free(ports: list[int]) -> bool:
    """Whether every port can be bound again (as `voicebot dev` checks at start)."""
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


@pytest.mark.parametrize(
    ("signum", "orderly"),
    [(signal.SIGHUP, True), (signal.SIGTERM, True), (signal.SIGKILL, False)],
    ids=["SIGHUP-terminal-closed", "SIGTERM", "SIGKILL-no-cleanup-possible"],
)
def test_stopping_signal_leaves_no_process_and_frees_ports(signum: int, orderly: bool):
    """A closed terminal, a kill, even a kill -9: every child exits and the ports are free."""
    with running_dev() as run:
        pids = descendants(run.proc.pid)
        assert len(pids) >= 4, pids
        assert run.profile.exists()

        run.proc.send_signal(signum)

        code = run.proc.wait(timeout=3 * TIMEOUT)
        assert code == (0 if orderly else -signal.SIGKILL)
        poll(lambda: not [pid for pid in pids if is_running(pid)], "every child to exit")
        assert ports_free(run.ports)
        if orderly:
            assert not run.profile.exists()  # removed by the run that wrote it


def test_closed_stdout_stops_the_stack():
    """`voicebot dev | tee log` and Ctrl-C: once nobody reads its output, the stack stops."""
    ports = [str(free_port()) for _ in range(3)]
    profile = PROFILE_DIR / f"{time.monotonic_ns()}.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "dev",
            "--relay-port",
            ports[0],
            "--webhook-port",
            ports[1],
            "--dynamodb-port",
            ports[2],
        ],
        cwd=ROOT,
        env=dev_env(profile),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr: list[str] = []
    threading.Thread(target=collect, args=(proc.stderr, stderr), daemon=True).start()
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 6 * TIMEOUT
        line = ""
        while not BANNER_END.match(line):  # the whole banner, then the reader goes away
            line = proc.stdout.readline()
            assert line, f"voicebot dev exited early: {stderr[-20:]}"
            assert time.monotonic() < deadline, "no banner in time"
        pids = descendants(proc.pid)

        proc.stdout.close()

        assert proc.wait(timeout=3 * TIMEOUT) == 0
        poll(lambda: not [pid for pid in pids if is_running(pid)], "every child to exit")
        assert ports_free([int(p) for p in ports])
        assert any("stdout closed" in line for line in stderr), stderr
    finally:
        stop_dev(proc)


def test_sigint_stops_every_child(dev: DevRun):
    """Ctrl-C (SIGINT) stops the stack within a few seconds and leaves no process behind."""
    pids = descendants(dev.proc.pid)
    assert len(pids) >= 4, pids  # moto, webhooks, simulator, relay

    dev.proc.send_signal(signal.SIGINT)

    assert dev.proc.wait(timeout=3 * TIMEOUT) == 0
    assert [pid for pid in pids if is_running(pid)] == []
    assert any("stopped" in line for line in dev.stderr)
