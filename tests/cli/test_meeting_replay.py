"""The scripted meeting (``voicebot dev --meeting``) driving a relay and the simulator.

The relay and the simulated model run in-process on ports, the model transcribing each
spoken line of the script (``--transcripts``); the replay acts as Recall on the relay's
events route and as the agent page on ``/v1/realtime``. The example meeting in the
repository (``make dev MEETING=examples/meeting.yaml``) is the one replayed.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cli.meeting_replay import agent_overrides, load_script, replay, spoken_lines
from relay.agent import AgentConfig
from relay.server import Relay
from relay.simulator import SimulatorOptions, listening_url, serve_simulator
from tests.relay.conftest import mint, relay_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "meeting.yaml"
RECALL_SECRET = "whsec_" + base64.b64encode(b"dev-workspace-secret-of-32-bytes").decode()


@pytest.fixture
async def scripted_model() -> AsyncIterator[str]:
    script = load_script(EXAMPLE)
    options = SimulatorOptions(
        pace=0.0, reply_ms=300, transcripts=tuple(spoken_lines(script).splitlines())
    )
    server = await serve_simulator("127.0.0.1", 0, options)
    try:
        yield listening_url(server)
    finally:
        server.close()
        await server.wait_closed()


async def test_the_example_meeting_is_answered_when_the_agent_is_addressed(
    scripted_model: str,
) -> None:
    script = load_script(EXAMPLE)
    agent = AgentConfig.model_validate(agent_overrides(script))
    config = relay_config(scripted_model, recall_webhook_secret=RECALL_SECRET)
    relay = Relay(config, agent=agent)
    await relay.start()
    said: list[str] = []
    try:
        answers = await replay(
            script,
            relay_url=relay.url.removesuffix("/v1/realtime"),
            token=mint("dev-meeting-test"),
            recall_secret=RECALL_SECRET,
            session_id="dev-meeting-test",
            say=said.append,
        )
    finally:
        await relay.close()
    # Linus and Ken name the agent aloud, Ada in the chat; nobody else addresses it.
    assert answers == 3
    answered_after = [said[i - 1].strip() for i, line in enumerate(said) if "→" in line]
    assert [line.split(":")[0] for line in answered_after] == ["Linus", "Ken", "Ada (chat)"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("lines: []", "lines"),
        ("lines: [{speaker: Ada}]", "exactly one of says or chat"),
        ("lines: [{speaker: Ada, says: hi, chat: hi}]", "exactly one of says or chat"),
        ("lines: [{speaker: Ada, shout: hi}]", "shout"),
        ("{", "while parsing"),
    ],
)
def test_a_bad_script_is_refused_naming_the_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "meeting.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem):
        load_script(path)


def test_voicebot_dev_refuses_a_bad_script_before_starting_anything(tmp_path: Path) -> None:
    from tests.cli.conftest import run_cli

    path = tmp_path / "meeting.yaml"
    path.write_text("lines: [{speaker: Ada}]")
    result = run_cli(["dev", "--meeting", str(path)], {})
    assert result.exit_code == 2
    assert "exactly one of says or chat" in result.output
