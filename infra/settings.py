"""StackSettings: every deploy-time knob of the app, read once from CDK context.

This module is the only reader of CDK context (``cdk.json`` or ``cdk synth -c key=value``).
Constructs never look context up themselves: they get typed keyword arguments from the
:class:`StackSettings` that ``infra/app.py`` builds once. Context keys are the field names
below (``-c alarm_email=ops@example.com``); values from ``-c`` arrive as strings, values from
``cdk.json`` as JSON, and both are accepted. Every problem is reported at once in a
:class:`SettingsError`, before any resource is built.

Relay settings are nested (:class:`RelaySettings`, context keys ``relay_<field>``) and handed
to the relay construct whole; the relay service maps them to the container's environment in
one function (``relay_environment.container_environment``).

The stack is environment-agnostic on purpose (no account/region at synth), so ``cdk synth``
needs no AWS credentials; nothing here reads ``CDK_DEFAULT_*``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

#: CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS: Final = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557}
)

#: ECS waits at most this long between SIGTERM and SIGKILL on Fargate (stopTimeout cap).
MAX_STOP_TIMEOUT_SECONDS: Final = 120
#: ALB duration-based stickiness cookies last 1 s to 7 days.
MAX_STICKINESS_SECONDS: Final = 7 * 86400
#: The relay's public port (PORT), the one the load balancer's target group forwards to.
CONTAINER_PORT: Final = 8080

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_AZ = re.compile(r"[a-z]{2}(-[a-z]+)+-\d[a-z]")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class SettingsError(ValueError):
    """The CDK context holds values the stack cannot be built from (all listed at once)."""


class ContextSource(Protocol):
    """What settings need from a construct node: ``App().node`` satisfies it."""

    def try_get_context(self, key: str) -> Any:
        """Return the context value for ``key``, or None."""


@dataclass(frozen=True, slots=True)
class CustomDomain:
    """A domain of the user's own, served by CloudFront instead of ``*.cloudfront.net``.

    ``certificate_arn`` must name an ACM certificate in us-east-1 (CloudFront's rule). When it
    is absent the stack requests one itself, DNS-validated in the hosted zone, which works
    only when the stack is deployed to us-east-1 (a CloudFormation rule enforces it).
    """

    domain_name: str
    hosted_zone_id: str
    hosted_zone_name: str
    certificate_arn: str | None = None


#: Context keys that no longer exist, with what replaced them (a stale cdk.json fails loudly).
REMOVED_KEYS: Final = {
    "cloudfront_prefix_list_id": "the load balancer is internal behind a CloudFront VPC origin "
    "now; no prefix list is involved",
    "relay_desired_count": "autoscaling owns the task count (relay_min_count..relay_max_count)",
    "relay_stickiness_seconds": "the stickiness cookie lasts relay_max_session_seconds",
    "relay_max_sessions_per_task": "renamed relay_max_sessions (RELAY_MAX_SESSIONS)",
    "container_insights": "renamed relay_container_insights",
}

#: CPU architectures the relay image can be built for (Fargate's names).
ARCHITECTURES: Final = ("arm64", "x86_64")


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """The relay service's knobs; context key ``relay_<field>`` (``-c relay_cpu=1024``).

    One object from context to container: ``RelayService`` takes it whole and
    ``container_environment`` maps the fields the relay reads to its variables.
    """

    cpu: int = 512  # CPU units; one asyncio process uses at most one vCPU
    memory_mib: int = 1024
    architecture: str = "arm64"  # x86_64 builds on an x86 host without emulation
    min_count: int = 1
    max_count: int = 4
    sessions_per_task_target: int = 20  # scaling target: average ActiveSessions per task
    max_sessions: int = 40  # RELAY_MAX_SESSIONS: hard admission cap per task
    max_sessions_per_subject: int = 4  # one bot reconnecting, not a leaked token's fan-out
    max_session_seconds: int = 4 * 3600  # also the stickiness cookie's lifetime
    drain_seconds: int = 90  # DRAIN_SECONDS; must end before the 120 s stop timeout
    deregistration_delay_seconds: int = 300  # a leaving task's calls move within this
    idle_timeout_seconds: int = 300  # ALB idle timeout; the relay pings every 20 s
    model: str = "gpt-realtime-2.1"
    allowed_models: tuple[str, ...] = ()  # empty: only model
    log_level: str = "INFO"
    container_insights: bool = True  # per-task metrics (~$11/month); service CPU/memory stay
    # RELAY_INTERNAL_PORT: tasks forward meeting events to each other here; not on the ALB
    internal_port: int = 8081

    @property
    def models(self) -> tuple[str, ...]:
        """Models a relay client may pick with ``?model=``: the default first."""
        rest = tuple(m for m in self.allowed_models if m != self.model)
        return (self.model, *rest)

    @property
    def stickiness_seconds(self) -> int:
        """The ALB cookie outlives the longest session, so a late reconnect finds its task."""
        return min(self.max_session_seconds, MAX_STICKINESS_SECONDS)

    def checks(self) -> list[tuple[bool, str]]:
        """Range and cross-field rules, each with the message naming its context key."""
        return [
            ((self.cpu, self.memory_mib) in _FARGATE_SIZES,
             "relay_cpu/relay_memory_mib: a valid Fargate combination, e.g. 512/1024, 1024/2048"),
            (self.architecture in ARCHITECTURES,
             f"relay_architecture: one of {', '.join(ARCHITECTURES)}"),
            (0 <= self.min_count <= self.max_count,
             "relay counts: 0 <= relay_min_count <= relay_max_count"),
            (self.max_count >= 1, "relay_max_count: at least 1"),
            (1 <= self.sessions_per_task_target <= self.max_sessions,
             "relay_sessions_per_task_target: 1..relay_max_sessions (scale out before "
             "admission starts refusing calls)"),
            (self.max_sessions_per_subject >= 0, "relay_max_sessions_per_subject: >= 0"),
            (60 <= self.max_session_seconds <= MAX_STICKINESS_SECONDS,
             f"relay_max_session_seconds: 60..{MAX_STICKINESS_SECONDS} (the stickiness "
             "cookie must outlive a session; ALB cookies last at most 7 days)"),
            (1 <= self.drain_seconds <= MAX_STOP_TIMEOUT_SECONDS - 10,
             f"relay_drain_seconds: 1..{MAX_STOP_TIMEOUT_SECONDS - 10} (the drain must end "
             f"before ECS's {MAX_STOP_TIMEOUT_SECONDS} s SIGKILL)"),
            (60 <= self.deregistration_delay_seconds <= 3600,
             "relay_deregistration_delay_seconds: 60..3600 (a leaving task needs time to hand "
             "its calls over; longer only delays deploys)"),
            (60 <= self.idle_timeout_seconds <= 4000,
             "relay_idle_timeout_seconds: 60..4000 (well above the relay's 20 s pings)"),
            (self.log_level in _LOG_LEVELS,
             f"relay_log_level: one of {sorted(_LOG_LEVELS)}"),
            (1024 <= self.internal_port <= 65535 and self.internal_port != CONTAINER_PORT,
             f"relay_internal_port: 1024..65535, not the container port {CONTAINER_PORT}"),
        ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class StackSettings:
    """Deploy-time settings of the whole stack; defaults are what a first deploy gets."""

    # Naming
    stack_name: str = "RecallVoiceAgent"
    table_name: str | None = None  # None: CloudFormation names it (no clash between stacks)

    # Data
    retain_data: bool = True  # keep the table when the stack is deleted
    #: None: on exactly when the table is retained, so `cdk destroy` can delete a table
    #: that is not kept (DynamoDB refuses to delete a protected table).
    table_deletion_protection: bool | None = None
    event_retention_days: int = 30  # raw webhook deliveries and event history (TTL)
    log_retention_days: int = 30

    # Webhooks (Lambda + HTTP API)
    webhook_memory_mb: int = 512
    webhook_timeout_seconds: int = 10  # Recall gives up after 15 s
    webhook_snap_start: bool = True
    webhook_throttle_rate: int = 50  # requests/s, steady
    webhook_throttle_burst: int = 100
    webhook_log_level: str = "INFO"

    # Meeting minutes (infra/constructs/minutes.py, docs/minutes.md)
    minutes_model: str = "gpt-5-mini"  # OpenAI text model; no key set: simulated minutes
    #: Where minutes are delivered (a signed Standard Webhooks POST); None: stored only.
    minutes_webhook_url: str | None = None
    #: A relay connection's end builds the minutes only after this long with none open.
    minutes_session_grace_seconds: int = 120
    #: Bots created with --minutes-to-chat post their minutes in the meeting chat before a
    #: requested leave (the minutes function gets the Recall key to do so).
    minutes_to_chat: bool = False

    # Control API (infra/constructs/control_api.py, docs/control-api.md)
    control_api_throttle_rate: int = 5  # requests/s, steady (Recall creates ≤ 60 bots/min)
    control_api_throttle_burst: int = 10
    recall_region: str = "us-west-2"  # where the control API creates bots by default

    # Relay (Fargate), context keys relay_<field>
    relay: RelaySettings = dataclasses.field(default_factory=RelaySettings)

    # Edge and operations
    cloudfront_price_class: str = "PriceClass_All"
    #: AZ names for the VPC (e.g. us-east-1a,us-east-1b) when the first two of the account
    #: include one where CloudFront VPC origins are not offered (docs/aws.md).
    availability_zones: tuple[str, ...] = ()
    custom_domain: CustomDomain | None = None
    alarm_email: str | None = None

    @classmethod
    def from_context(cls, node: ContextSource) -> StackSettings:
        """Build settings from CDK context; raise :class:`SettingsError` listing every problem."""
        problems = [
            f"{key}: no longer a setting: {why}"
            for key, why in REMOVED_KEYS.items()
            if node.try_get_context(key) is not None
        ]
        values = _read_fields(cls, node, "", problems, skip={"custom_domain", "relay"})
        relay = _read_fields(RelaySettings, node, "relay_", problems, skip=set())
        domain = _custom_domain(node, problems)
        if domain is not None:
            values["custom_domain"] = domain
        if problems:
            raise SettingsError("invalid CDK context:\n  " + "\n  ".join(problems))
        settings = cls(**values, relay=RelaySettings(**relay))
        settings.validate()
        return settings

    @property
    def deletion_protection(self) -> bool:
        """Whether the table refuses deletion (default: exactly when it is retained)."""
        if self.table_deletion_protection is None:
            return self.retain_data
        return self.table_deletion_protection

    def validate(self) -> None:
        """Check ranges and cross-field rules; raise :class:`SettingsError` listing all."""
        problems = [message for ok, message in self._checks() + self.relay.checks() if not ok]
        if problems:
            raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))

    def _checks(self) -> list[tuple[bool, str]]:
        return [
            (bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}", self.stack_name)),
             "stack_name: letters, digits and hyphens, starting with a letter"),
            (self.retain_data or not self.deletion_protection,
             "table_deletion_protection=true with retain_data=false: `cdk destroy` would fail "
             "on the protected table; keep the data (retain_data=true) or drop the protection"),
            (1 <= self.event_retention_days <= 3650, "event_retention_days: 1..3650"),
            (self.log_retention_days in LOG_RETENTION_DAYS,
             f"log_retention_days: one of {sorted(LOG_RETENTION_DAYS)}"),
            (128 <= self.webhook_memory_mb <= 10240, "webhook_memory_mb: 128..10240"),
            (1 <= self.webhook_timeout_seconds <= 14,
             "webhook_timeout_seconds: 1..14 (Recall waits 15 s for an answer)"),
            (self.webhook_throttle_rate >= 1 and self.webhook_throttle_burst >= 1,
             "webhook_throttle_rate/burst: at least 1"),
            (self.cloudfront_price_class in {"PriceClass_All", "PriceClass_200", "PriceClass_100"},
             "cloudfront_price_class: PriceClass_All, PriceClass_200 or PriceClass_100"),
            (len(self.availability_zones) in (0, 2)
             and all(_AZ.fullmatch(az) for az in self.availability_zones),
             "availability_zones: two AZ names, e.g. us-east-1a,us-east-1b"),
            (self.alarm_email is None or bool(_EMAIL.match(self.alarm_email)),
             "alarm_email: an e-mail address"),
            (self.webhook_log_level in _LOG_LEVELS,
             f"webhook_log_level: one of {sorted(_LOG_LEVELS)}"),
            (bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}", self.minutes_model)),
             "minutes_model: an OpenAI model name, e.g. gpt-5-mini"),
            (self.minutes_webhook_url is None
             or bool(re.fullmatch(r"https://[^\s/?#]+(/[^\s#]*)?", self.minutes_webhook_url)),
             "minutes_webhook_url: an https:// URL"),
            (1 <= self.control_api_throttle_rate <= self.webhook_throttle_rate
             and 1 <= self.control_api_throttle_burst <= self.webhook_throttle_burst,
             "control_api_throttle_rate/burst: at least 1, at most the webhook's"),
            (self.recall_region in {"us-west-2", "us-east-1", "eu-central-1", "ap-northeast-1"},
             "recall_region: us-west-2, us-east-1, eu-central-1 or ap-northeast-1"),
            (0 <= self.minutes_session_grace_seconds <= 900,
             "minutes_session_grace_seconds: 0..900 (SQS delays a message 15 minutes at most)"),
        ]  # fmt: skip


_LOG_LEVELS: Final = frozenset({"DEBUG", "INFO", "WARNING", "ERROR"})

# Valid Fargate (cpu, memory) pairs up to 4 vCPU: a relay process is single-threaded.
_FARGATE_SIZES: Final = frozenset(
    [(256, m) for m in (512, 1024, 2048)]
    + [(512, m) for m in range(1024, 4097, 1024)]
    + [(1024, m) for m in range(2048, 8193, 1024)]
    + [(2048, m) for m in range(4096, 16385, 1024)]
    + [(4096, m) for m in range(8192, 30721, 1024)]
)


def _parse_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"true", "1", "yes", "on"}:
        return True
    if text in {"false", "0", "no", "off"}:
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


def _parse_int(raw: object) -> int:
    if isinstance(raw, bool):
        raise TypeError(f"expected an integer, got {raw!r}")
    if isinstance(raw, int):
        return raw
    text = str(raw).strip()
    if not re.fullmatch(r"-?\d+", text):
        raise ValueError(f"expected an integer, got {raw!r}")
    return int(text)


def _parse_optional_bool(raw: object) -> bool | None:
    return None if str(raw).strip() == "" else _parse_bool(raw)


def _parse_str(raw: object) -> str:
    text = str(raw).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def _parse_optional_str(raw: object) -> str | None:
    text = str(raw).strip()
    return text or None


def _parse_str_tuple(raw: object) -> tuple[str, ...]:
    items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
    return tuple(s for s in (str(item).strip() for item in items) if s)


_PARSERS: Final[Mapping[str, Callable[[object], Any]]] = {
    "bool": _parse_bool,
    "bool | None": _parse_optional_bool,
    "int": _parse_int,
    "str": _parse_str,
    "str | None": _parse_optional_str,
    "tuple[str, ...]": _parse_str_tuple,
}


def _read_fields(
    cls: type[Any], node: ContextSource, prefix: str, problems: list[str], *, skip: set[str]
) -> dict[str, Any]:
    """Parse the context key ``prefix + field`` of each field of ``cls`` that is set."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        key = prefix + f.name
        raw = node.try_get_context(key)
        if raw is None:
            continue
        parse = _PARSERS.get(str(f.type), _parse_str)
        try:
            values[f.name] = parse(raw)
        except (TypeError, ValueError) as exc:
            problems.append(f"{key}: {exc}")
    return values


def _custom_domain(node: ContextSource, problems: list[str]) -> CustomDomain | None:
    """Read ``domain_name``, ``hosted_zone_id``, ``hosted_zone_name``, ``certificate_arn``."""
    raw = {
        key: _parse_optional_str(node.try_get_context(key) or "")
        for key in ("domain_name", "hosted_zone_id", "hosted_zone_name", "certificate_arn")
    }
    if raw["domain_name"] is None:
        extra = [k for k, v in raw.items() if v is not None]
        if extra:
            problems.append(f"{', '.join(extra)}: only meaningful with domain_name")
        return None
    domain = raw["domain_name"].lower().rstrip(".")
    zone_name = (raw["hosted_zone_name"] or "").lower().rstrip(".")
    if not _DOMAIN.match(domain):
        problems.append(f"domain_name: not a DNS name: {raw['domain_name']!r}")
    if not raw["hosted_zone_id"] or not zone_name:
        problems.append("domain_name needs hosted_zone_id and hosted_zone_name (Route 53)")
    elif not (domain == zone_name or domain.endswith("." + zone_name)):
        problems.append(f"domain_name {domain!r} is not inside hosted zone {zone_name!r}")
    arn = raw["certificate_arn"]
    if arn is not None and not re.fullmatch(
        r"arn:aws[a-z-]*:acm:us-east-1:\d{12}:certificate/\S+", arn
    ):
        problems.append("certificate_arn: an ACM certificate ARN in us-east-1 (CloudFront's rule)")
    return CustomDomain(
        domain_name=domain,
        hosted_zone_id=raw["hosted_zone_id"] or "",
        hosted_zone_name=zone_name,
        certificate_arn=arn,
    )
