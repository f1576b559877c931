"""``voicebot bot create --instructions/--agent``: the persona the CLI stores is the one the
relay loads for the bot's session, a locked field is refused before Recall is called, and
``bot show`` lists the notes the agent took."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relay.agent import load_agent_config
from relay.bot_binding import BindingStore
from relay.overlay import merge
from relay.tool_calls import ToolCall
from relay.tools.builtins import ToolContext
from relay.tools.registry import build_registry
from tests.cli.conftest import run_cli

MEETING = "https://meet.google.com/abc-defg-hij"
PAGE = "https://agent.example.com/"

OPERATOR_YAML = """
instructions: Operator instructions.
voice: marin
tools:
  - builtin: take_note
  - builtin: list_notes
  - builtin: leave_meeting
bot_overridable: [instructions, greeting, tools]
"""


def operator_file(tmp_path: Path) -> str:
    path = tmp_path / "agent.yaml"
    path.write_text(OPERATOR_YAML)
    return str(path)


def create(table: str, env: dict[str, str], *extra: str):
    args = ["bot", "create", "--meeting-url", MEETING, "--page-url", PAGE, "--table", table]
    return run_cli([*args, "--json", *extra], env)


async def test_persona_stored_by_the_cli_is_applied_by_the_relay(
    fake_recall, recall_env, table_name, dynamodb_endpoint, tmp_path
):
    """The relay loads the bot and persona bot create recorded, keyed by the token's session."""
    env = {**recall_env, "AWS_ENDPOINT_URL": dynamodb_endpoint}
    overlay = tmp_path / "pirate.yaml"
    overlay.write_text("instructions: Talk like a pirate.\ngreeting: Ahoy!\ntools: [take_note]\n")
    operator = operator_file(tmp_path)
    result = create(table_name, env, "--agent", str(overlay), "--agent-config", operator)
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert created["persona"] == ["greeting", "instructions", "tools"]

    binding = await BindingStore(table_name, endpoint_url=dynamodb_endpoint).load_overlay(
        created["session_id"]
    )
    assert binding is not None
    assert binding.bot_id == created["bot_id"]
    agent = merge(load_agent_config(Path(operator)), binding.overlay)
    assert agent.instructions == "Talk like a pirate."
    assert agent.greeting == "Ahoy!"
    assert agent.voice == "marin"
    assert [t.name for t in agent.tools] == ["take_note"]  # type: ignore[union-attr]


async def test_session_without_a_bot_create_has_no_binding(table_name, dynamodb_endpoint):
    """A session the CLI did not create (an SDK client, the dev page) has no bot."""
    store = BindingStore(table_name, endpoint_url=dynamodb_endpoint)
    assert await store.load_overlay("some-other-session") is None


def test_locked_field_is_refused_before_recall_is_called(
    fake_recall, recall_env, table_name, dynamodb_endpoint, tmp_path
):
    """A persona setting a field the operator locked fails with a clear line; no bot exists."""
    env = {**recall_env, "AWS_ENDPOINT_URL": dynamodb_endpoint}
    overlay = tmp_path / "bot.yaml"
    overlay.write_text("voice: cedar\n")
    result = create(
        table_name, env, "--agent", str(overlay), "--agent-config", operator_file(tmp_path)
    )
    assert result.exit_code == 2
    assert f"--agent {overlay} voice: locked by the operator's agent config" in result.output
    assert "bot_overridable allows: instructions, greeting, tools" in result.output
    assert fake_recall.requests == []


def test_instructions_flag_checked_against_agent_config_env(
    fake_recall, recall_env, table_name, dynamodb_endpoint, tmp_path
):
    """--instructions is refused when AGENT_CONFIG locks instructions."""
    locked = tmp_path / "locked.yaml"
    locked.write_text("bot_overridable: [voice]\n")
    env = {**recall_env, "AWS_ENDPOINT_URL": dynamodb_endpoint, "AGENT_CONFIG": str(locked)}
    result = create(table_name, env, "--instructions", "Be rude.")
    assert result.exit_code == 2
    assert "--instructions instructions: locked" in result.output
    assert fake_recall.requests == []


def test_persona_needs_the_table(fake_recall, recall_env):
    """A persona cannot be stored with --no-record: refused up front."""
    args = ["bot", "create", "--meeting-url", MEETING, "--page-url", PAGE, "--no-record"]
    result = run_cli([*args, "--instructions", "Hi."], recall_env)
    assert result.exit_code == 2
    assert "--no-record" in result.output
    assert fake_recall.requests == []


def test_unreadable_or_hostile_agent_file_is_one_line(fake_recall, recall_env, tmp_path):
    """A missing, non-mapping or huge --agent file is one clear error line."""
    cases = {
        "missing.yaml": None,
        "list.yaml": "- a\n- b\n",
        "huge.yaml": "instructions: " + "x" * 300_000,
        "bad.yaml": "instructions: [unclosed\n",
    }
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        args = ["bot", "create", "--meeting-url", MEETING, "--page-url", PAGE, "--no-record"]
        result = run_cli([*args, "--agent", str(path)], recall_env)
        assert result.exit_code == 2, (name, result.output)
        assert result.output.startswith("error: --agent"), (name, result.output)
    assert fake_recall.requests == []


async def test_bot_show_lists_the_notes_the_agent_took(
    fake_recall, recall_env, table_name, dynamodb_endpoint
):
    """A note taken by the relay's take_note appears in voicebot bot show."""
    env = {**recall_env, "AWS_ENDPOINT_URL": dynamodb_endpoint}
    created = json.loads(create(table_name, env).output)
    tools = load_agent_config(None).model_validate({"tools": [{"builtin": "take_note"}]}).tools
    registry = build_registry(tools, table_name=table_name, dynamodb_endpoint=dynamodb_endpoint)
    ctx = ToolContext(session_id=created["session_id"], bot_id=created["bot_id"])
    call = ToolCall("call_1", "take_note", '{"text": "Ship it on Friday"}', "resp_1")
    assert (await registry.run(call, ctx)).ok

    shown = run_cli(["bot", "show", created["bot_id"], "--table", table_name], env)
    assert shown.exit_code == 0, shown.output
    assert "Notes (1)" in shown.output
    assert "Ship it on Friday" in shown.output
    as_json = json.loads(
        run_cli(["bot", "show", created["bot_id"], "--table", table_name, "--json"], env).output
    )
    assert [n["text"] for n in as_json["notes"]] == ["Ship it on Friday"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "--instructions instructions: String should have at least 1 character"),
        ("x" * 100_001, "--instructions instructions: String should have at most 100000"),
    ],
    ids=["empty", "oversized"],
)
def test_bad_instructions_are_refused_before_recall(fake_recall, recall_env, text, expected):
    """Empty or oversized --instructions fail with the agent schema's wording."""
    args = ["bot", "create", "--meeting-url", MEETING, "--page-url", PAGE, "--table", "t"]
    result = run_cli([*args, "--instructions", text], recall_env)
    assert result.exit_code == 2
    assert expected in result.output
    assert fake_recall.requests == []
