"""Earlier minutes reach the model through the relay's real session start, within the bound.

What this shows: minutes built into the table under a memory key (moto), read back with
``storage.minutes.memory_query``, formatted by ``relay.memory`` and given to the relay as
its agent's instructions and tools, arrive in the first ``session.update`` the fake GA
upstream receives, bounded, with ``recall_meetings`` among the tools. What it does not
show: the per-session lookup (the session's ``BOT`` pointer → its memory key), which the
relay's session start does once wired (docs/minutes.md, "Memory across meetings").
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import yaml

from functions.minutes.job import MinutesJobRunner
from functions.minutes.store import MinutesStore, deserialize, serialize
from functions.minutes.summarizer import SimulatedSummarizer
from functions.minutes.trigger import BotJob
from relay.memory import RECALL_MEETINGS_TOOL, memory_instructions
from storage import minutes
from tests.minutes.conftest import seed_meeting
from tests.relay.conftest import FakeUpstream, StartRelay, mint, open_client

BOUND = 1200


async def test_memory_reaches_the_upstream_session_bounded(
    start_relay: StartRelay,
    fake_upstream: FakeUpstream,
    dynamodb_endpoint: str,
    table_name: str,
    tmp_path: Path,
) -> None:
    """The model's first session.update carries the last meeting's decisions and the tool."""
    client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1")
    store = MinutesStore(client, table_name)
    runner = MinutesJobRunner(store=store, summarizer=SimulatedSummarizer())
    for _ in range(6):  # more meetings than the bound holds
        bot_id = str(uuid.uuid4())
        seed_meeting(store, bot_id=bot_id, session_id=str(uuid.uuid4()), memory_key="atlas")
        runner.run(BotJob(bot_id=bot_id, trigger="bot.done"))
    query = minutes.memory_query("atlas", 5)
    query["ExpressionAttributeValues"] = serialize(query["ExpressionAttributeValues"])
    entries = [deserialize(i) for i in client.query(TableName=table_name, **query)["Items"]]
    memory = memory_instructions(entries, "atlas", max_chars=BOUND)

    agent = tmp_path / "agent.yaml"
    base = "You are the meeting assistant."
    agent.write_text(
        yaml.safe_dump({"instructions": f"{base}\n\n{memory}", "tools": [RECALL_MEETINGS_TOOL]})
    )
    relay = await start_relay(fake_upstream.url, agent_config_path=agent)
    async with open_client(relay, mint()):
        [first] = await fake_upstream.wait_received(1)
    session = first["session"]
    assert first["type"] == "session.update"
    assert session["instructions"].startswith(base)
    assert "ship the beta on Friday" in session["instructions"]
    assert len(session["instructions"]) <= len(base) + 2 + BOUND
    assert 0 < session["instructions"].count("- Meeting of") < 6  # bounded: not all six
    assert [t["name"] for t in session["tools"]] == ["recall_meetings"]
    assert json.dumps(session).count("recall_meetings") >= 1
