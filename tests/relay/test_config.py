"""RelayConfig.from_env: the contract's variables, its defaults, every problem at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from relay.config import DEFAULT_MODEL, ENV_VARS, RelayConfig
from relay.errors import ConfigError

GOOD = {"RELAY_TOKEN_SECRET": "s" * 40, "OPENAI_API_KEY": "sk-test"}


class RecordingEnviron(Mapping[str, str]):
    """An environment that remembers which names were read."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self._values[key]

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.read.add(key)
        return self._values.get(key, default)

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("from_env must not enumerate the environment")

    def __len__(self) -> int:
        return len(self._values)


def test_env_vars_is_exactly_what_from_env_reads(tmp_path: Path) -> None:
    """Infra sets exactly ENV_VARS: from_env reads all of them and nothing else."""
    agent = tmp_path / "agent.yaml"
    agent.write_text("voice: cedar\n")
    environ = RecordingEnviron({**GOOD, "AGENT_CONFIG": str(agent)})
    RelayConfig.from_env(environ)
    assert environ.read == ENV_VARS


def test_defaults_match_the_contract() -> None:
    """With only the secrets set, the relay runs on the documented defaults."""
    config = RelayConfig.from_env(GOOD)
    assert config.port == 8080
    assert config.internal_port == 8081
    assert config.host == "0.0.0.0"
    assert config.upstream_url == "wss://api.openai.com/v1/realtime"
    assert config.model == DEFAULT_MODEL == "gpt-realtime-2.1"
    assert config.models == frozenset({DEFAULT_MODEL})
    assert config.drain_seconds == 90
    assert config.ping_interval == 20
    assert config.metrics_namespace == "RecallVoiceAgent/Relay"
    assert config.metrics_service == "relay"
    assert config.ecs_agent_uri is None
    assert config.record_retention_days == 30
    assert config.reattach_seconds == 30
    assert config.reattach_buffer_bytes == 4 * 2**20
    assert 0 < config.rollover_seconds < 3600  # before OpenAI's 60-minute cap


def test_values_are_parsed() -> None:
    """Every variable reaches its field."""
    config = RelayConfig.from_env(
        {
            **GOOD,
            "PORT": "9000",
            "RELAY_INTERNAL_PORT": "9001",
            "RELAY_HOST": "127.0.0.1",
            "OPENAI_REALTIME_URL": "ws://127.0.0.1:1/v1/realtime",
            "OPENAI_REALTIME_MODEL": "gpt-realtime-2",
            "RELAY_ALLOWED_MODELS": "gpt-realtime-2.1-mini, gpt-realtime-1.5",
            "RELAY_MAX_SESSIONS": "0",
            "RELAY_MAX_SESSIONS_PER_SUBJECT": "3",
            "DRAIN_SECONDS": "30",
            "RELAY_MAX_SESSION_SECONDS": "600",
            "RELAY_MAX_FRAME_BYTES": "65536",
            "RELAY_PING_INTERVAL": "5",
            "TABLE_NAME": "t",
            "LOG_LEVEL": "debug",
            "ECS_AGENT_URI": "http://169.254.170.2/api/x",
            "RELAY_RECORD_RETENTION_DAYS": "7",
            "RELAY_REATTACH_SECONDS": "0",
            "RELAY_REATTACH_BUFFER_BYTES": "1024",
            "RELAY_ROLLOVER_SECONDS": "0",
        }
    )
    assert (config.record_retention_days, config.reattach_seconds) == (7, 0)
    assert (config.reattach_buffer_bytes, config.rollover_seconds) == (1024, 0)
    assert (config.port, config.host, config.model) == (9000, "127.0.0.1", "gpt-realtime-2")
    assert config.models == {"gpt-realtime-2", "gpt-realtime-2.1-mini", "gpt-realtime-1.5"}
    assert (config.max_sessions, config.max_sessions_per_subject) == (0, 3)
    assert (config.drain_seconds, config.max_session_seconds) == (30, 600)
    assert (config.max_frame_bytes, config.ping_interval) == (65536, 5)
    assert (config.table_name, config.log_level) == ("t", "DEBUG")
    assert config.ecs_agent_uri == "http://169.254.170.2/api/x"
    assert config.internal_port == 9001


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"RELAY_INTERNAL_PORT": "70000"}, "RELAY_INTERNAL_PORT must be an integer 0-65535"),
        ({"RELAY_INTERNAL_PORT": "8080"}, "RELAY_INTERNAL_PORT must differ from PORT"),
        ({"PORT": "9000", "RELAY_INTERNAL_PORT": "9000"}, "must differ from PORT"),
    ],
    ids=["out-of-range", "same-as-default-port", "same-as-port"],
)
def test_internal_port_must_be_a_port_of_its_own(environ: dict[str, str], problem: str) -> None:
    """The internal listener cannot share the public port (the ALB would reach it)."""
    with pytest.raises(ConfigError) as error:
        RelayConfig.from_env({**GOOD, **environ})
    assert any(problem in p for p in error.value.problems)


