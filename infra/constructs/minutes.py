"""MeetingMinutes: the end-of-meeting pipeline: table stream → job queue → minutes Lambda.

- **Function** (``functions.minutes.handler.handler``): Python 3.14 on arm64, its own
  role and log group, two event sources:

  * the table's stream (new and old images), filtered (``storage.minutes.
    stream_filter_patterns``) to bots reaching ``done``/``fatal``, connections ending
    and leave requests,
    with partial batch failures, bisection, 5 retries, a 1-day record age limit, and the
    dead-letter queue as its on-failure destination;
  * the job queue (SQS, SSE, TLS only): one message per job request; partial batch
    failures; after :data:`MAX_RECEIVES` receives a message moves to the dead-letter
    queue. The visibility timeout is six times the function's timeout (AWS's advice for
    SQS event sources), and the job lease (``JOB_LEASE_SECONDS``) sits between the two,
    so a crashed run's claim has run out by the time its message comes back.
- **Dead-letter queue** with an alarm on any visible message (``alarm``; the stack routes
  it to the alarm topic): a job that failed every attempt, or a stream batch given up on.
- **Delivery secret**: a generated Standard Webhooks key (32 alphanumerics, which
  ``standardwebhooks`` reads as base64: 24 bytes), for the user to verify
  ``minutes.ready`` deliveries with (``whsec_`` + the value). Always made: a bot's own
  ``minutes_url`` is signed with it even when the stack has no ``webhook_url``.
- **Recall key** (read only): a bot asked to leave with ``minutes_to_chat`` gets its
  minutes posted in the meeting chat and is then made to leave by this function
  (``functions.minutes.leave``); stream records of new ``LEAVE`` items start it.

Environment (``functions.minutes.settings.ENV_VARS`` minus the local-only ones). Grants on
the table and the OpenAI key secret are the stack's; the queue, the delivery secret and
the Recall key are granted here.
"""

from __future__ import annotations

from typing import Final

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs.python_function import python_function
from storage.minutes import stream_filter_patterns

HANDLER: Final = "functions.minutes.handler.handler"
#: A job reads a meeting, calls a model (up to a minute) and delivers (retries ~15 s).
TIMEOUT: Final = Duration.minutes(3)
JOB_LEASE_SECONDS: Final = 240  # > TIMEOUT, < the visibility timeout
#: A leaving bot waits this long for its minutes, then leaves without them (< TIMEOUT).
LEAVE_BOUND_SECONDS: Final = 60
MAX_RECEIVES: Final = 5
#: Delivery-signing key length (alphanumerics; a multiple of 4, so valid base64).
WEBHOOK_KEY_LENGTH: Final = 32


class MeetingMinutes(Construct):
    """Exposes ``function``, ``queue``, ``dead_letters``, ``alarm``, ``webhook_secret``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        table: dynamodb.ITableV2,
        openai_api_key: secretsmanager.ISecret,
        model: str,
        webhook_url: str | None,
        grace_seconds: int,
        log_retention: logs.RetentionDays,
        log_level: str,
        recall_api_key: secretsmanager.ISecret,
        recall_region: str,
        minutes_to_chat: bool = False,
    ) -> None:
        """Build the queues, the function and its event sources; table grants are the stack's."""
        super().__init__(scope, construct_id)
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.queue = sqs.Queue(
            self,
            "Jobs",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(TIMEOUT.to_seconds() * 6),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=MAX_RECEIVES, queue=self.dead_letters
            ),
        )
        environment = {
            "TABLE_NAME": table.table_name,
            "JOB_QUEUE_URL": self.queue.queue_url,
            "OPENAI_API_KEY_SECRET_ARN": openai_api_key.secret_arn,
            "MINUTES_MODEL": model,
            "SESSION_END_GRACE_SECONDS": str(grace_seconds),
            "JOB_LEASE_SECONDS": str(JOB_LEASE_SECONDS),
            "LOG_LEVEL": log_level,
            "MINUTES_TO_CHAT": "on" if minutes_to_chat else "off",
            "LEAVE_BOUND_SECONDS": str(LEAVE_BOUND_SECONDS),
            "RECALL_API_KEY_SECRET_ARN": recall_api_key.secret_arn,
            "RECALL_REGION": recall_region,
        }
        self.webhook_secret = secretsmanager.Secret(
            self,
            "WebhookSigningKey",
            description=(
                "Signs minutes.ready deliveries (Standard Webhooks); verify them with "
                "whsec_<this value>."
            ),
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=WEBHOOK_KEY_LENGTH,
                exclude_punctuation=True,
                include_space=False,
            ),
        )
        environment["MINUTES_WEBHOOK_SECRET_ARN"] = self.webhook_secret.secret_arn
        if webhook_url is not None:
            environment["MINUTES_WEBHOOK_URL"] = webhook_url
        self.function = self._build_function(code, environment, log_retention)
        self.queue.grant_send_messages(self.function)
        self.webhook_secret.grant_read(self.function)
        recall_api_key.grant_read(self.function)
        self._connect(table)
        self.alarm = cloudwatch.Alarm(
            self,
            "DeadLettersAlarm",
            alarm_description=(
                "Minutes jobs failed every attempt (model, table or delivery endpoint): read "
                "the minutes function's logs, fix, then redrive the dead-letter queue."
            ),
            metric=self.dead_letters.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic="Maximum"
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def widgets(self, width: int = 8) -> list[cloudwatch.IWidget]:
        """Dashboard graphs: jobs run and failed, queue backlog, dead letters."""
        return [
            cloudwatch.GraphWidget(
                title="Minutes jobs: invocations / errors",
                left=[
                    self.function.metric_invocations(statistic="Sum"),
                    self.function.metric_errors(statistic="Sum"),
                ],
                width=width,
            ),
            cloudwatch.GraphWidget(
                title="Minutes queue: oldest job (s) / dead letters",
                left=[self.queue.metric_approximate_age_of_oldest_message(statistic="Maximum")],
                right=[
                    self.dead_letters.metric_approximate_number_of_messages_visible(
                        statistic="Maximum"
                    )
                ],
                width=width,
            ),
        ]

    # Private

    def _build_function(
        self, code: lambda_.Code, environment: dict[str, str], log_retention: logs.RetentionDays
    ) -> lambda_.Function:
        function, self.log_group = python_function(
            self,
            handler=HANDLER,
            code=code,
            role_description="Meeting minutes: its log group, the table and its stream, its queues",
            log_retention=log_retention,
            # JSON lines: the stdlib logger's `extra` fields (bot_id, outcome) become keys.
            logging_format=lambda_.LoggingFormat.JSON,
            memory_size=512,
            timeout=TIMEOUT,
            environment=environment,
            description="Meeting minutes: build once per bot from turns and notes, deliver",
        )
        return function

    def _connect(self, table: dynamodb.ITableV2) -> None:
        self.function.add_event_source(
            sources.DynamoEventSource(
                table,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=100,
                filters=[{"pattern": pattern} for pattern in stream_filter_patterns()],
                on_failure=sources.SqsDlq(self.dead_letters),
                retry_attempts=5,
                bisect_batch_on_error=True,
                report_batch_item_failures=True,
                max_record_age=Duration.days(1),
            )
        )
        self.function.add_event_source(
            sources.SqsEventSource(self.queue, batch_size=5, report_batch_item_failures=True)
        )
