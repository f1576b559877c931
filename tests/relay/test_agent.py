"""AgentConfig: defaults and the documented file become one GA session.update; bad files refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relay.agent import AgentConfig, load_agent_config
from relay.errors import ConfigError
from tests.conftest import ROOT

EXAMPLE = ROOT / "relay_container" / "agent.yaml"


def test_default_update_is_ga_shaped() -> None:
    """The built-in config is a GA session.update: type realtime, PCM16 24 kHz, VAD, voice."""
    event = json.loads(AgentConfig().session_update())
    session = event["session"]
    assert event["type"] == "session.update"
    assert session["type"] == "realtime"
    assert session["output_modalities"] == ["audio"]
    audio_in, audio_out = session["audio"]["input"], session["audio"]["output"]
    assert audio_in["format"] == audio_out["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio_in["turn_detection"]["type"] == "server_vad"
    assert audio_in["transcription"] == {"model": "gpt-realtime-whisper"}
    assert audio_out["voice"] == "marin"
    assert "modalities" not in session
    assert "temperature" not in session


def test_the_documented_example_file_loads() -> None:
    """relay_container/agent.yaml, the deployed agent, is valid and means what it says."""
    config = load_agent_config(EXAMPLE)
    assert config.voice == "marin"
    assert config.locked_fields == ("instructions", "tools", "model")
    assert config.locked_fields_error is False
    assert "meeting" in config.instructions


def test_locked_values_are_what_a_client_is_compared_with() -> None:
    """The operator's values include tools: [] when the agent has none (kept if sent)."""
    values = load_agent_config(EXAMPLE).locked_values()
    assert values["tools"] == []
    assert values["instructions"] == load_agent_config(EXAMPLE).instructions


def test_semantic_vad_and_no_transcription_from_json(tmp_path: Path) -> None:
    """A JSON file can pick semantic VAD and turn transcription off."""
    path = tmp_path / "agent.json"
    path.write_text(
        json.dumps(
            {
                "turn_detection": {"type": "semantic_vad", "eagerness": "low"},
                "transcription": None,
                "voice": "cedar",
            }
        )
    )
    session = load_agent_config(path).session()
    assert session["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "low",
        "create_response": True,
        "interrupt_response": True,
    }
    assert session["audio"]["input"]["transcription"] is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("voice: [1, 2]\n", "voice"),
        ("speed: 9\n", "speed"),
        ("turn_detection: {type: magic}\n", "turn_detection.type"),
        ("instructons: typo\n", "instructons"),
        ("- a list\n", "mapping"),
        ("voice: 'unterminated\n", "not valid JSON/YAML"),
        ("locked_fields_error: sometimes\n", "locked_fields_error"),
    ],
    ids=[
        "wrong-type",
        "out-of-range",
        "unknown-vad",
        "unknown-key",
        "not-a-mapping",
        "syntax",
        "locked-fields-error-not-bool",
    ],
)
def test_bad_agent_files_are_refused_at_start(tmp_path: Path, text: str, problem: str) -> None:
    """A bad AGENT_CONFIG stops start-up with a message naming the field."""
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_agent_config(path)
    assert problem in str(error.value)
