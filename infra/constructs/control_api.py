"""ControlApi: the control API's routes on the stack's HTTP API, behind IAM (SigV4) auth.

- **Route** ``ANY /v1/{proxy+}`` on the webhook construct's HTTP API with API Gateway's IAM
  authorizer: a request must be SigV4-signed (service ``execute-api``) by a principal
  allowed ``execute-api:Invoke`` on it, checked before the function runs. The
  ``invoke_policy`` managed policy grants exactly that; attach it to the roles or users
  that drive bots (its ARN is a stack output).
- **Throttling** for the route (stage route settings): steady rate and burst, below the
  stage's, so a runaway client cannot starve Recall's webhooks.
- **Function** ``control_api.app.handler``: Python 3.14 on arm64, its own role and log
  group, 29 s timeout (API Gateway stops waiting at 30 s).
- **Recall API key** secret (placeholder until filled): the key lives in Secrets Manager,
  not on a laptop. The function reads it and the relay token key at first use.

Environment (``control_api.settings.ENV_VARS`` minus the local-only ones). Table and relay
token grants are the stack's.
"""

from __future__ import annotations

from typing import Final

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.constructs.python_function import python_function

HANDLER: Final = "control_api.app.handler"
ROUTE_PATH: Final = "/v1/{proxy+}"
ROUTE_KEY: Final = f"ANY {ROUTE_PATH}"


class ControlApi(Construct):
    """Exposes ``function``, ``recall_api_key``, ``invoke_policy``, ``url``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        http_api: apigwv2.HttpApi,
        stage: apigwv2.HttpStage,
        table_name: str,
        relay_token_secret: secretsmanager.ISecret,
        recall_api_key: secretsmanager.ISecret,
        agent_page_url: str,
        recall_region: str,
        log_retention: logs.RetentionDays,
        throttle_rate: int,
        throttle_burst: int,
    ) -> None:
        """Build the function and the route (the Recall key is the stack's one secret, shared
        with the relay's tools); cross-construct grants: the stack."""
        super().__init__(scope, construct_id)
        self.recall_api_key = recall_api_key
        self.function, self.log_group = python_function(
            self,
            handler=HANDLER,
            code=code,
            role_description="Control API: its log group, the table, the Recall key, the token key",
            log_retention=log_retention,
            # JSON lines: the stdlib logger's `extra` fields (bot_id, outcome) become keys.
            logging_format=lambda_.LoggingFormat.JSON,
            memory_size=512,
            timeout=Duration.seconds(29),
            environment={
                "TABLE_NAME": table_name,
                "AGENT_PAGE_URL": agent_page_url,
                "RECALL_API_KEY_SECRET_ARN": self.recall_api_key.secret_arn,
                "RECALL_REGION": recall_region,
                "RELAY_TOKEN_SECRET_ARN": relay_token_secret.secret_arn,
            },
            description="Control API: create, dismiss and inspect bots (IAM-authenticated)",
        )
        self.recall_api_key.grant_read(self.function)
        routes = http_api.add_routes(
            path=ROUTE_PATH,
            methods=[apigwv2.HttpMethod.ANY],
            integration=integrations.HttpLambdaIntegration("Control", self.function),
            authorizer=authorizers.HttpIamAuthorizer(),
        )
        cfn_stage = stage.node.default_child
        assert isinstance(cfn_stage, apigwv2.CfnStage)
        cfn_stage.add_property_override(
            f"RouteSettings.{ROUTE_KEY}",
            {"ThrottlingRateLimit": throttle_rate, "ThrottlingBurstLimit": throttle_burst},
        )
        for route in routes:  # route settings name a route that must exist first
            cfn_stage.node.add_dependency(route)
        stack = Stack.of(self)
        self.invoke_policy = iam.ManagedPolicy(
            self,
            "InvokePolicy",
            description="Call the control API (SigV4): attach to whoever drives bots",
            statements=[
                iam.PolicyStatement(
                    actions=["execute-api:Invoke"],
                    resources=[
                        stack.format_arn(
                            service="execute-api",
                            resource=http_api.api_id,
                            resource_name=f"{stage.stage_name}/*/v1/*",
                        )
                    ],
                )
            ],
        )
        self.url = f"{stage.url}v1"

    def widgets(self, width: int = 8) -> list[cloudwatch.IWidget]:
        """Dashboard graph: control API calls, errors and duration."""
        return [
            cloudwatch.GraphWidget(
                title="Control API Lambda: invocations / errors / p99 ms",
                left=[
                    self.function.metric_invocations(statistic="Sum"),
                    self.function.metric_errors(statistic="Sum"),
                ],
                right=[self.function.metric_duration(statistic="p99")],
                width=width,
            )
        ]
