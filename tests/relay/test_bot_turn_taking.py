"""``turn_taking`` in a bot's overlay: the bot's own mode over the operator's, through a relay.

The operator's agent answers every turn (``always``); a bot created with ``turn_taking:
{mode: addressed, wake_phrases: [Ava]}`` in its overlay (what ``voicebot bot create
--agent`` stores) answers only the two turns of the scripted meeting that name it. Over
sockets: client → relay → scripted GA model, the binding read from moto's DynamoDB.
"""

from __future__ import annotations

import json

import boto3
import pytest

from relay.agent import AgentConfig
from relay.record_table import RetryPolicy
from relay.record_writer import SessionRecorder
from storage import schema
from tests.relay.conftest import FakeUpstream, StartRelay
from tests.relay.test_turn_taking import hold_meeting, meeting_model


def bind(endpoint: str, table: str, overlay: dict[str, object]) -> None:
    boto3.resource("dynamodb", endpoint_url=endpoint).Table(table).put_item(
        Item={
            schema.PARTITION_KEY: schema.session_pk("bot-meeting"),
            schema.SORT_KEY: schema.SESSION_AGENT_SK,
            "session_id": "bot-meeting",
            "bot_id": "bot-ava",
            "created_at": "2026-12-03T12:00:00.000000Z",
            "overlay": overlay,
        }
    )


@pytest.mark.parametrize(
    ("overlay", "answered"),
    [
        (
            {"turn_taking": {"mode": "addressed", "wake_phrases": ["Ava"], "follow_ups": True}},
            [1, 4],
        ),
        ({"turn_taking": {"mode": "manual"}}, []),
        # A stored overlay the relay refuses (an unknown key): the operator's agent runs.
        ({"turn_taking": {"mode": "addressed", "wake_phrases": ["Ava"]}, "bogus": 1}, None),
    ],
)
async def test_a_bots_turn_taking_overrides_the_operators(
    start_relay: StartRelay,
    fake_upstream: FakeUpstream,
    table_name: str,
    dynamodb_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    overlay: dict[str, object],
    answered: list[int] | None,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint)
    fake_upstream.script = meeting_model
    bind(dynamodb_endpoint, table_name, overlay)
    recorder = SessionRecorder(
        table_name,
        region="us-east-1",
        endpoint_url=dynamodb_endpoint,
        retry=RetryPolicy(max_attempts=2, base_delay=0.05, max_delay=0.1),
    )
    operator = AgentConfig.model_validate({"turn_taking": {"mode": "always"}})
    relay = await start_relay(fake_upstream.url, recorder, operator, table_name=table_name)
    heard = await hold_meeting(relay)
    sent = json.loads(fake_upstream.received[0])
    auto = sent["session"]["audio"]["input"]["turn_detection"]["create_response"]
    if answered is None:  # a malformed stored overlay costs the persona, not the meeting
        assert heard == list(range(6))
        assert auto is True
    else:
        assert heard == answered
        assert auto is False
