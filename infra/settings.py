"""StackSettings: every deploy-time knob of the app, read once from CDK context.

This module is the only reader of CDK context (``cdk.json`` or ``cdk synth -c key=value``).
Constructs never look context up themselves: they get typed keyword arguments from the
:class:`StackSettings` that ``infra/app.py`` builds once. Context keys are the field names
below (``-c alarm_email=ops@example.com``); values from ``-c`` arrive as strings, values from
``cdk.json`` as JSON, and both are accepted. Every problem is reported at once in a
:class:`SettingsError`, before any resource is built.

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

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
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


@dataclass(frozen=True, slots=True)
class StackSettings:
    """Deploy-time settings of the whole stack; defaults are what a first deploy gets."""

    # Naming
    stack_name: str = "RecallVoiceAgent"
    table_name: str | None = None  # None: CloudFormation names it (no clash between stacks)

    # Data
    retain_data: bool = True  # keep the table when the stack is deleted
    table_deletion_protection: bool = True
    event_retention_days: int = 30  # raw webhook deliveries and event history (TTL)
    log_retention_days: int = 30

    # Webhooks (Lambda + HTTP API)
    webhook_memory_mb: int = 512
    webhook_timeout_seconds: int = 10  # Recall gives up after 15 s
    webhook_snap_start: bool = True
    webhook_throttle_rate: int = 50  # requests/s, steady
    webhook_throttle_burst: int = 100
    webhook_log_level: str = "INFO"

    # Relay (Fargate)
    relay_cpu: int = 512  # CPU units; one asyncio process uses at most one vCPU
    relay_memory_mib: int = 1024
    relay_desired_count: int = 1
    relay_min_count: int = 1
    relay_max_count: int = 4
    relay_sessions_per_task_target: int = 20  # scaling target: average ActiveSessions per task
    relay_max_sessions_per_task: int = 40  # RELAY_MAX_SESSIONS: hard admission cap
    relay_max_sessions_per_subject: int = 4  # one bot reconnecting, not a leaked token's fan-out
    relay_max_session_seconds: int = 4 * 3600
    relay_drain_seconds: int = 90  # DRAIN_SECONDS; must end before the 120 s stop timeout
    relay_deregistration_delay_seconds: int = 900
    relay_idle_timeout_seconds: int = 300  # ALB idle timeout; the relay pings every 20 s
    relay_stickiness_seconds: int = 3600
    relay_model: str = "gpt-realtime-2.1"
    relay_allowed_models: tuple[str, ...] = ()  # empty: only relay_model
    relay_log_level: str = "INFO"

    # Edge and operations
    cloudfront_price_class: str = "PriceClass_All"
    cloudfront_prefix_list_id: str | None = None  # override for a region missing from the map
    custom_domain: CustomDomain | None = None
    alarm_email: str | None = None
    container_insights: bool = True  # per-task metrics (~$11/month); service CPU/memory stay

    @classmethod
    def from_context(cls, node: ContextSource) -> StackSettings:
        """Build settings from CDK context; raise :class:`SettingsError` listing every problem."""
        problems: list[str] = []
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "custom_domain":
                continue
            raw = node.try_get_context(f.name)
            if raw is None:
                continue
            parse = _PARSERS.get(str(f.type), _parse_str)
            try:
                values[f.name] = parse(raw)
            except (TypeError, ValueError) as exc:
                problems.append(f"{f.name}: {exc}")
        domain = _custom_domain(node, problems)
        if domain is not None:
            values["custom_domain"] = domain
        if problems:
            raise SettingsError("invalid CDK context:\n  " + "\n  ".join(problems))
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Check ranges and cross-field rules; raise :class:`SettingsError` listing all."""
        problems = [message for ok, message in self._checks() if not ok]
        if problems:
            raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))

    def _checks(self) -> list[tuple[bool, str]]:
        return [
            (bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}", self.stack_name)),
             "stack_name: letters, digits and hyphens, starting with a letter"),
            (1 <= self.event_retention_days <= 3650, "event_retention_days: 1..3650"),
            (self.log_retention_days in LOG_RETENTION_DAYS,
             f"log_retention_days: one of {sorted(LOG_RETENTION_DAYS)}"),
            (128 <= self.webhook_memory_mb <= 10240, "webhook_memory_mb: 128..10240"),
            (1 <= self.webhook_timeout_seconds <= 14,
             "webhook_timeout_seconds: 1..14 (Recall waits 15 s for an answer)"),
            (self.webhook_throttle_rate >= 1 and self.webhook_throttle_burst >= 1,
             "webhook_throttle_rate/burst: at least 1"),
            ((self.relay_cpu, self.relay_memory_mib) in _FARGATE_SIZES,
             "relay_cpu/relay_memory_mib: a valid Fargate combination, e.g. 512/1024, 1024/2048"),
            (0 <= self.relay_min_count <= self.relay_desired_count <= self.relay_max_count,
             "relay counts: 0 <= relay_min_count <= relay_desired_count <= relay_max_count"),
            (self.relay_max_count >= 1, "relay_max_count: at least 1"),
            (1 <= self.relay_sessions_per_task_target <= self.relay_max_sessions_per_task,
             "relay_sessions_per_task_target: 1..relay_max_sessions_per_task (scale out "
             "before admission starts refusing calls)"),
            (self.relay_max_sessions_per_subject >= 0, "relay_max_sessions_per_subject: >= 0"),
            (self.relay_max_session_seconds >= 60, "relay_max_session_seconds: at least 60"),
            (1 <= self.relay_drain_seconds <= MAX_STOP_TIMEOUT_SECONDS - 10,
             f"relay_drain_seconds: 1..{MAX_STOP_TIMEOUT_SECONDS - 10} (the drain must end "
             f"before ECS's {MAX_STOP_TIMEOUT_SECONDS} s SIGKILL)"),
            (0 <= self.relay_deregistration_delay_seconds <= 3600,
             "relay_deregistration_delay_seconds: 0..3600"),
            (60 <= self.relay_idle_timeout_seconds <= 4000,
             "relay_idle_timeout_seconds: 60..4000 (well above the relay's 20 s pings)"),
            (1 <= self.relay_stickiness_seconds <= 7 * 86400,
             "relay_stickiness_seconds: 1..604800"),
            (self.cloudfront_price_class in {"PriceClass_All", "PriceClass_200", "PriceClass_100"},
             "cloudfront_price_class: PriceClass_All, PriceClass_200 or PriceClass_100"),
            (self.cloudfront_prefix_list_id is None
             or bool(re.fullmatch(r"pl-[0-9a-f]{8,17}", self.cloudfront_prefix_list_id)),
             "cloudfront_prefix_list_id: pl-<hex>"),
            (self.alarm_email is None or bool(_EMAIL.match(self.alarm_email)),
             "alarm_email: an e-mail address"),
            (self.webhook_log_level in _LOG_LEVELS and self.relay_log_level in _LOG_LEVELS,
             f"webhook_log_level/relay_log_level: one of {sorted(_LOG_LEVELS)}"),
        ]  # fmt: skip

    @property
    def relay_models(self) -> tuple[str, ...]:
        """Models a relay client may pick with ``?model=``: the default first."""
        rest = tuple(m for m in self.relay_allowed_models if m != self.relay_model)
        return (self.relay_model, *rest)


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
    "int": _parse_int,
    "str": _parse_str,
    "str | None": _parse_optional_str,
    "tuple[str, ...]": _parse_str_tuple,
}


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
