"""The minutes pipeline's resources: stream, queue, dead letters, alarm, least privilege."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match, Template

from tests.infra.conftest import Synthesized

HANDLER = "functions.minutes.handler.handler"


def _function(synthesized: Synthesized) -> tuple[str, dict[str, Any]]:
    found = [
        (k, v)
        for k, v in synthesized.of_type("AWS::Lambda::Function").items()
        if v["Properties"].get("Handler") == HANDLER
    ]
    assert len(found) == 1
    return found[0]


def _policy_statements(synthesized: Synthesized, function_id: str) -> list[dict[str, Any]]:
    role_ref = _function(synthesized)[1]["Properties"]["Role"]["Fn::GetAtt"][0]
    statements: list[dict[str, Any]] = []
    for policy in synthesized.of_type("AWS::IAM::Policy").values():
        if {"Ref": role_ref} in policy["Properties"]["Roles"]:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    del function_id
    return statements


def _queues(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    return {
        k: v["Properties"]
        for k, v in synthesized.of_type("AWS::SQS::Queue").items()
        if "Minutes" in k
    }


def test_table_streams_new_and_old_images(template: Template) -> None:
    """The trigger needs old images to tell a new end from a rewrite of an ended item."""
    template.has_resource_properties(
        "AWS::DynamoDB::GlobalTable",
        {"StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"}},
    )


def test_stream_source_is_filtered_retried_and_dead_lettered(synthesized: Synthesized) -> None:
    """Only final bot states and connection ends invoke the function; failures land in the DLQ."""
    function_id, _ = _function(synthesized)
    mappings = [
        m["Properties"]
        for m in synthesized.of_type("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": function_id}
    ]
    stream = next(m for m in mappings if "StreamArn" in json.dumps(m["EventSourceArn"]))
    patterns = [json.loads(f["Pattern"]) for f in stream["FilterCriteria"]["Filters"]]
    assert patterns[0]["dynamodb"]["NewImage"]["status"] == {"S": ["done", "fatal"]}
    assert patterns[1]["dynamodb"]["NewImage"]["ended_at"] == {"S": [{"exists": True}]}
    assert stream["BisectBatchOnFunctionError"] is True
    assert stream["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert stream["MaximumRetryAttempts"] == 5
    dlq_id = next(k for k in _queues(synthesized) if "DeadLetters" in k)
    assert stream["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": [dlq_id, "Arn"]
    }
    queue = next(m for m in mappings if m is not stream)
    assert queue["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_job_queue_redrives_to_the_dead_letter_queue(synthesized: Synthesized) -> None:
    """A job that fails five receives moves to the DLQ; both queues are encrypted."""
    queues = _queues(synthesized)
    jobs = next(v for k, v in queues.items() if "Jobs" in k)
    dlq_id = next(k for k in queues if "DeadLetters" in k)
    assert jobs["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": 5,
    }
    _, function = _function(synthesized)
    # The job lease outlives a run and ends before the message is visible again.
    lease = int(function["Properties"]["Environment"]["Variables"]["JOB_LEASE_SECONDS"])
    assert function["Properties"]["Timeout"] < lease < jobs["VisibilityTimeout"]
    for queue in queues.values():
        assert queue["SqsManagedSseEnabled"] is True


def test_dead_letters_alarm_pages_the_topic(synthesized: Synthesized) -> None:
    """Any message in the DLQ raises the alarm on the stack's alarm topic."""
    dlq_id = next(k for k in _queues(synthesized) if "DeadLetters" in k)
    (topic_id,) = synthesized.of_type("AWS::SNS::Topic")
    alarms = [
        a["Properties"]
        for a in synthesized.of_type("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
    ]
    (alarm,) = alarms
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq_id, "QueueName"]}}
    ]
    assert alarm["Threshold"] == 1
    assert alarm["AlarmActions"] == [{"Ref": topic_id}]


