"""JSON-lines logging for the relay: one object per line on stdout, by allow-list.

What a line may carry is listed, not guessed at:

- **Loggers.** The relay's own loggers (``relay.*``) log at ``LOG_LEVEL``; every other
  logger (botocore, boto3, urllib3, websockets, asyncio...) stays at WARNING unless
  ``LOG_LEVEL`` names it (``LOG_LEVEL=DEBUG,botocore=DEBUG``). botocore at DEBUG prints
  signed request headers (``x-amz-security-token``) and request bodies (transcripts):
  nobody gets those by turning the relay's own level up.
- **Fields.** Context travels in ``extra=``; only the fields in ``ALLOWED_FIELDS``
  (identifiers, counters, states, durations, the relay's own reasons) are written as
  they are. Any other extra is written as ``"[redacted]"``: a new field shows up in the
  logs only once someone has decided it is safe to.
- **Text.** The relay's own messages are its own literals and pass unchanged. Messages
  of third-party loggers (only at WARNING, or named) additionally pass through
  ``redact``, a last guard against credential shapes; it is not what keeps secrets out.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Final, TextIO

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
#: Extra fields written as they are. Never add one that can hold a token, a key, a
#: query string, audio, a transcript or a model event.
ALLOWED_FIELDS: Final = frozenset(
    {
        # who and which
        "session_id",
        "connection_id",
        "sub",
        "jti",
        "model",
        "peer",
        "table",
        "url",
        "upstream",
        "event_type",
        "fields",
        # outcome
        "status",
        "error",
        "error_code",
        "reason",
        "problems",
        "close_code",
        "close_reason",
        "upstream_close_code",
        "forced",
        "limit",  # a bill limit's name (relay.usage_meter.Limit)
        "compiled",
        "protection_enabled",
        # counters and durations
        "received",  # meeting events connection (relay.meeting_socket)
        "delivered",
        "refused",
        "dropped",
        "duration_ms",
        "connect_ms",
        "detached_ms",
        "waited_ms",
        "drain_seconds",
        "reattach_seconds",
        "frames_up",
        "frames_down",
        "bytes_up",
        "bytes_down",
        "buffered_frames",
        "reattached",
        "rollovers",
        "turns",
        "seeded_turns",
        "refused_setup_events",
        "live_sessions",
        "max_sessions",
        "closed_at_deadline",
        "records_written",
        "records_dropped",
        "records_flushed",
        "records_unwritten",
        "record_write_failures",
        "failed_attempts",
        "queued",
    }
)
REDACTED: Final = "[redacted]"
#: The relay's own logger tree (at LOG_LEVEL); everything else is third-party.
OWN_LOGGER: Final = "relay"
THIRD_PARTY_LEVEL: Final = logging.WARNING
#: Credential shapes (bearer values, JWTs, OpenAI keys, and the value of any header or
#: parameter named like a token, signature, credential, secret or key, Python bytes reprs
#: included), used only on third-party text.
_SECRET_PATTERN: Final = re.compile(
    r"(?i:bearer\s+)[\w.~+/=-]+|eyJ[\w-]+\.[\w-]+\.[\w-]*|sk-[\w-]{8,}"
    r"|(?i:[\w-]*(?:token|signature|credential|secret|password|api[_-]?key)[\w-]*)"
    r"[\"']?\s*[:=]\s*b?[\"']?[^\s,\"'&]+"
)


def redact(text: str) -> str:
    """Replace anything shaped like a credential with ``[redacted]`` (third-party text)."""
    return _SECRET_PATTERN.sub(REDACTED, text)


def _own(name: str) -> bool:
    return name == OWN_LOGGER or name.startswith(OWN_LOGGER + ".")


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, logger, message, allowed extras."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record; third-party text also passes the credential-shape guard."""
        line = self.render(record)
        return line if _own(record.name) else redact(line)

    def render(self, record: logging.LogRecord) -> str:
        """The record as JSON; extras outside ALLOWED_FIELDS are written as ``[redacted]``."""
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value if key in ALLOWED_FIELDS else REDACTED
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def parse_levels(spec: str) -> tuple[str, dict[str, str]]:
    """Split ``LOG_LEVEL`` (``"INFO"`` or ``"DEBUG,botocore=DEBUG"``) into the relay's level
    and the levels of named loggers.

    Raises:
        ValueError: a part that is not a level or ``name=LEVEL`` (the message says which).
    """
    own = "INFO"
    named: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, sep, level = part.rpartition("=")
        level = level.strip().upper()
        if level not in logging.getLevelNamesMapping() or level == "NOTSET":
            raise ValueError(f"{part!r} is not a log level")
        if not sep:
            own = level
        elif name.strip():
            named[name.strip()] = level
        else:
            raise ValueError(f"{part!r} names no logger")
    return own, named


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send log records to ``stream`` (stdout) as JSON lines.

    Args:
        level: ``LOG_LEVEL``: the relay's own level, optionally followed by
            ``name=LEVEL`` pairs for third-party loggers (see ``parse_levels``).
    """
    own, named = parse_levels(level)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(THIRD_PARTY_LEVEL)
    _reset_third_party_levels()
    logging.getLogger(OWN_LOGGER).setLevel(own)
    for name, value in named.items():
        logging.getLogger(name).setLevel(value)


def _reset_third_party_levels() -> None:
    """Third-party loggers set more verbose than WARNING inherit the root's level again."""
    loggers: Mapping[str, object] = logging.Logger.manager.loggerDict
    for name, logger in loggers.items():
        if (
            isinstance(logger, logging.Logger)
            and not _own(name)
            and logging.NOTSET < logger.level < THIRD_PARTY_LEVEL
        ):
            logger.setLevel(logging.NOTSET)
