"""WebhookApi: the Recall webhook receiver: an HTTP API in front of one arm64 Lambda.

- Lambda: Python 3.14 on arm64, handler ``functions.webhooks.app.handler``, code bundled
  locally (``infra/bundling.py``), its own role (logs to its own log group, nothing else
  until the stack grants the table and the secret), its own log group with retention.
- SnapStart (optional, on by default) on published versions, served through the ``live``
  alias: Lambda runs the init (imports, app construction) when a version is published and
  restores that snapshot on a cold start. Safe here because the app reads no secret and
  opens no connection at import: the signing secret is read at the first request.
- HTTP API with an explicit ``$default`` stage (so it can carry access logs: JSON, no
  headers, so no signatures), stage-wide throttling, routes ``POST /webhooks/recall`` and
  ``GET /healthz``. No authorizer: Recall cannot send one; every delivery is authenticated
  by its Standard Webhooks signature inside the function.

Environment (``functions.webhooks.settings.ENV_VARS``): ``TABLE_NAME``,
``RECALL_WEBHOOK_SECRET_ARN``, ``EVENT_RETENTION_DAYS``, ``POWERTOOLS_SERVICE_NAME``,
``POWERTOOLS_METRICS_NAMESPACE``, ``POWERTOOLS_LOG_LEVEL``. Never the secret's value.
"""

from __future__ import annotations

import json
from typing import Final

import jsii
from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.constructs.python_function import python_function

HANDLER: Final = "functions.webhooks.app.handler"
WEBHOOK_PATH: Final = "/webhooks/recall"
HEALTH_PATH: Final = "/healthz"
SERVICE_NAME: Final = "recall-webhooks"
METRICS_NAMESPACE: Final = "RecallVoiceAgent/Webhooks"
ALIAS_NAME: Final = "live"

#: One JSON line per request; $context variables of HTTP APIs. No headers, no body.
ACCESS_LOG_FIELDS: Final = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "method": "$context.httpMethod",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationStatus": "$context.integrationStatus",
    "integrationError": "$context.integrationErrorMessage",
    "userAgent": "$context.identity.userAgent",
}


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    """jsii needs a class here: a dict is not accepted for an interface-typed prop."""

    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)
        self._format = apigateway.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS))

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigateway.AccessLogFormat:
        return self._format


class WebhookApi(Construct):
    """Lambda + HTTP API. Exposes ``function``, ``alias``, ``api``, ``stage``, ``url``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        table_name: str,
        webhook_secret: secretsmanager.ISecret,
        event_retention_days: int,
        log_retention: logs.RetentionDays,
        memory_mb: int,
        timeout_seconds: int,
        snap_start: bool,
        throttle_rate: int,
        throttle_burst: int,
        log_level: str,
    ) -> None:
        """Build the function, its alias and the API; grants are left to the stack."""
        super().__init__(scope, construct_id)
        self.function = self._build_function(
            code=code,
            environment={
                "TABLE_NAME": table_name,
                "RECALL_WEBHOOK_SECRET_ARN": webhook_secret.secret_arn,
                "EVENT_RETENTION_DAYS": str(event_retention_days),
                "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "POWERTOOLS_LOG_LEVEL": log_level,
            },
            log_retention=log_retention,
            memory_mb=memory_mb,
            timeout_seconds=timeout_seconds,
            snap_start=snap_start,
        )
        # The alias always points at the version built from the current code and config.
        self.alias = lambda_.Alias(
            self, "LiveAlias", alias_name=ALIAS_NAME, version=self.function.current_version
        )
        self.api, self.stage = self._build_api(
            log_retention=log_retention, throttle_rate=throttle_rate, throttle_burst=throttle_burst
        )

    @property
    def url(self) -> str:
        """The URL to paste into Recall's dashboard."""
        # The $default stage's URL ends with "/".
        return f"{self.stage.url}{WEBHOOK_PATH.lstrip('/')}"

    # Private

    def _build_function(
        self,
        *,
        code: lambda_.Code,
        environment: dict[str, str],
        log_retention: logs.RetentionDays,
        memory_mb: int,
        timeout_seconds: int,
        snap_start: bool,
    ) -> lambda_.Function:
        function, self.log_group = python_function(
            self,
            handler=HANDLER,
            code=code,
            role_description=(
                "Recall webhook receiver: its log group, the table, the signing secret"
            ),
            log_retention=log_retention,
            memory_size=memory_mb,
            timeout=Duration.seconds(timeout_seconds),
            environment=environment,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if snap_start else None,
            # Superseded versions are deleted: each SnapStart version is billed for its
            # cached snapshot while it exists, and only the `live` alias's is ever invoked.
            current_version_options=lambda_.VersionOptions(removal_policy=RemovalPolicy.DESTROY),
            description="Recall.ai webhooks: verify the signature, store once, advance bot state",
        )
        return function

    def _build_api(
        self, *, log_retention: logs.RetentionDays, throttle_rate: int, throttle_burst: int
    ) -> tuple[apigwv2.HttpApi, apigwv2.HttpStage]:
        api = apigwv2.HttpApi(
            self,
            "HttpApi",
            description="Recall.ai webhooks",
            create_default_stage=False,  # the explicit stage below carries access logs
        )
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=api,
            stage_name="$default",
            auto_deploy=True,
            access_log_settings=_AccessLogSettings(self.access_logs),
            throttle=apigwv2.ThrottleSettings(rate_limit=throttle_rate, burst_limit=throttle_burst),
        )
        integration = integrations.HttpLambdaIntegration("Receiver", self.alias)
        api.add_routes(
            path=WEBHOOK_PATH, methods=[apigwv2.HttpMethod.POST], integration=integration
        )
        api.add_routes(path=HEALTH_PATH, methods=[apigwv2.HttpMethod.GET], integration=integration)
        return api, stage