def test_internal_port_zero_means_any_free_port() -> None:
    """0 binds any free port (local runs); the registry records the port bound."""
    assert RelayConfig.from_env({**GOOD, "RELAY_INTERNAL_PORT": "0"}).internal_port == 0


def test_secrets_stay_out_of_repr() -> None:
    """Printing the config never shows the token secret or the API key."""
    text = repr(RelayConfig.from_env(GOOD))
    assert "s" * 40 not in text
    assert "sk-test" not in text


def test_every_problem_is_reported_at_once() -> None:
    """A broken environment lists all its problems in one ConfigError."""
    with pytest.raises(ConfigError) as error:
        RelayConfig.from_env(
            {
                "RELAY_TOKEN_SECRET": "short",
                "PORT": "http",
                "RELAY_MAX_SESSIONS": "-1",
                "DRAIN_SECONDS": "300",
                "RELAY_PING_INTERVAL": "0",
                "OPENAI_REALTIME_URL": "http://example.com",
                "AGENT_CONFIG": "/nonexistent/agent.yaml",
                "LOG_LEVEL": "LOUD",
                "RELAY_RECORD_RETENTION_DAYS": "0",
                "RELAY_REATTACH_SECONDS": "-1",
                "RELAY_ROLLOVER_SECONDS": "soon",
            }
        )
    text = "\n".join(error.value.problems)
    for name in (
        "RELAY_TOKEN_SECRET",
        "PORT",
        "RELAY_MAX_SESSIONS",
        "DRAIN_SECONDS",
        "RELAY_PING_INTERVAL",
        "OPENAI_REALTIME_URL",
        "AGENT_CONFIG",
        "LOG_LEVEL",
        "RELAY_RECORD_RETENTION_DAYS",
        "RELAY_REATTACH_SECONDS",
        "RELAY_ROLLOVER_SECONDS",
    ):
        assert name in text
    assert len(error.value.problems) == 11


def test_openai_key_required_only_for_openai() -> None:
    """The key is required against OpenAI, optional against a local simulator."""
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        RelayConfig.from_env({"RELAY_TOKEN_SECRET": "s" * 40})
    config = RelayConfig.from_env(
        {"RELAY_TOKEN_SECRET": "s" * 40, "OPENAI_REALTIME_URL": "ws://127.0.0.1:9/v1/realtime"}
    )
    assert config.openai_api_key == ""


def test_python_m_relay_refuses_a_bad_environment_with_exit_2() -> None:
    """``python -m relay`` with a broken environment logs every problem and exits 2."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(RELAY_TOKEN_SECRET="too-short-secret", PORT="eighty")
    done = subprocess.run(
        [sys.executable, "-m", "relay"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert line["message"] == "invalid configuration"
    assert any("PORT" in p for p in line["problems"])
    assert any("RELAY_TOKEN_SECRET" in p for p in line["problems"])
    assert "too-short-secret" not in done.stdout
