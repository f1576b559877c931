"""``voicebot dev``: the whole stack as child processes on 127.0.0.1, started and stopped cleanly.

Owns the lifecycle of five children, each in its own process group so that a terminal's
Ctrl-C reaches only us and we stop them in order: moto's DynamoDB-compatible server (the
table created from ``storage.schema``), the webhook app under uvicorn with a generated dev
``whsec_`` secret, the simulated Realtime model (unless an OpenAI key is given), the
relay pointing at it with a generated token secret, and the minutes pipeline
(``functions.minutes.local``: the table's stream polled, minutes built when a bot is done
or a session's last connection has been closed for 30 s). Each is awaited with a deadline; a
child that dies is reported with the last lines of its output. Stopping sends SIGTERM to
every group, then SIGKILL after a grace period, so no process is left behind; on Linux each
child also gets SIGTERM from the kernel if ``voicebot dev`` itself dies without stopping it
(``PR_SET_PDEATHSIG``), so even a ``kill -9`` leaves no orphan holding a port. A port that
is taken at start is reported with the process holding it (from ``/proc``), since that is
usually a stack left running by an earlier run.
It does not print the stack's banner (the command does) and never logs a secret.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import importlib.util
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

import boto3
import httpx
import yaml

from cli.errors import LocalStackError
from cli.meeting_replay import MeetingScript, agent_overrides, spoken_lines
from cli.stack import AWS_FAILURES, describe_aws_error
from storage import schema

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

HOST: Final = "127.0.0.1"
DEFAULT_RELAY_PORT: Final = 8080
DEFAULT_WEBHOOK_PORT: Final = 8000
DEFAULT_DYNAMODB_PORT: Final = 8001
TABLE_NAME: Final = "voicebot-dev"
#: The agent the deployed relay runs (its image carries this file); used when the checkout
#: has it and AGENT_CONFIG is not set, so `make dev` talks like the deployment.
REPOSITORY_AGENT_CONFIG: Final = (
    Path(__file__).resolve().parents[1] / "relay_container" / "agent.yaml"
)
#: Lines of each child's output kept to explain an early death.
TAIL_LINES: Final = 30
#: What the simulator prints once it accepts connections (its documented ready line).
SIMULATOR_READY: Final = re.compile(r"simulator listening on (ws://\S+)")
#: What the minutes pipeline prints once it watches the stream (functions.minutes.local).
MINUTES_READY: Final = re.compile(r"(minutes: watching the table's stream)")
#: A page's session builds its minutes after this long with no connection (AWS: 120 s).
DEV_MINUTES_GRACE_SECONDS: Final = "30"
#: Fake credentials for the local server, so no child can reach a real account.
LOCAL_AWS_ENV: Final[Mapping[str, str]] = {
    "AWS_ACCESS_KEY_ID": "dev",
    "AWS_SECRET_ACCESS_KEY": "dev",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
#: Inherited variables that would point a child at a real account or another secret.
DROPPED_ENV: Final = frozenset(
    {"AWS_PROFILE", "AWS_SESSION_TOKEN", "RECALL_WEBHOOK_SECRET_ARN", "AWS_ENDPOINT_URL"}
)


def dev_webhook_secret() -> str:
    """A fresh Standard Webhooks secret (``whsec_`` + base64 of 24 random bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def dev_token_secret() -> str:
    """A fresh relay token secret, well above the 32-byte minimum."""
    return secrets.token_urlsafe(48)


@dataclass(frozen=True, slots=True)
class DevConfig:
    """What ``voicebot dev`` runs with; flags fill it in."""

    relay_port: int = DEFAULT_RELAY_PORT
    webhook_port: int = DEFAULT_WEBHOOK_PORT
    dynamodb_port: int = DEFAULT_DYNAMODB_PORT
    openai_api_key: str | None = None
    #: Use this relay token secret (so `voicebot token mint` works against the local relay).
    relay_token_secret: str | None = None
    environ: Mapping[str, str] = field(default_factory=dict)
    table_name: str = TABLE_NAME
    ready_timeout: float = 60.0
    stop_timeout: float = 5.0
    verbose: bool = False
    python: str = sys.executable
    #: The simulated model calls this declared tool after every spoken turn (a way to try
    #: a relay tool without a real model: audio carries no words the simulator can read).
    simulator_tool: str | None = None
    #: A scripted meeting to replay (``--meeting``): the simulator transcribes its spoken
    #: lines in order, and the relay runs with the script's turn_taking/chat keys.
    meeting: MeetingScript | None = None


@dataclass(frozen=True, slots=True)
class DevEndpoints:
    """Where the running stack answers (secrets included: the banner shows them)."""

    dynamodb_url: str
    table_name: str
    webhook_url: str
    webhook_secret: str
    relay_http_url: str
    relay_ws_url: str
    relay_token_secret: str
    model_url: str | None  # the simulator, or None for OpenAI


class Interrupted(Exception):  # a control-flow signal, not an error shown to users
    """Stopping was requested while the stack was starting."""


#: prctl(2) option: the signal a child gets when the thread that forked it exits.
PR_SET_PDEATHSIG: Final = 1


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to SIGTERM the child when we die (else ``None``).

    The libc handle is looked up here, before any fork, so the function the child runs
    between fork and exec is one foreign call that takes no Python-level lock.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_death_signal() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return set_death_signal


class Child:
    """One child process in its own process group, its output drained into a bounded tail."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        echo: Callable[[str], None] | None = None,
    ) -> None:
        """Start ``argv`` now; stdout and stderr are merged and drained by a thread."""
        self.name = name
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._lines = threading.Condition()
        self._echo = echo
        self.popen = subprocess.Popen(
            argv,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: a terminal Ctrl-C reaches only us
            # Created on the main thread, which lives as long as `voicebot dev` does.
            preexec_fn=_parent_death_signal(),
        )
        self.pid = self.popen.pid
        assert self.popen.stdout is not None
        self._reader = threading.Thread(
            target=self._drain, args=(self.popen.stdout,), name=f"drain-{name}", daemon=True
        )
        self._reader.start()

    def _drain(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            with self._lines:
                self.tail.append(line)
                self._lines.notify_all()
            if self._echo is not None:
                self._echo(f"[{self.name}] {line}")
        stream.close()

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None

    def death_report(self) -> str:
        """``name exited with code N`` and the last lines it printed."""
        self._reader.join(timeout=1.0)
        lines = list(self.tail)[-12:]
        shown = "\n".join(f"    {line}" for line in lines) if lines else "    (no output)"
        return f"{self.name} exited with code {self.popen.returncode}; its last lines:\n{shown}"

    def wait_for_line(
        self, pattern: re.Pattern[str], deadline: float, stop: threading.Event
    ) -> str:
        """The first group of the first output line matching ``pattern``."""
        while True:
            with self._lines:
                for line in self.tail:  # at most TAIL_LINES; the ready line comes early
                    match = pattern.search(line)
                    if match:
                        return match.group(1)
                self._lines.wait(timeout=0.1)
            check_progress(self, deadline, stop, "print that it is ready")

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the child's whole process group, if any of it is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def stop(self, timeout: float) -> None:
        """SIGTERM the group, wait up to ``timeout``, then SIGKILL what remains."""
        self.signal_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=timeout)
        # Also reaps stragglers the leader may have left in its group.
        self.signal_group(signal.SIGKILL)
        self.popen.wait()
        self._reader.join(timeout=1.0)


def check_progress(child: Child, deadline: float, stop: threading.Event, doing: str) -> None:
    """Raise if stopping was requested, the child died, or the deadline passed."""
    if stop.is_set():
        raise Interrupted
    if not child.alive:
        raise LocalStackError(child.death_report())
    if time.monotonic() > deadline:
        raise LocalStackError(f"{child.name} did not {doing} in time")


def missing_dependencies(with_simulator: bool) -> list[str]:
    """Modules the local stack needs that cannot be found."""
    needed = [
        "moto.server",
        "flask",  # moto's server mode
        "uvicorn",
        "fastapi",
        "mangum",
        "aws_lambda_powertools",
        "functions.webhooks.app",
        "websockets",
        "jwt",
        "relay.__main__",
    ]
    if with_simulator:
        needed.append("relay.simulator")
    missing = []
    for module in needed:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    return missing


def check_ports(ports: Mapping[str, int]) -> None:
    """Refuse duplicate ports and ports something already listens on, naming the flag."""
    seen: dict[int, str] = {}
    for flag, port in ports.items():
        if port in seen:
            raise LocalStackError(f"{flag} and {seen[port]} are both {port}; pick distinct ports")
        seen[port] = flag
        with socket.socket() as sock:
            # Servers set SO_REUSEADDR, so a port in TIME_WAIT is usable: test the same way.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((HOST, port))
            except OSError:
                owner = port_owner(port)
                held = f" by pid {owner[0]} ({owner[1]})" if owner else ""
                stop = f"stop it (kill {owner[0]}) or " if owner else ""
                raise LocalStackError(
                    f"port {port} on {HOST} is already in use{held}; {stop}pick another with {flag}"
                ) from None


#: Longest command line shown for a process holding a port.
MAX_COMMAND_CHARS: Final = 80


def port_owner(port: int, proc: Path = Path("/proc")) -> tuple[int, str] | None:
    """The pid and command line of a process of ours listening on TCP ``port`` (Linux).

    ``None`` where ``/proc`` cannot tell (another user's process, another OS).
    """
    inodes: set[str] = set()
    for table in ("net/tcp", "net/tcp6"):
        try:
            rows = (proc / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the inode.
            if len(fields) > 9 and fields[3] == "0A":
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port:
                    inodes.add(fields[9])
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(_link(fd) in wanted for fd in (entry / "fd").iterdir()):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                command = " ".join(" ".join(a.decode(errors="replace").split()) for a in argv)
                command = command.strip()
                if len(command) > MAX_COMMAND_CHARS:
                    command = command[: MAX_COMMAND_CHARS - 1] + "…"
                return int(entry.name), command or "?"
        except OSError:
            continue
    return None


def _link(path: Path) -> str | None:
    """Where a ``/proc/PID/fd`` entry points; ``None`` if it closed meanwhile."""
    try:
        return os.readlink(path)
    except OSError:
        return None


def create_table(client: DynamoDBClient, name: str) -> None:
    """The application table from ``storage.schema`` (same keys, index and TTL as deployed)."""
    client.create_table(**schema.create_table_request(name))
    client.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": schema.TTL_ATTRIBUTE},
    )


class LocalStack:
    """The running children, in start order; ``stop()`` leaves none behind."""

    def __init__(
        self, config: DevConfig, stop: threading.Event, progress: Callable[[str], None]
    ) -> None:
        """Prepare (nothing runs until ``start``); ``stop`` set means stop waiting."""
        self.config = config
        self.children: list[Child] = []
        self._stop = stop
        self._progress = progress
        self._workdir: Path | None = None

    # Lifecycle

    def start(self) -> DevEndpoints:
        """Start every child and wait until each answers.

        Raises:
            LocalStackError: a port in use, a missing module, a child that died or hung.
            Interrupted: ``stop`` was set meanwhile (the caller still calls ``stop()``).
        """
        config = self.config
        with_simulator = not config.openai_api_key
        missing = missing_dependencies(with_simulator)
        if missing:
            raise LocalStackError(
                f"missing dependency: {', '.join(missing)} "
                "(install with: pip install -e '.[cli,webhooks,relay]')"
            )
        check_ports(
            {
                "--relay-port": config.relay_port,
                "--webhook-port": config.webhook_port,
                "--dynamodb-port": config.dynamodb_port,
            }
        )
        dynamodb_url = f"http://{HOST}:{config.dynamodb_port}"
        webhook_secret = dev_webhook_secret()
        token_secret = config.relay_token_secret or dev_token_secret()
        base = self._base_env(dynamodb_url)

        # Start what depends on nothing at once (the machine may be slow), then wait.
        # 1. DynamoDB-compatible server, the webhook app (it reads the table per request)
        #    and the simulated model.
        moto = self._spawn(
            "dynamodb",
            [config.python, "-m", "moto.server", "-H", HOST, "-p", str(config.dynamodb_port)],
            base,
        )
        webhook_env = {
            **base,
            "RECALL_WEBHOOK_SECRET": webhook_secret,
            "POWERTOOLS_SERVICE_NAME": "webhooks",
            "POWERTOOLS_METRICS_NAMESPACE": "RecallVoiceAgent/Dev",
        }
        webhooks = self._spawn(
            "webhooks",
            [
                config.python,
                "-m",
                "uvicorn",
                "functions.webhooks.app:app",
                "--host",
                HOST,
                "--port",
                str(config.webhook_port),
                "--no-access-log",
            ],
            webhook_env,
        )
        simulator = None
        if with_simulator:
            command = [config.python, "-m", "relay.simulator", "--host", HOST, "--port", "0"]
            if config.simulator_tool:
                command += ["--call-on-speech", config.simulator_tool]
            if config.meeting is not None:
                command += ["--transcripts", str(self._meeting_file("transcripts.txt"))]
            simulator = self._spawn("simulator", command, base)

        # 2. The table, once the server listens.
        self._wait_for_port(moto, config.dynamodb_port)
        self._create_table(dynamodb_url)

        # 2b. The minutes pipeline (make dev's stand-in for the stream and queue Lambdas).
        minutes = self._spawn(
            "minutes",
            [config.python, "-m", "functions.minutes.local"],
            {**base, "SESSION_END_GRACE_SECONDS": DEV_MINUTES_GRACE_SECONDS},
        )

        # 3. The relay, pointing at the simulator (once it says where) or at OpenAI.
        relay_env = {
            **base,
            "PORT": str(config.relay_port),
            # Any free port: the owner registry records it (a second relay needs no setting).
            "RELAY_INTERNAL_PORT": "0",
            "RELAY_HOST": HOST,
            "RELAY_TOKEN_SECRET": token_secret,
            "DRAIN_SECONDS": "2",  # Ctrl-C should not wait for a 90 s production drain
            # Recall signs its real-time events websocket with the workspace secret, the one
            # that signs its webhooks: here, the dev secret the webhook app checks.
            "RECALL_WEBHOOK_SECRET": webhook_secret,
        }
        if "AGENT_CONFIG" not in relay_env and REPOSITORY_AGENT_CONFIG.is_file():
            relay_env["AGENT_CONFIG"] = str(REPOSITORY_AGENT_CONFIG)
        if config.meeting is not None and agent_overrides(config.meeting):
            relay_env["AGENT_CONFIG"] = str(self._meeting_agent(relay_env.get("AGENT_CONFIG")))
        model_url: str | None = None
        if simulator is not None:
            model_url = simulator.wait_for_line(
                SIMULATOR_READY, time.monotonic() + config.ready_timeout, self._stop
            )
            relay_env["OPENAI_REALTIME_URL"] = model_url
            relay_env["OPENAI_API_KEY"] = "sk-simulator-not-a-key"
        else:
            relay_env["OPENAI_API_KEY"] = config.openai_api_key or ""
        relay = self._spawn("relay", [config.python, "-m", "relay"], relay_env)

        # 4. Both HTTP servers answer.
        webhook_base = f"http://{HOST}:{config.webhook_port}"
        relay_base = f"http://{HOST}:{config.relay_port}"
        self._wait_for_health(webhooks, f"{webhook_base}/healthz")
        self._wait_for_health(relay, f"{relay_base}/healthz")
        minutes.wait_for_line(MINUTES_READY, time.monotonic() + config.ready_timeout, self._stop)
        return DevEndpoints(
            dynamodb_url=dynamodb_url,
            table_name=config.table_name,
            webhook_url=f"{webhook_base}/webhooks/recall",
            webhook_secret=webhook_secret,
            relay_http_url=f"{relay_base}/",
            relay_ws_url=f"ws://{HOST}:{config.relay_port}/v1/realtime",
            relay_token_secret=token_secret,
            model_url=model_url,
        )

    def first_dead(self) -> Child | None:
        """A child that has exited, if any."""
        return next((c for c in self.children if not c.alive), None)

    def stop(self) -> None:
        """Stop every child: the servers first, the DynamoDB server last (they write to it)."""
        servers = [c for c in reversed(self.children) if c.name != "dynamodb"]
        for child in servers:
            child.signal_group(signal.SIGTERM)
        for child in servers:
            child.stop(self.config.stop_timeout)
        for child in self.children:
            if child.name == "dynamodb":
                child.stop(self.config.stop_timeout)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    # Private

    def _meeting_file(self, name: str) -> Path:
        """The scripted meeting's spoken lines, for the simulator (in a private temp dir)."""
        assert self.config.meeting is not None
        path = self._dir() / name
        path.write_text(spoken_lines(self.config.meeting), encoding="utf-8")
        return path

    def _meeting_agent(self, base: str | None) -> Path:
        """The relay's agent file: ``base`` with the script's turn_taking/chat keys."""
        assert self.config.meeting is not None
        agent: dict[str, object] = {}
        if base is not None:
            loaded = yaml.safe_load(Path(base).read_text(encoding="utf-8"))
            agent = loaded if isinstance(loaded, dict) else {}
        agent.update(agent_overrides(self.config.meeting))
        path = self._dir() / "agent.yaml"
        path.write_text(yaml.safe_dump(agent, sort_keys=False), encoding="utf-8")
        return path

    def _dir(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="voicebot-dev-"))
        return self._workdir

    def _base_env(self, dynamodb_url: str) -> dict[str, str]:
        env = {k: v for k, v in self.config.environ.items() if k not in DROPPED_ENV}
        env.update(LOCAL_AWS_ENV)
        env["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb_url
        env["TABLE_NAME"] = self.config.table_name
        env["PYTHONUNBUFFERED"] = "1"  # the simulator's ready line must not sit in a buffer
        return env

    def _spawn(self, name: str, argv: list[str], env: Mapping[str, str]) -> Child:
        if self._stop.is_set():
            raise Interrupted
        self._progress(f"starting {name}…")
        echo = self._progress if self.config.verbose else None
        try:
            child = Child(name, argv, env, echo=echo)
        except OSError as exc:
            raise LocalStackError(f"cannot start {name}: {exc}") from None
        self.children.append(child)
        return child

    def _wait_for_port(self, child: Child, port: int) -> None:
        deadline = time.monotonic() + self.config.ready_timeout
        while True:
            check_progress(child, deadline, self._stop, f"listen on port {port}")
            try:
                with socket.create_connection((HOST, port), timeout=0.5):
                    return
            except OSError:
                self._stop.wait(0.05)

    def _wait_for_health(self, child: Child, url: str) -> None:
        deadline = time.monotonic() + self.config.ready_timeout
        with httpx.Client(timeout=2.0) as http:
            while True:
                check_progress(child, deadline, self._stop, f"answer {url}")
                try:
                    if http.get(url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                self._stop.wait(0.1)

    def _create_table(self, endpoint: str) -> None:
        client = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name=LOCAL_AWS_ENV["AWS_DEFAULT_REGION"],
            aws_access_key_id=LOCAL_AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        )
        try:
            create_table(client, self.config.table_name)
        except AWS_FAILURES as exc:
            raise LocalStackError(
                f"cannot create the local table ({describe_aws_error(exc)})"
            ) from None
