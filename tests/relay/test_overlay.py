"""A bot's persona over the operator's agent config: what it may set, what stays locked."""

from __future__ import annotations

import pytest

from relay.agent import AgentConfig
from relay.bot_binding import binding_from_item
from relay.errors import ConfigError
from relay.overlay import BotOverlay, merge, validate_overlay
from relay.tools.spec import tool_name

OPERATOR = AgentConfig.model_validate(
    {
        "instructions": "Operator instructions.",
        "voice": "marin",
        "tools": [
            {"builtin": "take_note"},
            {"builtin": "leave_meeting"},
            {"type": "function", "name": "client_fn", "parameters": {}},
        ],
        "bot_overridable": ["instructions", "greeting", "tools"],
    }
)


def test_overlay_replaces_only_what_it_sets():
    """Instructions and greeting come from the bot; everything else stays the operator's."""
    merged = merge(OPERATOR, {"instructions": "Be a pirate.", "greeting": "Ahoy!"})
    assert merged.instructions == "Be a pirate."
    assert merged.greeting == "Ahoy!"
    assert merged.voice == "marin"
    assert merged.turn_detection == OPERATOR.turn_detection
    assert [tool_name(t) for t in merged.tools] == ["take_note", "leave_meeting", "client_fn"]


def test_overlay_picks_tools_among_the_operators():
    """A bot choosing tools gets only those, with the operator's definitions."""
    merged = merge(OPERATOR, {"tools": ["take_note"]})
    assert [tool_name(t) for t in merged.tools] == ["take_note"]
    assert merged.tools[0] == OPERATOR.tools[0]


def test_locked_field_is_refused_with_a_clear_message():
    """A field outside bot_overridable is refused, saying what the operator allows."""
    with pytest.raises(ConfigError) as raised:
        validate_overlay(OPERATOR, {"voice": "cedar"}, source="--agent bot.yaml")
    assert raised.value.problems == [
        "--agent bot.yaml voice: locked by the operator's agent config "
        "(bot_overridable allows: instructions, greeting, tools)"
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"tools": ["format_disk"]}, "'format_disk' is not one of the operator's tools"),
        ({"temperature": 2}, "temperature: Extra inputs are not permitted"),
        ({"instructions": ""}, "instructions: String should have at least 1 character"),
        ({"instructions": 5}, "instructions: Input should be a valid string"),
        ({"greeting": "x" * 3000}, "greeting: String should have at most 2000 characters"),
        ({"tools": "take_note"}, "tools: Input should be a valid tuple"),
        ({"tools": ["t"] * 100}, "tools: Tuple should have at most 64 items"),
    ],
    ids=[
        "unknown-tool",
        "unknown-field",
        "empty-instructions",
        "instructions-not-text",
        "greeting-too-long",
        "tools-not-list",
        "too-many-tools",
    ],
)
def test_bad_overlays_fail_with_the_agent_schema_wording(data, expected):
    """Overlays get the same schema and wording as agent.yaml, naming their source."""
    with pytest.raises(ConfigError) as raised:
        validate_overlay(OPERATOR, data, source="overlay")
    assert any(expected in p for p in raised.value.problems), raised.value.problems
    assert all(p.startswith("overlay ") for p in raised.value.problems)


def test_narrowed_operator_config_refuses_a_stored_overlay():
    """An overlay stored when allowed is refused, not silently applied, once locked."""
    stored = BotOverlay(voice="cedar")
    with pytest.raises(ConfigError, match="locked"):
        merge(OPERATOR, stored)


def test_no_overlay_is_the_operators_config():
    """A bot without a persona runs the operator's config as it is."""
    assert merge(OPERATOR, None) is OPERATOR


@pytest.mark.parametrize(
    "item",
    [
        {},
        {"session_id": "s"},
        {"session_id": "s", "bot_id": ""},
        {"session_id": "s", "bot_id": 5},
        {"session_id": 1, "bot_id": "b"},
    ],
    ids=["empty", "no-bot", "empty-bot", "bot-not-text", "session-not-text"],
)
def test_malformed_binding_items_mean_no_bot(item):
    """A damaged binding item gives no bot rather than a wrong one."""
    assert binding_from_item(item) is None


def test_binding_with_a_malformed_overlay_has_none():
    """A stored overlay that is not a mapping is ignored; the bot keeps its id."""
    binding = binding_from_item({"session_id": "s", "bot_id": "b", "overlay": ["x"]})
    assert binding is not None
    assert (binding.bot_id, binding.overlay) == ("b", {})