def test_function_is_scoped_to_the_table_its_queues_and_its_three_secrets(
    synthesized: Synthesized,
) -> None:
    """No wildcard resource except the stream listing AWS cannot scope; secrets: the OpenAI
    key, the delivery signing key, the Recall key (to post minutes and leave)."""
    function_id, function = _function(synthesized)
    statements = _policy_statements(synthesized, function_id)
    text = json.dumps(statements)
    secrets = synthesized.of_type("AWS::SecretsManager::Secret")
    expected = {
        next(k for k in secrets if "OpenAI" in k),
        next(k for k in secrets if "WebhookSigningKey" in k),
        next(k for k in secrets if "RecallApiKey" in k),
    }
    read = [s for s in statements if "secretsmanager:GetSecretValue" in json.dumps(s["Action"])]
    resources = [
        r["Ref"]
        for s in read
        for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    ]
    assert sorted(resources) == sorted(expected)
    assert "dynamodb:Scan" not in text
    assert "dynamodb:DeleteItem" not in text
    for statement in statements:
        if statement["Resource"] == "*":
            assert statement["Action"] == "dynamodb:ListStreams"
    variables = function["Properties"]["Environment"]["Variables"]
    assert "MINUTES_WEBHOOK_URL" not in variables
    assert not any(
        "sk-" in str(v) or "whsec" in str(v) for v in variables.values()
    )  # no secret value in the template


def test_environment_is_what_the_function_reads(
    synthesized: Synthesized, custom: Synthesized
) -> None:
    """Every variable is one functions.minutes.settings reads; the stack URL only if set."""
    from functions.minutes import settings

    deployable = settings.ENV_VARS - settings.LOCAL_ONLY_ENV_VARS
    variables = _function(synthesized)[1]["Properties"]["Environment"]["Variables"]
    assert set(variables) == deployable - {"MINUTES_WEBHOOK_URL"}
    assert variables["MINUTES_TO_CHAT"] == "off"  # the stack's default
    assert int(variables["LEAVE_BOUND_SECONDS"]) < 180  # under the function's timeout
    with_webhook = _function(custom)[1]["Properties"]["Environment"]["Variables"]
    assert set(with_webhook) == deployable
    assert with_webhook["MINUTES_TO_CHAT"] == "on"  # -c minutes_to_chat=true


def test_webhook_signing_key_is_generated_and_readable_by_the_function(
    custom: Synthesized,
) -> None:
    """With minutes_webhook_url, a generated key signs deliveries; only the function reads it."""
    function_id, function = _function(custom)
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["MINUTES_WEBHOOK_URL"] == "https://hooks.example.com/minutes"
    key_ref = variables["MINUTES_WEBHOOK_SECRET_ARN"]["Ref"]
    key = custom.of_type("AWS::SecretsManager::Secret")[key_ref]["Properties"]
    assert key["GenerateSecretString"]["PasswordLength"] == 32
    assert key["GenerateSecretString"]["ExcludePunctuation"] is True
    statements = _policy_statements(custom, function_id)
    reads = [
        resource
        for s in statements
        if "GetSecretValue" in json.dumps(s["Action"])
        # cdk.json's minimizePolicies merges statements of the same actions into one.
        for resource in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    ]
    assert {"Ref": key_ref} in reads
    outputs = custom.template.to_json()["Outputs"]
    assert outputs["MinutesWebhookSecretArn"]["Value"] == {"Ref": key_ref}


def test_function_runs_python_314_on_arm64(template: Template) -> None:
    """Same runtime as the webhook receiver."""
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": HANDLER,
            "Runtime": "python3.14",
            "Architectures": ["arm64"],
            "Timeout": 180,
            "LoggingConfig": Match.object_like({"LogFormat": "JSON"}),
        },
    )
    template.has_output("MinutesDeadLetterQueueUrl", Match.any_value())


def test_dashboard_shows_minutes_jobs_and_the_control_api(synthesized: Synthesized) -> None:
    """The stack's dashboard has a row for minutes jobs, their queue, and the control API."""
    (dashboard,) = synthesized.of_type("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for title in (
        "Minutes jobs: invocations / errors",
        "Minutes queue: oldest job (s) / dead letters",
        "Control API Lambda: invocations / errors / p99 ms",
    ):
        assert title in body
