"""``python -m functions.minutes.local``: the minutes pipeline for ``make dev``, no Lambda.

Stands in for the deployment's two event sources on a local DynamoDB-compatible server
(moto, as ``voicebot dev`` runs it): turns the table's stream on, polls it, and runs each
job request in this process, a session check once its grace period has passed (what the
SQS delay does on AWS). Same trigger, same job, same exactly-once claim; the summarizer is
the simulated one unless ``OPENAI_API_KEY`` is set. Configuration is
``functions.minutes.settings`` (``TABLE_NAME``, ``SESSION_END_GRACE_SECONDS``, …) plus
``AWS_ENDPOINT_URL_DYNAMODB``, which boto3 reads itself. Prints :data:`READY` once it
watches the stream; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import Any, Final

from functions.minutes.handler import Runtime, build_runtime, handle_queue
from functions.minutes.settings import load_settings
from functions.minutes.trigger import from_stream_record, message_body, planned

READY: Final = "minutes: watching the table's stream"
POLL_SECONDS: Final = 1.0

logger = logging.getLogger("functions.minutes.local")


class LocalPipeline:
    """Polls one table's stream and runs the jobs it calls for."""

    def __init__(
        self,
        client: Any,
        streams: Any,
        table: str,
        runtime: Runtime,
        grace: int,
        leave_deadline: int = 90,
    ) -> None:
        """Use ``client`` (dynamodb) and ``streams`` (dynamodbstreams) on ``table``."""
        self._client = client
        self._streams = streams
        self._table = table
        self._runtime = runtime
        self._grace = grace
        self._leave_deadline = leave_deadline
        self._iterators: dict[str, str] = {}
        self._due: list[tuple[float, str]] = []  # (monotonic time, message body)

    def enable_stream(self) -> str:
        """Turn the stream on (new and old images, as deployed); its ARN."""
        table = self._client.describe_table(TableName=self._table)["Table"]
        if not table.get("StreamSpecification", {}).get("StreamEnabled"):
            table = self._client.update_table(
                TableName=self._table,
                StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
            )["TableDescription"]
        return str(table["LatestStreamArn"])

    def poll_once(self, arn: str) -> None:
        """Read new stream records, queue what they call for, run what is due."""
        shards = self._streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            iterator = (
                self._iterators.get(shard_id)
                or self._streams.get_shard_iterator(
                    StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            )
            answer = self._streams.get_records(ShardIterator=iterator)
            self._iterators[shard_id] = answer["NextShardIterator"]
            for record in answer["Records"]:
                request = from_stream_record(record)
                if request is None:
                    continue
                for message, delay in planned(
                    request, grace=self._grace, leave_deadline=self._leave_deadline
                ):
                    self._due.append((time.monotonic() + delay, message_body(message)))
        now = time.monotonic()
        ready = [body for at, body in self._due if at <= now]
        self._due = [(at, body) for at, body in self._due if at > now]
        if ready:
            records = [{"messageId": str(i), "body": body} for i, body in enumerate(ready)]
            failed = {int(i) for i in handle_queue(records, self._runtime)}
            # Retry failures on a later poll, as the queue would.
            self._due.extend((now + 5.0, ready[i]) for i in sorted(failed))


def main() -> int:
    """Run until SIGTERM/SIGINT."""
    import boto3

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    settings = load_settings()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    dynamodb = boto3.client("dynamodb")
    pipeline = LocalPipeline(
        dynamodb,
        # The stream lives where the table does (AWS_ENDPOINT_URL_DYNAMODB locally).
        boto3.client("dynamodbstreams", endpoint_url=dynamodb.meta.endpoint_url),
        settings.table_name,
        build_runtime(settings),
        settings.grace_seconds,
        settings.leave_deadline_seconds,
    )
    arn = pipeline.enable_stream()
    sys.stdout.write(READY + "\n")  # the ready line voicebot dev waits for
    sys.stdout.flush()
    while not stop.is_set():
        try:
            pipeline.poll_once(arn)
        except Exception:
            logger.exception("minutes: polling the stream failed; retrying")
        stop.wait(POLL_SECONDS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
