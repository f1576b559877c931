"""The relay's leave_meeting: minutes first for a bot created with them, else leave_call.

Over real sockets: moto's DynamoDB holds the bot's session pointer, the fake Recall API
records what the relay asks of it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest

from relay.tool_calls import ToolCall
from relay.tools.builtins import ToolContext
from relay.tools.meeting_exit import Exit, MeetingExit
from relay.tools.recall import RecallBotApi
from relay.tools.registry import build_registry
from storage import leaving, minutes
from tests.cli.fake_recall import FakeRecall
from tests.relay.test_tools import RECALL_KEY, agent_tools


def table(endpoint: str, name: str) -> Any:
    return boto3.resource("dynamodb", endpoint_url=endpoint, region_name="us-east-1").Table(name)


def bot(endpoint: str, name: str, *, to_chat: bool) -> ToolContext:
    bot_id, session_id = str(uuid.uuid4()), str(uuid.uuid4())
    item = minutes.session_bot_item(session_id, bot_id, minutes_to_chat=to_chat)
    table(endpoint, name).put_item(Item=dict(item))
    return ToolContext(session_id=session_id, bot_id=bot_id)


def leave_call() -> ToolCall:
    return ToolCall(call_id="c1", name="leave_meeting", arguments="{}", response_id="r1")


@pytest.mark.parametrize("to_chat", [True, False])
async def test_leave_meeting_tool(
    fake_recall: FakeRecall, table_name: str, dynamodb_endpoint: str, to_chat: bool
) -> None:
    """With chat minutes: a LEAVE request, no Recall call; without: leave_call at once."""
    registry = build_registry(
        agent_tools({"builtin": "leave_meeting"}),
        recall_api_key=RECALL_KEY,
        recall_api_base=f"{fake_recall.url}/{{region}}",
        table_name=table_name,
        dynamodb_endpoint=dynamodb_endpoint,
    )
    ctx = bot(dynamodb_endpoint, table_name, to_chat=to_chat)
    assert ctx.bot_id is not None
    result = await registry.run(leave_call(), ctx)
    answer = json.loads(result.output)
    request = table(dynamodb_endpoint, table_name).get_item(Key=leaving.leave_key(ctx.bot_id))
    if to_chat:
        assert answer == {"ok": True, "left": False, "leaving_after_minutes": True}
        assert fake_recall.requests == []
        assert request["Item"]["reason"] == "tool"
    else:
        assert answer == {"ok": True, "left": True}
        [call] = fake_recall.requests
        assert call.path.endswith(f"/api/v1/bot/{ctx.bot_id}/leave_call/")
        assert "Item" not in request


async def test_an_unreachable_table_still_leaves(
    fake_recall: FakeRecall, dynamodb_endpoint: str
) -> None:
    """The table cannot be read: the bot leaves at once rather than not at all."""
    recall = RecallBotApi(api_key=RECALL_KEY, region="us-west-2", base=f"{fake_recall.url}/x")
    try:
        exit_ = MeetingExit(recall, "no-such-table", endpoint_url=dynamodb_endpoint)
        assert await exit_.leave(str(uuid.uuid4()), "s1", "usage_limit") is Exit.LEFT
    finally:
        await recall.aclose()
    assert len(fake_recall.requests) == 1


async def test_a_pointer_for_another_bot_is_not_trusted(
    fake_recall: FakeRecall, table_name: str, dynamodb_endpoint: str
) -> None:
    """The session's pointer names another bot: leave now, write no request for anyone."""
    ctx = bot(dynamodb_endpoint, table_name, to_chat=True)
    recall = RecallBotApi(api_key=RECALL_KEY, region="us-west-2", base=f"{fake_recall.url}/x")
    other = str(uuid.uuid4())
    try:
        exit_ = MeetingExit(recall, table_name, endpoint_url=dynamodb_endpoint)
        assert await exit_.leave(other, ctx.session_id, "tool") is Exit.LEFT
    finally:
        await recall.aclose()
    got = table(dynamodb_endpoint, table_name).get_item(Key=leaving.leave_key(other))
    assert "Item" not in got
