"""Minutes filed under a memory key come back, bounded, as the next meeting's memory."""

from __future__ import annotations

import json
import uuid

from functions.minutes.job import MinutesJobRunner
from functions.minutes.store import serialize
from functions.minutes.summarizer import SimulatedSummarizer
from functions.minutes.trigger import BotJob
from relay.memory import memory_instructions, recall_meetings_output
from storage import minutes
from tests.minutes.conftest import Pipeline, seed_meeting


def test_next_meeting_under_the_key_recalls_the_last(pipeline: Pipeline) -> None:
    """Two meetings under one key: the relay's query and formatter recall both, newest first."""
    runner = MinutesJobRunner(store=pipeline.store, summarizer=SimulatedSummarizer())
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    for bot_id in (first, second):
        seed_meeting(pipeline.store, bot_id=bot_id, session_id=str(uuid.uuid4()), memory_key="k1")
        runner.run(BotJob(bot_id=bot_id, trigger="bot.done"))
    seed_meeting(pipeline.store, bot_id="other", session_id=str(uuid.uuid4()), memory_key="k2")
    runner.run(BotJob(bot_id="other", trigger="bot.done"))

    query = minutes.memory_query("k1", 5)
    query["ExpressionAttributeValues"] = serialize(query["ExpressionAttributeValues"])
    answer = pipeline.dynamodb.query(TableName=pipeline.table, **query)
    from functions.minutes.store import deserialize

    entries = [deserialize(i) for i in answer["Items"]]
    assert [e["bot_id"] for e in entries] == [second, first]  # newest first, k2 not mixed in
    text = memory_instructions(entries, "k1", max_chars=1500)
    assert len(text) <= 1500
    assert "ship the beta on Friday" in text
    assert "Dana: Dana will update the pricing page." in text
    found = json.loads(recall_meetings_output(entries, '{"query": "pricing", "limit": 1}'))
    assert len(found["meetings"]) == 1
