"""``voicebot bot create`` sends Recall's ``automatic_leave`` from the agent config.

Against the fake Recall API on loopback; the shape is the one docs/recall.md records
(seconds; ``silence_detection`` and ``everyone_left_timeout`` as ``{timeout,
activate_after}``; ``in_call_recording_timeout`` as the hard cap).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.persona import PersonaError, automatic_leave, operator_agent
from tests.cli.conftest import run_cli

MEETING = "https://meet.google.com/abc-defg-hij"
PAGE = "https://agent.example.com/"
#: Every field Recall documents for automatic_leave (docs/recall.md).
DOCUMENTED = {
    "waiting_room_timeout",
    "noone_joined_timeout",
    "everyone_left_timeout",
    "in_call_not_recording_timeout",
    "recording_permission_denied_timeout",
    "silence_detection",
    "bot_detection",
    "in_call_recording_timeout",
}


def create(env: dict[str, str], *extra: str):
    args = ["bot", "create", "--meeting-url", MEETING, "--page-url", PAGE, "--no-record"]
    return run_cli([*args, *extra], env)


def test_the_default_agent_config_replaces_recalls_one_hour_defaults(fake_recall, recall_env):
    result = create(recall_env)
    assert result.exit_code == 0, result.output
    [request] = fake_recall.requests
    leave = request.body["automatic_leave"]
    assert set(leave) <= DOCUMENTED
    assert leave["silence_detection"] == {"timeout": 600, "activate_after": 300}
    assert leave["everyone_left_timeout"] == {"timeout": 30, "activate_after": 0}
    assert leave["waiting_room_timeout"] == 600
    assert leave["noone_joined_timeout"] == 600
    # bill.max_minutes 120 + hard_cap_margin_minutes 5, in seconds.
    assert leave["in_call_recording_timeout"] == 125 * 60
    assert all(isinstance(v, int) for v in leave.values() if not isinstance(v, dict))


def test_the_operators_config_sets_it_and_null_keeps_recalls_default(
    fake_recall, recall_env, tmp_path: Path
):
    config = tmp_path / "agent.yaml"
    config.write_text(
        "bill: {max_minutes: 30, hard_cap_margin_minutes: 2}\n"
        "automatic_leave:\n"
        "  silence_detection: {timeout: 120, activate_after: 60}\n"
        "  waiting_room_timeout: null\n"
    )
    result = create(recall_env, "--agent-config", str(config))
    assert result.exit_code == 0, result.output
    leave = fake_recall.requests[0].body["automatic_leave"]
    assert leave["silence_detection"] == {"timeout": 120, "activate_after": 60}
    assert "waiting_room_timeout" not in leave
    assert leave["in_call_recording_timeout"] == 32 * 60


def test_no_minutes_limit_means_no_hard_cap(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("bill: {max_minutes: null}\n")
    assert "in_call_recording_timeout" not in automatic_leave(operator_agent(str(config)), None)


def test_a_bots_lower_minutes_limit_lowers_its_hard_cap(tmp_path: Path) -> None:
    agent = operator_agent(None)
    leave = automatic_leave(agent, {"bill": {"max_minutes": 10}})
    assert leave["in_call_recording_timeout"] == 15 * 60
    with pytest.raises(PersonaError, match=r"bill\.max_minutes"):
        automatic_leave(agent, {"bill": {"max_minutes": 10_000}})


@pytest.mark.parametrize(
    ("yaml", "key"),
    [
        ("automatic_leave: {waiting_room_timeout: -5}", "automatic_leave.waiting_room_timeout"),
        ("automatic_leave: {noone_joined_timeout: 99999999}", "automatic_leave.noone_joined"),
        ("automatic_leave: {silence_detection: {timeout: x}}", "automatic_leave.silence_detect"),
        ("automatic_leave: {everyone_left: 5}", "automatic_leave.everyone_left"),
        ("automatic_leave: [1, 2]", "automatic_leave"),
        ("bill: {hard_cap_margin_minutes: 0}", "bill.hard_cap_margin_minutes"),
    ],
)
def test_a_bad_automatic_leave_is_refused_naming_the_key_before_recall(
    fake_recall, recall_env, tmp_path: Path, yaml: str, key: str
):
    config = tmp_path / "agent.yaml"
    config.write_text(yaml + "\n")
    result = create(recall_env, "--agent-config", str(config))
    assert result.exit_code != 0
    assert f"AGENT_CONFIG {key}" in result.output
    assert fake_recall.requests == []


@pytest.mark.parametrize(
    ("overlay", "problem"),
    [
        ("bill: {max_minutes: 500}", "--agent {} bill.max_minutes: 500 is above"),
        ("bill: {max_tokens: -1}", "--agent {} bill.max_tokens"),
        ("bill: {max_cost_usd: cheap}", "--agent {} bill.max_cost_usd"),
        ("bill: {prices: {}}", "--agent {} bill.prices"),  # a bot never sets prices
        ("turn_taking: {mode: sometimes}", "--agent {} turn_taking.mode"),
    ],
)
def test_a_bots_bad_bill_or_turn_taking_is_refused_before_recall(
    fake_recall, recall_env, tmp_path: Path, overlay: str, problem: str
):
    path = tmp_path / "bot.yaml"
    path.write_text(overlay + "\n")
    result = create(recall_env, "--agent", str(path))
    assert result.exit_code != 0
    assert problem.format(path) in result.output
    assert fake_recall.requests == []
