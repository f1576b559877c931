"""The control API's resources: IAM-authorized route, throttling, scoped function and policy."""

from __future__ import annotations

import json
from typing import Any

from tests.infra.conftest import Synthesized

HANDLER = "control_api.app.handler"


def _function(synthesized: Synthesized) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (k, v)
        for k, v in synthesized.of_type("AWS::Lambda::Function").items()
        if v["Properties"].get("Handler") == HANDLER
    ]
    return found


def _statements(synthesized: Synthesized) -> list[dict[str, Any]]:
    role = _function(synthesized)[1]["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in synthesized.of_type("AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_v1_routes_need_iam_and_reach_the_control_function(synthesized: Synthesized) -> None:
    """Every /v1 request is SigV4-checked by API Gateway before the function runs."""
    function_id, _ = _function(synthesized)
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in synthesized.of_type("AWS::ApiGatewayV2::Route").values()
    }
    assert routes["ANY /v1/{proxy+}"]["AuthorizationType"] == "AWS_IAM"
    integrations = synthesized.of_type("AWS::ApiGatewayV2::Integration")
    target = routes["ANY /v1/{proxy+}"]["Target"]["Fn::Join"][1][1]["Ref"]
    assert integrations[target]["Properties"]["IntegrationUri"] == {
        "Fn::GetAtt": [function_id, "Arn"]
    }


def test_control_routes_are_throttled_below_the_webhooks(synthesized: Synthesized) -> None:
    """A runaway client is throttled on its own route, leaving Recall's webhooks room."""
    stage = synthesized.only("AWS::ApiGatewayV2::Stage")
    settings = stage["Properties"]["RouteSettings"]["ANY /v1/{proxy+}"]
    assert settings == {"ThrottlingRateLimit": 5, "ThrottlingBurstLimit": 10}
    route_ids = [
        k
        for k, r in synthesized.of_type("AWS::ApiGatewayV2::Route").items()
        if r["Properties"]["RouteKey"] == "ANY /v1/{proxy+}"
    ]
    assert set(route_ids) <= set(stage["DependsOn"])


def test_function_reads_only_the_recall_key_and_the_token_key(synthesized: Synthesized) -> None:
    """Secrets: the Recall API key and the relay token key, nothing else; no table Scan."""
    statements = _statements(synthesized)
    secrets = synthesized.of_type("AWS::SecretsManager::Secret")
    resources = [
        resource
        for s in statements
        if "secretsmanager:GetSecretValue" in json.dumps(s["Action"])
        for resource in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    ]
    read = sorted(resource["Ref"] for resource in resources)
    assert read == sorted(k for k in secrets if "RecallApiKey" in k or "RelayToken" in k)
    text = json.dumps(statements)
    assert "dynamodb:Scan" not in text
    assert "dynamodb:DeleteItem" not in text
    assert '"*"' not in text


def test_environment_is_what_the_function_reads(synthesized: Synthesized) -> None:
    """Every variable is one control_api.settings reads; secrets only by ARN."""
    from control_api import settings

    variables = _function(synthesized)[1]["Properties"]["Environment"]["Variables"]
    assert set(variables) == settings.ENV_VARS - settings.LOCAL_ONLY_ENV_VARS
    assert variables["RECALL_REGION"] == "us-west-2"


def test_invoke_policy_allows_only_this_apis_v1_routes(synthesized: Synthesized) -> None:
    """The managed policy to attach grants execute-api:Invoke on /v1 of this API only."""
    (policy,) = [
        p["Properties"]
        for k, p in synthesized.of_type("AWS::IAM::ManagedPolicy").items()
        if "ControlApiInvokePolicy" in k
    ]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "execute-api:Invoke"
    resource = json.dumps(statement["Resource"])
    assert "/$default/*/v1/*" in resource
    assert "WebhookApiHttpApi" in resource
    outputs = synthesized.template.to_json()["Outputs"]
    assert {"ControlApiUrl", "ControlApiInvokePolicyArn", "RecallApiKeySecretArn"} <= set(outputs)
