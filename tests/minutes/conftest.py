"""Fixtures for the minutes pipeline: a streamed table, the job queue, the user's endpoint.

Everything is real over loopback sockets: moto's server (one process) is DynamoDB with
its stream and SQS; the webhook receiver runs on uvicorn; the user's endpoint is an HTTP
server that verifies each delivery with the ``standardwebhooks`` library (not our code)
and answers as scripted. :class:`Pipeline` plays Lambda's two event-source pollers: it
reads the table's stream and the queue with boto3 and hands the records, in Lambda's
event shape, to ``functions.minutes.handler``'s batch functions.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from functions.minutes.handler import Runtime, handle_queue, handle_stream
from functions.minutes.job import MinutesJobRunner
from functions.minutes.store import MinutesStore
from functions.minutes.summarizer import SimulatedSummarizer
from storage import items, minutes, schema, times
from tests.webhooks.conftest import new_secret


def aws(endpoint: str, service: str) -> Any:
    """A boto3 client for ``service`` on the local server."""
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")  # type: ignore[call-overload]


@dataclass
class Endpoint:
    """The user's minutes endpoint: verifies signatures, records deliveries, answers as told."""

    secret: str
    url: str = ""
    #: Status codes to answer, in order; then 204 for ever.
    script: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted_ids(self) -> list[str]:
        with self.lock:
            return [r["id"] for r in self.received if r["status"] < 300]


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    """The user's endpoint on a loopback port."""
    state = Endpoint(secret=new_secret())
    verifier = Webhook(state.secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            try:
                payload = verifier.verify(body, {k.lower(): v for k, v in self.headers.items()})
            except WebhookVerificationError:
                with state.lock:
                    state.rejected += 1
                self.send_response(401)
                self.end_headers()
                return
            with state.lock:
                status = state.script.pop(0) if state.script else 204
                state.received.append(
                    {"id": self.headers["webhook-id"], "status": status, "payload": payload}
                )
            self.send_response(status)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/minutes?token=abc"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def streamed_table(dynamodb_endpoint: str, table_name: str) -> str:
    """The application table with its stream on (new and old images), as deployed."""
    aws(dynamodb_endpoint, "dynamodb").update_table(
        TableName=table_name,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return table_name


@pytest.fixture
def queue_url(dynamodb_endpoint: str, table_name: str) -> str:
    """A fresh job queue on the local server."""
    return str(
        aws(dynamodb_endpoint, "sqs").create_queue(QueueName=f"jobs-{table_name}")["QueueUrl"]
    )


class Pipeline:
    """Lambda's pollers, by hand: the table's stream → ``handle_stream``; the queue → jobs."""

    def __init__(self, endpoint: str, table: str, queue_url: str, runner: MinutesJobRunner) -> None:
        self.endpoint = endpoint
        self.table = table
        self.queue_url = queue_url
        self.runner = runner
        self.sqs = aws(endpoint, "sqs")
        self.streams = aws(endpoint, "dynamodbstreams")
        self.dynamodb = aws(endpoint, "dynamodb")
        self.store = runner.store
        self._iterators: dict[str, str] = {}
        self.sent: list[tuple[str, int]] = []
        self.outcomes: list[str] = []

    def runtime(self, runner: MinutesJobRunner | None = None) -> Runtime:
        def send(body: str, delay: int) -> None:
            self.sent.append((body, delay))
            # A delayed message (a leave's deadline) stays out of this test's pumps, as on AWS.
            extra = {"DelaySeconds": delay} if delay else {}
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body, **extra)

        return Runtime(runner=runner or self.runner, send=send)

    def pump_stream(self) -> int:
        """Hand every new stream record to ``handle_stream``; how many there were."""
        arn = self.dynamodb.describe_table(TableName=self.table)["Table"]["LatestStreamArn"]
        shards = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        records: list[dict[str, Any]] = []
        for shard in shards:
            shard_id = shard["ShardId"]
            iterator = (
                self._iterators.get(shard_id)
                or self.streams.get_shard_iterator(
                    StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            )
            answer = self.streams.get_records(ShardIterator=iterator)
            self._iterators[shard_id] = answer["NextShardIterator"]
            records.extend(_lambda_stream_record(r) for r in answer["Records"])
        if records:
            assert handle_stream(records, self.runtime(), grace=self.runner.grace_seconds) == []
        return len(records)

    def pump_queue(self, runner: MinutesJobRunner | None = None) -> list[str]:
        """Run every queued job once (Lambda's SQS poller); the ids it asked to retry."""
        failed: list[str] = []
        while True:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
            )
            messages = answer.get("Messages", [])
            if not messages:
                return failed
            records = [
                {"eventSource": "aws:sqs", "messageId": m["MessageId"], "body": m["Body"]}
                for m in messages
            ]
            retry = handle_queue(records, self.runtime(runner))
            failed.extend(retry)
            for m in messages:
                if m["MessageId"] not in retry:
                    self.sqs.delete_message(
                        QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"]
                    )
            if retry:
                return failed

    def job(self, bot_id: str) -> dict[str, Any] | None:
        return dict(self.store.job(bot_id) or {}) or None

    def memory(self, key: str) -> list[minutes.MemoryEntry]:
        return self.store.memory(key, 100)


def _lambda_stream_record(record: dict[str, Any]) -> dict[str, Any]:
    """A GetRecords record in the shape Lambda hands a function."""
    return {
        "eventSource": "aws:dynamodb",
        "eventName": record["eventName"],
        "dynamodb": {
            k: v for k, v in record["dynamodb"].items() if k != "ApproximateCreationDateTime"
        },
    }


@pytest.fixture
def pipeline(
    dynamodb_endpoint: str, streamed_table: str, queue_url: str, endpoint: Endpoint
) -> Pipeline:
    """The minutes pipeline on a streamed table, delivering to ``endpoint``; no grace period."""
    from functions.minutes.delivery import WebhookDelivery

    store = MinutesStore(aws(dynamodb_endpoint, "dynamodb"), streamed_table)
    runner = MinutesJobRunner(
        store=store,
        summarizer=SimulatedSummarizer(),
        delivery=WebhookDelivery(endpoint.url, endpoint.secret, base_delay=0.01, max_delay=0.05),
        grace_seconds=0,
    )
    return Pipeline(dynamodb_endpoint, streamed_table, queue_url, runner)


def seed_meeting(
    store: MinutesStore, *, bot_id: str, session_id: str, memory_key: str | None = None
) -> None:
    """A bot created by the CLI, and what was said in its meeting (as the relay stores it)."""
    from functions.minutes.store import serialize

    client = store._client
    table = store._table
    store.put_session_bot(minutes.session_bot_item(session_id, bot_id, memory_key))
    created = items.bot_created_update(
        {
            "bot_id": bot_id,
            "session_id": session_id,
            "region": "us-west-2",
            "meeting_url": "https://meet.google.com/abc-defg-hij",
            "bot_name": "Assistant",
        },
        datetime.now(UTC),
    ).request()
    client.update_item(
        TableName=table,
        Key=serialize(created["Key"]),
        UpdateExpression=created["UpdateExpression"],
        ExpressionAttributeNames=created["ExpressionAttributeNames"],
        ExpressionAttributeValues=serialize(created["ExpressionAttributeValues"]),
    )
    said = [
        ("user", "Hello everyone. We decided to ship the beta on Friday."),
        ("assistant", "Noted. I will send the release notes to the team."),
        ("user", "Dana will update the pricing page. Who owns the migration?"),
    ]
    for i, (role, text) in enumerate(said):
        item = items.turn_item(
            session_id=session_id,
            at_ms=1_780_000_000_000 + i * 1000,
            seq=i,
            role=role,
            text=text,
            expires_at=2_000_000_000,
        )
        client.put_item(TableName=table, Item=serialize(item))
    note = {
        "pk": schema.bot_pk(bot_id),
        "sk": f"{minutes.NOTE_PREFIX}{1_780_000_001_500:015d}#n1",
        "bot_id": bot_id,
        "note_id": "n1",
        "text": "Budget review moved to next week.",
        "at": times.key_time_from_epoch_ms(1_780_000_001_500),
    }
    client.put_item(TableName=table, Item=serialize(note))


def json_of(entry: Any, name: str = "minutes") -> Any:
    """A JSON attribute of an item, decoded."""
    return json.loads(entry[name])
