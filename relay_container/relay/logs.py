"""JSON-lines logging for the relay: one object per line on stdout.

Context travels in ``extra=`` (``session_id``, ``sub``, ``jti``, counters), never in the
message text. Lines never carry a token, key, query string or audio: callers do not pass
them, and as a last guard any value that looks like a bearer credential or a JWT is
replaced before the line is written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Final, TextIO

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
#: Bearer credentials, JWTs (three base64url parts starting with eyJ), OpenAI keys.
_SECRET_PATTERN: Final = re.compile(
    r"(?i:bearer\s+)\S+|eyJ[\w-]+\.[\w-]+\.[\w-]*|sk-[\w-]{8,}|openai-insecure-api-key\.\S+"
)


def redact(text: str) -> str:
    """Replace anything shaped like a credential with ``[redacted]``."""
    return _SECRET_PATTERN.sub("[redacted]", text)


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, logger, message, extras."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record, then redact anything shaped like a credential."""
        return redact(self.render(record))

    def render(self, record: logging.LogRecord) -> str:
        """The record as JSON; extras are merged at the top level (no redaction)."""
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (stdout) as JSON lines at ``level``."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # websockets' own loggers print handshake headers at DEBUG (Authorization included):
    # keep them at WARNING whatever LOG_LEVEL says.
    logging.getLogger("websockets").setLevel(logging.WARNING)
