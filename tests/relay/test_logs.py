"""What reaches the relay's logs: its own lines by allow-list, third-party loggers only at
WARNING unless named (issue 12, item 7)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import boto3
import pytest
from websockets.exceptions import InvalidStatus

from relay.auth import TOKEN_HINT
from relay.config import RelayConfig
from relay.errors import ConfigError
from relay.logs import JsonFormatter, configure_logging
from relay.server import Relay
from tests.relay.conftest import SECRET, SENSITIVE, open_client

#: An AWS session token as ECS task roles hand them out (botocore signs it into a header).
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJGMEQCIHsessiontoken0123456789"
SENSITIVE.add(SESSION_TOKEN)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the process's logging back as it was (configure_logging changes it globally)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {
        name: logger.level
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for name, value in levels.items():
            logging.getLogger(name).setLevel(value)


def _dynamodb_call(endpoint: str) -> None:
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        aws_session_token=SESSION_TOKEN,
    )
    client.list_tables()


@pytest.mark.usefixtures("restore_logging")
def test_relay_debug_keeps_botocore_quiet(dynamodb_endpoint: str) -> None:
    """LOG_LEVEL=DEBUG turns up the relay's own lines, not botocore's signed headers."""
    stream = io.StringIO()
    configure_logging("DEBUG", stream)
    _dynamodb_call(dynamodb_endpoint)
    logging.getLogger("relay.session").debug("relay detail", extra={"session_id": "s-1"})
    out = stream.getvalue()
    assert SESSION_TOKEN not in out
    assert "x-amz-security-token" not in out.lower()
    loggers = {json.loads(line)["logger"] for line in out.splitlines()}
    assert loggers == {"relay.session"}


@pytest.mark.usefixtures("restore_logging")
def test_a_named_third_party_logger_logs_without_credentials(dynamodb_endpoint: str) -> None:
    """LOG_LEVEL=INFO,botocore=DEBUG shows botocore's lines, with credentials taken out."""
    stream = io.StringIO()
    configure_logging("INFO,botocore=DEBUG", stream)
    _dynamodb_call(dynamodb_endpoint)
    out = stream.getvalue()
    assert '"logger": "botocore' in out
    assert SESSION_TOKEN not in out
    assert "wJalrXUtnFEMI" not in out


@pytest.mark.usefixtures("restore_logging")
def test_extras_outside_the_allow_list_are_redacted() -> None:
    """A field nobody declared safe (a transcript, a model event) is written as [redacted]."""
    stream = io.StringIO()
    configure_logging("INFO", stream)
    logging.getLogger("relay.records").warning(
        "seed refused",
        extra={"session_id": "s-2", "event": '{"transcript":"my pin is 4321"}', "text": "hi"},
    )
    entry = json.loads(stream.getvalue())
    assert entry["session_id"] == "s-2"
    assert entry["event"] == entry["text"] == "[redacted]"
    assert "4321" not in stream.getvalue()


async def test_missing_token_hint_reaches_the_log_intact(relay: Relay) -> None:
    """The refusal's hint (Authorization: Bearer <relay token>...) is logged as written."""
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter().format(record))

    handler = Capture(logging.INFO)
    logging.getLogger("relay").addHandler(handler)
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with open_client(relay):
                pass
    finally:
        logging.getLogger("relay").removeHandler(handler)
    assert refused.value.response.status_code == 401
    assert TOKEN_HINT in refused.value.response.body.decode()
    refusals = [json.loads(line) for line in lines if "handshake refused" in line]
    assert refusals
    assert refusals[0]["reason"] == f"missing relay token: {TOKEN_HINT}"


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("debug", "DEBUG"),
        ("DEBUG,botocore=debug", "DEBUG,botocore=DEBUG"),
        ("info, urllib3=WARNING ,botocore.auth=ERROR", "INFO,urllib3=WARNING,botocore.auth=ERROR"),
    ],
)
def test_log_level_names_other_loggers(value: str, stored: str) -> None:
    """LOG_LEVEL takes the relay's level and name=LEVEL pairs, normalised."""
    config = RelayConfig.from_env(
        {"RELAY_TOKEN_SECRET": SECRET, "OPENAI_API_KEY": "sk-x", "LOG_LEVEL": value}
    )
    assert config.log_level == stored


@pytest.mark.parametrize("value", ["LOUD", "DEBUG,botocore=LOUD", "DEBUG,=INFO", "NOTSET"])
def test_bad_log_levels_are_refused(value: str) -> None:
    """A level that is not one is a configuration error that says so."""
    with pytest.raises(ConfigError) as refused:
        RelayConfig.from_env({"RELAY_TOKEN_SECRET": SECRET, "LOG_LEVEL": value})
    assert "LOG_LEVEL" in str(refused.value)
