"""``voicebot dev``: the whole stack as child processes on 127.0.0.1, started and stopped cleanly.

Owns the lifecycle of five children (:mod:`cli.local_children`), started in order and each
awaited with a deadline: moto's DynamoDB-compatible server (the table created from
``storage.schema``), the webhook app under uvicorn with a generated dev ``whsec_`` secret,
the simulated Realtime model (unless an OpenAI key is given), the relay pointing at it with
a generated token secret, and the minutes pipeline (``functions.minutes.local``: the
table's stream polled, minutes built when a bot is done or a session's last connection has
been closed for 30 s). A child that dies is reported with the last lines of its output.
Stopping sends SIGTERM to every group, then SIGKILL after a grace period, so no process is
left behind. Ports and modules are checked first (:mod:`cli.local_preflight`); what it
runs with is :mod:`cli.local_config`; a scripted meeting's files, :mod:`cli.local_meeting`.
It does not print the stack's banner (the command does) and never logs a secret.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

import boto3
import httpx

from cli import local_meeting
from cli.errors import LocalStackError
from cli.local_children import Child, Interrupted, check_progress
from cli.local_config import (
    DROPPED_ENV,
    HOST,
    LOCAL_AWS_ENV,
    REPOSITORY_AGENT_CONFIG,
    DevConfig,
    DevEndpoints,
    dev_token_secret,
    dev_webhook_secret,
)
from cli.local_preflight import check_ports, missing_dependencies
from cli.stack import AWS_FAILURES, describe_aws_error
from storage import schema

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: What the simulator prints once it accepts connections (its documented ready line).
SIMULATOR_READY: Final = re.compile(r"simulator listening on (ws://\S+)")
#: What the minutes pipeline prints once it watches the stream (functions.minutes.local).
MINUTES_READY: Final = re.compile(r"(minutes: watching the table's stream)")
#: A page's session builds its minutes after this long with no connection (AWS: 120 s).
DEV_MINUTES_GRACE_SECONDS: Final = "30"


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
                transcripts = self._dir() / "transcripts.txt"
                local_meeting.write_transcripts(config.meeting, transcripts)
                command += ["--transcripts", str(transcripts)]
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
        if config.meeting is not None and local_meeting.needs_own_agent(config.meeting):
            agent = self._dir() / "agent.yaml"
            local_meeting.write_agent(config.meeting, relay_env.get("AGENT_CONFIG"), agent)
            relay_env["AGENT_CONFIG"] = str(agent)
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
