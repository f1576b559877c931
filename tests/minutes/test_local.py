"""`make dev`'s minutes pipeline: a real process polling moto's stream builds the minutes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import boto3

from functions.minutes.local import READY
from functions.minutes.store import MinutesStore, serialize
from storage import items
from tests.conftest import ROOT, TIMEOUT, stop_process
from tests.deadlines import poll
from tests.minutes.conftest import seed_meeting


def test_local_pipeline_builds_minutes_when_a_bot_is_done(
    dynamodb_endpoint: str, table_name: str
) -> None:
    """The process turns the stream on, sees bot.done's state change, builds once, stops on TERM."""
    env = {
        **os.environ,
        "TABLE_NAME": table_name,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
        "SESSION_END_GRACE_SECONDS": "0",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("OPENAI_API_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "functions.minutes.local"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == READY
        client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1")
        store = MinutesStore(client, table_name)
        bot_id = str(uuid.uuid4())
        seed_meeting(store, bot_id=bot_id, session_id=str(uuid.uuid4()))
        done = items.bot_status_update(
            {
                "bot_id": bot_id,
                "status": "done",
                "sub_code": None,
                "event": "bot.done",
                "updated_at": "2026-12-03T12:00:00.000000Z",
            }
        ).request()
        client.update_item(
            TableName=table_name,
            Key=serialize(done["Key"]),
            UpdateExpression=done["UpdateExpression"],
            ExpressionAttributeNames=done["ExpressionAttributeNames"],
            ExpressionAttributeValues=serialize(done["ExpressionAttributeValues"]),
            ConditionExpression=done["ConditionExpression"],
        )

        def built() -> dict[str, Any] | None:
            job = store.job(bot_id)
            return dict(job) if job and job["job_state"] == "built" else None

        job = poll(built, "the local pipeline to build the minutes", timeout=3 * TIMEOUT)
        assert job["generated_by"] == "simulated"
        assert "ship the beta on Friday" in job["minutes"]
    finally:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == 0
