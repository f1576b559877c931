"""The create's persona and minutes options over HTTP: stored as the CLI stores them, or a 400.

A persona (``instructions`` or an ``agent`` overlay) is checked against the operator's
agent config the stack bundles (``relay_container/agent.yaml``, the relay image's), with
the same code as ``voicebot bot create --instructions/--agent`` (``cli.persona``).
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from storage import leaving, minutes, schema
from tests.control_api.conftest import Api
from tests.control_api.test_app import MEETING, create


def stored(api: Api, key: dict[str, str]) -> dict[str, Any] | None:
    table = boto3.resource("dynamodb", endpoint_url=api.endpoint, region_name="us-east-1").Table(
        api.table_name
    )
    return table.get_item(Key=key).get("Item")


def agent_item(api: Api, session_id: str) -> dict[str, Any] | None:
    return stored(api, {"pk": schema.session_pk(session_id), "sk": schema.SESSION_AGENT_SK})


@pytest.mark.parametrize(
    ("options", "persona", "overlay"),
    [
        ({"instructions": "Be brief."}, ["instructions"], {"instructions": "Be brief."}),
        (
            {"agent": {"instructions": "Speak French.", "voice": "cedar", "greeting": "Salut"}},
            ["greeting", "instructions", "voice"],
            {"instructions": "Speak French.", "voice": "cedar", "greeting": "Salut"},
        ),
        ({}, [], None),
    ],
    ids=["instructions", "agent", "none"],
)
def test_a_persona_is_checked_and_bound_to_the_session(
    api: Api, options: dict[str, Any], persona: list[str], overlay: dict[str, Any] | None
) -> None:
    """201 with the overridden fields; the relay's binding item carries the overlay."""
    answer = create(api, {"meeting_url": MEETING, **options})
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["persona"] == persona
    binding = agent_item(api, created["session_id"])
    assert binding is not None  # the relay finds the bot (its tools act on it)
    assert binding["bot_id"] == created["bot_id"]
    assert binding.get("overlay") == overlay


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"agent": {"speed": 2}}, "agent speed"),
        ({"agent": {"tools": ["format_disk"]}}, "format_disk"),
        ({"agent": {"instructions": 5}}, "agent instructions"),
        ({"agent": {"instructions": "x", "model": "gpt-4"}}, "agent model"),
        ({"agent": ["instructions"]}, "agent: Input should be an object"),
        ({"instructions": ""}, "instructions: String should have at least 1 character"),
        ({"instructions": "a", "agent": {"voice": "cedar"}}, "not both"),
        ({"minutes_url": "http://hooks.example.com/m"}, "minutes_url: must be an https"),
        ({"minutes_url": "https://u:p@hooks.example.com/m"}, "credentials"),
        ({"minutes_url": "https://169.254.169.254/latest"}, "public host"),
        ({"minutes_to_chat": "yes"}, "minutes_to_chat"),
    ],
    ids=[
        "unknown-field", "unknown-tool", "wrong-type", "locked-field", "agent-list",
        "empty-instructions", "both", "http-url", "url-credentials", "metadata-ip",
        "chat-string",
    ],
)  # fmt: skip
def test_hostile_options_are_a_400_before_recall(
    api: Api, options: dict[str, Any], problem: str
) -> None:
    """Named in the message, nothing created at Recall, nothing stored."""
    answer = create(api, {"meeting_url": MEETING, **options})
    assert answer.status_code == 400, answer.text
    assert problem in answer.json()["message"]
    assert api.recall.requests == []


def test_minutes_options_are_stored_and_a_leave_waits_for_the_minutes(api: Api) -> None:
    """minutes_to_chat + minutes_url on the session pointer; leave → 202 after-minutes, a
    LEAVE request instead of leave_call."""
    body = {
        "meeting_url": MEETING,
        "minutes_to_chat": True,
        "minutes_url": "https://hooks.example.com/minutes?token=t",
    }
    created = create(api, body).json()
    pointer = stored(api, minutes.session_bot_key(created["session_id"]))
    assert pointer is not None
    assert pointer["minutes_to_chat"] is True
    assert pointer["minutes_url"] == "https://hooks.example.com/minutes?token=t"
    left = api.post(f"/v1/bots/{created['bot_id']}/leave")
    assert left.status_code == 202, left.text
    assert left.json()["status"] == "leaving_after_minutes"
    assert not any(r.path.endswith("/leave_call/") for r in api.recall.requests)
    request = stored(api, leaving.leave_key(created["bot_id"]))
    assert request is not None
    assert request["reason"] == "api"
    # Asking again is the same request.
    assert api.post(f"/v1/bots/{created['bot_id']}/leave").json()["status"] == (
        "leaving_after_minutes"
    )


def test_a_bot_without_chat_minutes_leaves_at_once(api: Api) -> None:
    created = create(api, {"meeting_url": MEETING}).json()
    left = api.post(f"/v1/bots/{created['bot_id']}/leave")
    assert left.json()["status"] == "leaving"
    assert api.recall.requests[-1].path.endswith(f"/{created['bot_id']}/leave_call/")
    assert stored(api, leaving.leave_key(created["bot_id"])) is None
