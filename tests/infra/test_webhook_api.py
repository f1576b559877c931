"""The webhook receiver: arm64 Python 3.14 Lambda behind an HTTP API, least privilege."""

from __future__ import annotations

import json
import re
from typing import Any

from aws_cdk.assertions import Match, Template

from infra.constructs.secrets import (
    OPENAI_KEY_PLACEHOLDER,
    RECALL_KEY_PLACEHOLDER,
    RECALL_WEBHOOK_PLACEHOLDER,
)
from tests.infra.conftest import Synthesized


def _function(synthesized: Synthesized) -> dict[str, Any]:
    # The stack has a second function: CDK's own custom-resource handler that empties the
    # VPC's default security group (cdk.json feature flag).
    return synthesized.resource_of(synthesized.stack.webhook_api.function)


def _logical_id(synthesized: Synthesized, resource_type: str, fragment: str) -> str:
    ids = [k for k in synthesized.of_type(resource_type) if fragment in k]
    assert len(ids) == 1, ids
    return ids[0]


def test_function_runs_python_314_on_arm64_with_the_app_handler(template: Template) -> None:
    """Recall's deliveries reach functions.webhooks.app.handler on Graviton, Python 3.14."""
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Runtime": "python3.14",
            "Architectures": ["arm64"],
            "Handler": "functions.webhooks.app.handler",
            "Timeout": Match.any_value(),
        },
    )


def test_function_answers_well_inside_recalls_15_seconds(synthesized: Synthesized) -> None:
    """A stuck delivery times out before Recall gives up, so Recall's retry is not wasted."""
    assert _function(synthesized)["Properties"]["Timeout"] < 15


def test_function_environment_names_the_table_and_secret_never_its_value(
    synthesized: Synthesized,
) -> None:
    """The function finds its table and secret by reference; no secret value is configured."""
    variables = _function(synthesized)["Properties"]["Environment"]["Variables"]
    table_id = _logical_id(synthesized, "AWS::DynamoDB::GlobalTable", "Storage")
    secret_id = _logical_id(synthesized, "AWS::SecretsManager::Secret", "RecallWebhook")
    assert variables["TABLE_NAME"] == {"Ref": table_id}
    assert variables["RECALL_WEBHOOK_SECRET_ARN"] == {"Ref": secret_id}
    assert variables["EVENT_RETENTION_DAYS"] == "30"
    assert "RECALL_WEBHOOK_SECRET" not in variables


def test_snap_start_serves_the_published_version_through_the_live_alias(
    synthesized: Synthesized, custom: Synthesized
) -> None:
    """Cold starts restore a snapshot of the published version; the API invokes that alias."""
    assert _function(synthesized)["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    alias_id = _logical_id(synthesized, "AWS::Lambda::Alias", "LiveAlias")
    integration_id = _logical_id(synthesized, "AWS::ApiGatewayV2::Integration", "Receiver")
    integration = synthesized.resources[integration_id]
    assert integration["Properties"]["IntegrationUri"] == {"Ref": alias_id}
    assert "SnapStart" not in _function(custom)["Properties"]
    # Superseded versions (each billed for its cached snapshot) are deleted on update.
    (version,) = synthesized.of_type("AWS::Lambda::Version").values()
    assert version["DeletionPolicy"] == "Delete"


def test_routes_are_the_webhook_post_and_health_get(synthesized: Synthesized) -> None:
    """Only POST /webhooks/recall and GET /healthz exist unauthenticated (the control API's
    /v1 routes need IAM: tests/infra/test_control_api.py); anything else is a 404."""
    routes = sorted(
        r["Properties"]["RouteKey"]
        for r in synthesized.of_type("AWS::ApiGatewayV2::Route").values()
        if r["Properties"].get("AuthorizationType", "NONE") == "NONE"
    )
    assert routes == ["GET /healthz", "POST /webhooks/recall"]


def test_default_stage_is_throttled_and_access_logged_without_headers(
    synthesized: Synthesized,
) -> None:
    """A flood is throttled at the edge; each request leaves one JSON log line, no signature."""
    stage = synthesized.only("AWS::ApiGatewayV2::Stage")["Properties"]
    assert stage["StageName"] == "$default"
    assert stage["AutoDeploy"] is True
    assert stage["DefaultRouteSettings"] == {"ThrottlingBurstLimit": 100, "ThrottlingRateLimit": 50}
    fields = json.loads(stage["AccessLogSettings"]["Format"])
    assert fields["requestId"] == "$context.requestId"
    assert not any("header" in value.lower() for value in fields.values())


def test_function_role_reaches_only_its_table_secret_and_logs(synthesized: Synthesized) -> None:
    """The receiver can touch this table, its index, this secret and its own log group only."""
    role_id = _logical_id(synthesized, "AWS::IAM::Role", "WebhookApiFunctionRole")
    role = synthesized.resources[role_id]["Properties"]
    assert "ManagedPolicyArns" not in role
    policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in synthesized.of_type("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    statements = [s for group in policies for s in group]
    table_id = _logical_id(synthesized, "AWS::DynamoDB::GlobalTable", "Storage")
    secret_id = _logical_id(synthesized, "AWS::SecretsManager::Secret", "RecallWebhook")
    log_id = _logical_id(synthesized, "AWS::Logs::LogGroup", "WebhookApiFunctionLogs")
    by_service = {s["Action"][0].split(":")[0]: s for s in statements}
    assert set(by_service) == {"logs", "dynamodb", "secretsmanager"}
    assert by_service["dynamodb"]["Resource"] == [
        {"Fn::GetAtt": [table_id, "Arn"]},
        {"Fn::Join": ["", [{"Fn::GetAtt": [table_id, "Arn"]}, "/index/by_day"]]},
    ]
    assert not any(a in by_service["dynamodb"]["Action"] for a in ("dynamodb:Scan", "dynamodb:*"))
    assert by_service["secretsmanager"]["Resource"] == {"Ref": secret_id}
    assert by_service["logs"]["Resource"] == {"Fn::GetAtt": [log_id, "Arn"]}
    assert all(s["Effect"] == "Allow" and "*" not in json.dumps(s["Resource"]) for s in statements)


def test_template_holds_no_secret_value_only_placeholders(synthesized: Synthesized) -> None:
    """Nothing secret ships in the template: fixed placeholders, and a generated token key."""
    secrets = synthesized.of_type("AWS::SecretsManager::Secret")
    literal = sorted(
        s["Properties"]["SecretString"]
        for s in secrets.values()
        if "SecretString" in s["Properties"]
    )
    assert literal == sorted(
        [OPENAI_KEY_PLACEHOLDER, RECALL_WEBHOOK_PLACEHOLDER, RECALL_KEY_PLACEHOLDER]
    )
    generated = [s for s in secrets.values() if "GenerateSecretString" in s["Properties"]]
    # the relay token key, the tool signing key and the minutes delivery signing key
    assert len(generated) == 3
    body = json.dumps(synthesized.template.to_json())
    assert not re.search(r"whsec_[A-Za-z0-9+/=]{8,}", body)
    assert not re.search(r"sk-[A-Za-z0-9_-]{8,}", body)


def test_outputs_give_the_webhook_url_table_and_secret(synthesized: Synthesized) -> None:
    """After deploy the user reads where to point Recall and which secret to fill."""
    outputs = synthesized.template.to_json()["Outputs"]
    assert {"WebhookUrl", "TableName", "WebhookSecretArn"} <= set(outputs)
    url = json.dumps(outputs["WebhookUrl"]["Value"])
    assert url.startswith('{"Fn::Join"')
    assert url.endswith('"/webhooks/recall"]]}')
