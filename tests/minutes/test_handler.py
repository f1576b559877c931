"""The minutes function's Lambda entry point, configured by its environment, on moto."""

from __future__ import annotations

import uuid

import boto3
import pytest

from functions.minutes.handler import _Entry
from functions.minutes.store import MinutesStore
from functions.minutes.trigger import BotJob, message_body
from tests.minutes.conftest import aws, seed_meeting


def test_entry_point_queues_from_the_stream_and_builds_from_the_queue(
    monkeypatch: pytest.MonkeyPatch, dynamodb_endpoint: str, table_name: str
) -> None:
    """A stream batch becomes a queue message; a queue batch builds the minutes (simulated)."""
    queue_url = aws(dynamodb_endpoint, "sqs").create_queue(QueueName=f"q-{uuid.uuid4().hex}")[
        "QueueUrl"
    ]
    for name, value in {
        "TABLE_NAME": table_name,
        "JOB_QUEUE_URL": queue_url,
        "AWS_ENDPOINT_URL": dynamodb_endpoint,
        "SESSION_END_GRACE_SECONDS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    handler = _Entry()
    bot_id = str(uuid.uuid4())
    store = MinutesStore(
        boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1"),
        table_name,
    )
    seed_meeting(store, bot_id=bot_id, session_id=str(uuid.uuid4()))
    stream_record = {
        "eventSource": "aws:dynamodb",
        "eventName": "MODIFY",
        "dynamodb": {
            "NewImage": {
                "pk": {"S": f"BOT#{bot_id}"},
                "sk": {"S": "STATE"},
                "bot_id": {"S": bot_id},
                "status": {"S": "done"},
            },
            "OldImage": {"status": {"S": "call_ended"}},
            "SequenceNumber": "1",
        },
    }
    assert handler({"Records": [stream_record]}, None) == {"batchItemFailures": []}
    [message] = aws(dynamodb_endpoint, "sqs").receive_message(QueueUrl=queue_url)["Messages"]
    assert message["Body"] == message_body(BotJob(bot_id=bot_id, trigger="bot.done"))

    sqs_record = {"eventSource": "aws:sqs", "messageId": "m1", "body": message["Body"]}
    assert handler({"Records": [sqs_record]}, None) == {"batchItemFailures": []}
    job = store.job(bot_id)
    assert job is not None
    assert job["job_state"] == "built"
    assert job["generated_by"] == "simulated"
    assert handler({"Records": []}, None) == {"batchItemFailures": []}
    with pytest.raises(ValueError, match="unexpected event source"):
        handler({"Records": [{"eventSource": "aws:s3"}]}, None)
