"""RelayConfig: the relay's whole configuration, read once from the environment.

``RelayConfig.from_env(os.environ)`` is called by ``__main__`` and nowhere else; every
other module receives the dataclass (tests build it directly). ``ENV_VARS`` lists exactly
the variables ``from_env`` reads: the infra contract test compares it with the task
definition. Problems are reported all at once in one ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import urlsplit

from relay.errors import ConfigError
from relay.logs import parse_levels
from relay.recall_retry import DEFAULT_REGION as DEFAULT_RECALL_REGION
from relay.recall_retry import region_base_url
from relay.tokens import MIN_SECRET_BYTES
from relay.tools.signing import decode_secret

__all__ = ["DEFAULT_MODEL", "ENV_VARS", "ConfigError", "RelayConfig"]

DEFAULT_MODEL: Final = "gpt-realtime-2.1"
DEFAULT_UPSTREAM_URL: Final = "wss://api.openai.com/v1/realtime"
LOG_LEVELS: Final = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})

ENV_VARS: Final[frozenset[str]] = frozenset(
    {
        "PORT",
        "RELAY_HOST",
        "RELAY_INTERNAL_PORT",
        "OPENAI_API_KEY",
        "OPENAI_REALTIME_URL",
        "OPENAI_REALTIME_MODEL",
        "RELAY_ALLOWED_MODELS",
        "RELAY_TOKEN_SECRET",
        "RELAY_MAX_SESSIONS",
        "RELAY_MAX_SESSIONS_PER_SUBJECT",
        "DRAIN_SECONDS",
        "RELAY_MAX_SESSION_SECONDS",
        "RELAY_MAX_FRAME_BYTES",
        "RELAY_PING_INTERVAL",
        "AGENT_CONFIG",
        "TABLE_NAME",
        "RELAY_RECORD_RETENTION_DAYS",
        "RELAY_REATTACH_SECONDS",
        "RELAY_REATTACH_BUFFER_BYTES",
        "RELAY_ROLLOVER_SECONDS",
        "RELAY_METRICS_NAMESPACE",
        "RELAY_METRICS_SERVICE",
        "LOG_LEVEL",
        "ECS_AGENT_URI",
        "ECS_CONTAINER_METADATA_URI_V4",
        "RECALL_API_KEY",
        "RECALL_REGION",
        "RECALL_API_BASE",
        "RELAY_TOOL_SIGNING_SECRET",
        "RECALL_WEBHOOK_SECRET",
    }
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Everything the relay needs to run; defaults are the production defaults.

    Fields not backed by an environment variable (timeouts, queue bound, metrics
    interval) are tuning knobs for tests and benchmarks.
    """

    token_secret: str = field(repr=False)
    openai_api_key: str = field(default="", repr=False)
    port: int = 8080
    host: str = "0.0.0.0"
    #: The internal listener, where other relay tasks forward meeting events for the
    #: sessions held here (relay.internal_listener); not behind the load balancer. 0 = any
    #: free port (the owner registry records the port actually bound). Only opened when a
    #: table is configured (without one no other task can find this one).
    internal_port: int = 8081
    upstream_url: str = DEFAULT_UPSTREAM_URL
    model: str = DEFAULT_MODEL
    #: Models a client may pick with ``?model=``; the default model is always allowed.
    allowed_models: frozenset[str] = frozenset()
    #: Live sessions per process; 0 = unlimited. 200 held p99 ≤ 25 ms on one core of the
    #: benchmark VM (bench/README.md); size it to the task's vCPUs.
    max_sessions: int = 200
    #: Live sessions per token subject; 0 = unlimited.
    max_sessions_per_subject: int = 2
    #: SIGTERM → live sessions may continue this long, then close with 1001.
    #: ECS sends SIGKILL stop_timeout (≤ 120 s) after SIGTERM: stay safely under it.
    drain_seconds: float = 90.0
    #: Longest session the relay allows; OpenAI's own cap is 60 minutes.
    max_session_seconds: float = 3600.0
    #: Largest client message (after reassembling fragments); larger → close 1009.
    max_frame_bytes: int = 2**20
    #: Keepalive ping period on both legs; a pong must follow within ``ping_timeout``.
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    agent_config_path: Path | None = None
    table_name: str | None = None
    #: Days a session record (connection summary, turns) is kept before DynamoDB's TTL.
    record_retention_days: int = 30
    #: A client that drops without a close frame may re-attach to its upstream this long.
    reattach_seconds: float = 30.0
    #: Upstream bytes buffered for a detached client; more ends the held session.
    reattach_buffer_bytes: int = 4 * 2**20
    #: Open a fresh seeded upstream after this long (OpenAI caps a session at 60 min);
    #: 0 disables rollover.
    rollover_seconds: float = 3300.0
    metrics_namespace: str = "RecallVoiceAgent/Relay"
    metrics_service: str = "relay"
    #: The relay's own level, then ``name=LEVEL`` pairs for third-party loggers, which
    #: otherwise stay at WARNING (``DEBUG,botocore=DEBUG``; relay.logs).
    log_level: str = "INFO"
    ecs_agent_uri: str | None = None
    #: ECS's task metadata endpoint (set by ECS): the leave watcher finds its task there.
    ecs_metadata_uri: str | None = None
    #: Recall API key for the tools that act in the meeting (an ECS secret on AWS).
    recall_api_key: str | None = field(default=None, repr=False)
    #: Recall region of the bots (keys are per region); ``RECALL_API_BASE`` overrides its URL.
    recall_region: str = DEFAULT_RECALL_REGION
    recall_api_base: str | None = None
    #: ``whsec_…`` secret that signs requests to HTTP tools (an ECS secret on AWS).
    tool_signing_secret: str | None = field(default=None, repr=False)
    #: Recall's workspace verification secret (``whsec_…``; several space-separated while
    #: rotating): it signs the real-time events websocket's upgrade (``/recall/events/``).
    #: Unset, a placeholder or invalid, that route refuses everyone (403).
    recall_webhook_secret: str | None = field(default=None, repr=False)
    # Tuning knobs (no environment variable).
    #: Bytes of client frames held while the upstream connects; more → error + close.
    pre_upstream_queue_bytes: int = 512 * 1024
    #: Deadline for a client's HTTP request / an upstream's handshake.
    open_timeout: float = 10.0
    #: Deadline for the other side to answer our close frame.
    close_timeout: float = 5.0
    #: Connections whose HTTP request is not yet complete. At the bound a new connection
    #: still gets a place: the oldest pending one is cut (docs/hostile-input.md).
    max_pending_handshakes: int = 1024
    #: The same bound per peer address: at it, that peer's own oldest pending one is cut.
    max_pending_handshakes_per_peer: int = 256
    #: Seconds between EMF metric lines; 0 disables them.
    metrics_interval: float = 60.0
    #: Directory served at / and /static/ (the agent page).
    static_dir: Path = Path(__file__).resolve().parent / "static"
    #: Largest upstream message accepted (OpenAI's conversation.item.retrieved can be big).
    max_upstream_frame_bytes: int = 64 * 2**20
    #: Seconds of the client's latest audio replayed to a rollover's fresh session at the
    #: switch (a voice detector reports speech some hundreds of ms after it began).
    rollover_replay_seconds: float = 0.5
    #: While the relay leaves (SIGTERM), a session moves at its next turn boundary, or
    #: after this long at the latest (bounded by the drain itself).
    handover_seconds: float = 20.0
    #: Meeting events kept per session while its owner is unknown or unreachable (newest
    #: kept), and how long one may wait for a session to take it (relay.meeting_routes).
    meeting_backlog_events: int = 256
    meeting_wait_seconds: float = 60.0

    @property
    def models(self) -> frozenset[str]:
        """Every model a client may select, the default included."""
        return self.allowed_models | {self.model}

    def with_overrides(self, **changes: object) -> RelayConfig:
        """A copy with some fields replaced (tests and benchmarks)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RelayConfig:
        """Parse and validate the environment; raise ConfigError listing every problem."""
        problems: list[str] = []

        def get(name: str) -> str | None:
            value = environ.get(name)
            return value.strip() if value is not None and value.strip() != "" else None

        def parse(name: str, default: T, conv: Callable[[str], T], check: str) -> T:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = conv(raw)
            except ValueError:
                problems.append(f"{name} must be {check}, got {raw!r}")
                return default
            return value

        def non_negative_int(raw: str) -> int:
            value = int(raw)
            if value < 0:
                raise ValueError
            return value

        def positive_float(raw: str) -> float:
            value = float(raw)
            if not (math.isfinite(value) and value > 0):
                raise ValueError
            return value

        def non_negative_float(raw: str) -> float:
            value = float(raw)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError
            return value

        def port_number(raw: str) -> int:
            value = int(raw)
            if not 0 <= value <= 65535:
                raise ValueError
            return value

        defaults = cls(token_secret="")
        port = parse("PORT", defaults.port, port_number, "an integer 0-65535")
        internal_port = parse(
            "RELAY_INTERNAL_PORT", defaults.internal_port, port_number, "an integer 0-65535"
        )
        if internal_port != 0 and internal_port == port:
            problems.append("RELAY_INTERNAL_PORT must differ from PORT")
        host = get("RELAY_HOST") or defaults.host
        upstream_url = get("OPENAI_REALTIME_URL") or defaults.upstream_url
        parts = urlsplit(upstream_url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            problems.append(
                f"OPENAI_REALTIME_URL must be a ws:// or wss:// URL, got {upstream_url!r}"
            )
        model = get("OPENAI_REALTIME_MODEL") or defaults.model
        allowed_raw = get("RELAY_ALLOWED_MODELS")
        allowed = frozenset(
            m.strip() for m in (allowed_raw or "").split(",") if m.strip()
        ) or frozenset({model})
        api_key = get("OPENAI_API_KEY") or ""
        if not api_key and parts.hostname == "api.openai.com":
            problems.append("OPENAI_API_KEY is required when OPENAI_REALTIME_URL is OpenAI's")
        secret = environ.get("RELAY_TOKEN_SECRET", "")
        if not secret:
            problems.append("RELAY_TOKEN_SECRET is required")
        elif len(secret.encode()) < MIN_SECRET_BYTES:
            problems.append(f"RELAY_TOKEN_SECRET must be at least {MIN_SECRET_BYTES} bytes")
        max_sessions = parse(
            "RELAY_MAX_SESSIONS", defaults.max_sessions, non_negative_int, "an integer >= 0"
        )
        per_subject = parse(
            "RELAY_MAX_SESSIONS_PER_SUBJECT",
            defaults.max_sessions_per_subject,
            non_negative_int,
            "an integer >= 0",
        )
        drain = parse("DRAIN_SECONDS", defaults.drain_seconds, positive_float, "a number > 0")
        if drain >= 120:
            problems.append("DRAIN_SECONDS must stay under ECS's 120 s stop timeout")
        max_session = parse(
            "RELAY_MAX_SESSION_SECONDS",
            defaults.max_session_seconds,
            positive_float,
            "a number > 0",
        )
        max_frame = parse(
            "RELAY_MAX_FRAME_BYTES", defaults.max_frame_bytes, non_negative_int, "an integer"
        )
        if max_frame < 1024:
            problems.append("RELAY_MAX_FRAME_BYTES must be at least 1024")
        ping = parse("RELAY_PING_INTERVAL", defaults.ping_interval, positive_float, "a number > 0")
        agent_path: Path | None = None
        if (agent_raw := get("AGENT_CONFIG")) is not None:
            agent_path = Path(agent_raw)
            if not agent_path.is_file():
                problems.append(f"AGENT_CONFIG names no readable file: {agent_raw!r}")
        retention = parse(
            "RELAY_RECORD_RETENTION_DAYS",
            defaults.record_retention_days,
            non_negative_int,
            "an integer >= 0",
        )
        if retention < 1:
            problems.append("RELAY_RECORD_RETENTION_DAYS must be at least 1")
        reattach = parse(
            "RELAY_REATTACH_SECONDS", defaults.reattach_seconds, non_negative_float, "a number >= 0"
        )
        reattach_bytes = parse(
            "RELAY_REATTACH_BUFFER_BYTES",
            defaults.reattach_buffer_bytes,
            non_negative_int,
            "an integer >= 0",
        )
        rollover = parse(
            "RELAY_ROLLOVER_SECONDS", defaults.rollover_seconds, non_negative_float, "a number >= 0"
        )
        recall_region = get("RECALL_REGION") or defaults.recall_region
        recall_base = get("RECALL_API_BASE")
        try:
            region_base_url(recall_region, recall_base)
        except ValueError as exc:
            problems.append(f"RECALL_REGION: {exc}")
        if recall_base is not None and urlsplit(recall_base).scheme not in ("http", "https"):
            problems.append("RECALL_API_BASE must be an http(s) URL")
        signing_secret = get("RELAY_TOOL_SIGNING_SECRET")
        if signing_secret is not None:
            try:
                decode_secret(signing_secret)
            except ValueError as exc:
                problems.append(f"RELAY_TOOL_SIGNING_SECRET {exc}")
        # Not validated here: the stack creates it as a placeholder, and a bad one must not
        # stop the relay (only the events route refuses; relay.recall_signature).
        recall_secret = get("RECALL_WEBHOOK_SECRET")
        level = get("LOG_LEVEL") or defaults.log_level
        try:
            own_level, named_levels = parse_levels(level)
            level = ",".join([own_level, *(f"{n}={v}" for n, v in named_levels.items())])
        except ValueError as exc:
            problems.append(
                f"LOG_LEVEL must be one of {', '.join(sorted(LOG_LEVELS))}, optionally "
                f"followed by name=LEVEL pairs for other loggers ({exc})"
            )
        if problems:
            raise ConfigError(problems)
        return cls(
            token_secret=secret,
            openai_api_key=api_key,
            port=port,
            host=host,
            internal_port=internal_port,
            upstream_url=upstream_url,
            model=model,
            allowed_models=allowed,
            max_sessions=max_sessions,
            max_sessions_per_subject=per_subject,
            drain_seconds=drain,
            max_session_seconds=max_session,
            max_frame_bytes=max_frame,
            ping_interval=ping,
            ping_timeout=ping,
            agent_config_path=agent_path,
            table_name=get("TABLE_NAME"),
            record_retention_days=retention,
            reattach_seconds=reattach,
            reattach_buffer_bytes=reattach_bytes,
            rollover_seconds=rollover,
            metrics_namespace=get("RELAY_METRICS_NAMESPACE") or defaults.metrics_namespace,
            metrics_service=get("RELAY_METRICS_SERVICE") or defaults.metrics_service,
            log_level=level,
            ecs_agent_uri=get("ECS_AGENT_URI"),
            ecs_metadata_uri=get("ECS_CONTAINER_METADATA_URI_V4"),
            recall_api_key=get("RECALL_API_KEY"),
            recall_region=recall_region,
            recall_api_base=recall_base,
            tool_signing_secret=signing_secret,
            recall_webhook_secret=recall_secret,
        )
