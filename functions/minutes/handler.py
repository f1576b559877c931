"""The minutes Lambda's entry point: stream batches become queue messages; messages, jobs.

One function, two event sources (``infra/constructs/minutes.py``):

* the table's DynamoDB stream, filtered to bot final states and connection ends: each
  record that calls for a job (``functions.minutes.trigger``) becomes a message on the
  job queue, a session check delayed by the grace period; a failed send reports that
  record as a batch item failure (the stream retries from it, then its on-failure
  destination, the dead-letter queue, keeps a pointer);
* the job queue: each message runs one job (``functions.minutes.job``); a failure reports
  the message as a batch item failure, so only it is retried, and after the queue's
  ``maxReceiveCount`` it moves to the dead-letter queue, which alarms. A message that is
  not a job request is logged and dropped (retrying it cannot help).

Nothing is read from the environment or AWS at import: the runtime is built on the first
invocation and kept for the process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from functions.minutes.job import MinutesJobRunner
from functions.minutes.settings import Settings, load_settings, read_secret
from functions.minutes.summarizer import OpenAISummarizer, SimulatedSummarizer, Summarizer
from functions.minutes.trigger import (
    BadMessageError,
    from_stream_record,
    message_body,
    parse_message,
    planned,
)

logger = logging.getLogger("functions.minutes")


@dataclass(frozen=True, slots=True)
class Runtime:
    """What an invocation needs, built once per process."""

    runner: MinutesJobRunner
    send: Callable[[str, int], None]  # (message body, delay seconds) → the job queue
    leave_deadline: int = 90  # seconds from a leave request to its deadline message


def build_runtime(settings: Settings) -> Runtime:
    """Clients, secrets and the runner for ``settings`` (AWS calls happen here)."""
    import boto3
    from botocore.config import Config

    from functions.minutes.delivery import WebhookDelivery
    from functions.minutes.leave import MeetingExit
    from functions.minutes.recall_bot import RecallBots
    from functions.minutes.store import MinutesStore

    config = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard"})
    store = MinutesStore(boto3.client("dynamodb", config=config), settings.table_name)
    secrets = None
    if (
        settings.openai_api_key_secret_arn
        or settings.webhook_secret_arn
        or settings.recall_api_key_secret_arn
    ):
        secrets = boto3.client("secretsmanager", config=config)
    key = settings.openai_api_key
    if key is None and settings.openai_api_key_secret_arn and secrets is not None:
        key = read_secret(secrets, settings.openai_api_key_secret_arn)
    summarizer: Summarizer = SimulatedSummarizer()
    if key is not None and not key.startswith(OPENAI_KEY_PREFIX):
        # The stack creates the secret with a placeholder until someone puts a key.
        logger.warning("the OpenAI key secret holds no sk- key: minutes are simulated")
        key = None
    if key is not None:
        from openai import OpenAI

        client = OpenAI(api_key=key, base_url=settings.openai_base_url, max_retries=2, timeout=60)
        summarizer = OpenAISummarizer(client, settings.model)
    delivery = None
    secret = settings.webhook_secret
    if secret is None and settings.webhook_secret_arn and secrets is not None:
        secret = read_secret(secrets, settings.webhook_secret_arn)
    if settings.webhook_url is not None and secret is not None:
        delivery = WebhookDelivery(settings.webhook_url, secret)
    recall_key = settings.recall_api_key
    if recall_key is None and settings.recall_api_key_secret_arn and secrets is not None:
        recall_key = read_secret(secrets, settings.recall_api_key_secret_arn)
    recall = (
        RecallBots(recall_key, base_override=settings.recall_api_base)
        if recall_key is not None and not recall_key.startswith(SECRET_PLACEHOLDER_PREFIX)
        else None
    )
    queue_url = settings.job_queue_url
    sqs = boto3.client("sqs", config=config) if queue_url else None

    def send(body: str, delay: int) -> None:
        if sqs is None or queue_url is None:
            raise RuntimeError("JOB_QUEUE_URL is not set: cannot queue a minutes job")
        sqs.send_message(QueueUrl=queue_url, MessageBody=body, DelaySeconds=delay)

    runner = MinutesJobRunner(
        store=store,
        summarizer=summarizer,
        delivery=delivery,
        lease_seconds=settings.lease_seconds,
        grace_seconds=settings.grace_seconds,
        signing_secret=secret,
        meeting_exit=MeetingExit(
            store=store,
            recall=recall,
            chat_enabled=settings.minutes_to_chat,
            default_region=settings.recall_region,
        ),
        leave_bound_seconds=settings.leave_bound_seconds,
    )
    return Runtime(runner=runner, send=send, leave_deadline=settings.leave_deadline_seconds)


#: Every OpenAI API key starts with this.
OPENAI_KEY_PREFIX = "sk-"
#: The stack creates its secrets with a placeholder starting with this until they are filled.
SECRET_PLACEHOLDER_PREFIX = "UNSET-"


def handle_stream(records: list[dict[str, Any]], runtime: Runtime, grace: int) -> list[str]:
    """Queue the jobs a batch of stream records calls for; the failed records' ids."""
    failures: list[str] = []
    for record in records:
        try:
            request = from_stream_record(record)
            if request is None:
                continue
            for message, delay in planned(
                request, grace=grace, leave_deadline=runtime.leave_deadline
            ):
                runtime.send(message_body(message), delay)
        except Exception:
            logger.exception("could not queue a minutes job")
            sequence = (record.get("dynamodb") or {}).get("SequenceNumber")
            failures.append(str(sequence))
            break  # a stream retries from the first failure; later records come again
    return failures


def handle_queue(records: list[dict[str, Any]], runtime: Runtime) -> list[str]:
    """Run the job of each message; the ids of the messages to retry."""
    failures: list[str] = []
    for record in records:
        message_id = str(record.get("messageId", ""))
        try:
            request = parse_message(str(record.get("body", "")))
        except BadMessageError as exc:
            logger.error("dropped a message that is not a minutes job", extra={"reason": str(exc)})
            continue
        try:
            outcome = runtime.runner.run(request)
        except Exception:
            logger.exception("minutes job failed; the queue retries it")
            failures.append(message_id)
            continue
        logger.info("minutes job ran", extra={"outcome": outcome.value, "request": request.kind})
    return failures


class _Entry:
    """Builds the runtime on the first invocation (thread-safe) and dispatches batches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runtime: Runtime | None = None
        self._settings: Settings | None = None

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        if self._runtime is None:
            with self._lock:
                if self._runtime is None:
                    self._settings = load_settings()
                    logging.getLogger().setLevel(self._settings.log_level)
                    self._runtime = build_runtime(self._settings)
        assert self._settings is not None
        records = event.get("Records")
        if not isinstance(records, list) or not records:
            return {"batchItemFailures": []}
        source = records[0].get("eventSource")
        if source == "aws:dynamodb":
            failed = handle_stream(records, self._runtime, self._settings.grace_seconds)
        elif source == "aws:sqs":
            failed = handle_queue(records, self._runtime)
        else:
            raise ValueError(f"unexpected event source {source!r}")
        return {"batchItemFailures": [{"itemIdentifier": i} for i in failed]}


handler = _Entry()
