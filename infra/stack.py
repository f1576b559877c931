"""VoiceAgentStack: composes the constructs, grants across them, declares the outputs.

No resource is created here directly: each lives in the construct that owns its idea
(``infra/constructs/``). What this module owns is the wiring between them (who may read
which table or secret) and the stack's outputs, which are the user's entry points.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.bundling import LocalPipBundling, lambda_code
from infra.constructs.control_api import ControlApi
from infra.constructs.edge import Edge
from infra.constructs.minutes import MeetingMinutes
from infra.constructs.observability import Observability
from infra.constructs.relay_origin import OriginTls
from infra.constructs.relay_service import RelayService
from infra.constructs.secrets import AppSecrets
from infra.constructs.storage import Storage
from infra.constructs.webhook_api import WebhookApi
from infra.settings import StackSettings

#: The webhook Lambda bundle: the `webhooks` extra's pins plus these source packages.
WEBHOOK_EXTRA = "webhooks"
WEBHOOK_PACKAGES = ("functions", "storage")
#: The minutes Lambda bundle: the `minutes` extra's pins plus the same sources.
MINUTES_EXTRA = "minutes"
#: The control API bundle: it reuses the CLI's Recall client and readers and relay.tokens.
CONTROL_API_EXTRA = "control_api"
#: relay_container/agent.yaml: the operator's agent config the relay image carries, so the
#: control API checks a bot's persona against the same rules (cli.persona.operator_agent).
CONTROL_API_PACKAGES = (
    "control_api",
    "cli",
    "functions",
    "relay_container/relay",
    "relay_container/agent.yaml",
    "storage",
)
#: With a custom domain, CloudFront reaches the ALB over TLS at origin.<domain>.
ORIGIN_SUBDOMAIN = "origin"


class VoiceAgentStack(Stack):
    """The whole app: table, secrets, webhook API, relay, edge, dashboard and alarms."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StackSettings,
        project_root: Path,
        description: str | None = None,
    ) -> None:
        """Compose the app from ``settings``; sources are read from ``project_root``."""
        super().__init__(
            scope,
            construct_id,
            description=description
            or "Recall.ai meeting bot with a real-time voice: webhooks, relay, agent page",
        )
        self.settings = settings
        log_retention = retention_days(settings.log_retention_days)
        domain = settings.custom_domain
        origin_tls = (
            OriginTls(
                domain_name=f"{ORIGIN_SUBDOMAIN}.{domain.domain_name}",
                viewer_domain=domain.domain_name,
                hosted_zone_id=domain.hosted_zone_id,
                hosted_zone_name=domain.hosted_zone_name,
            )
            if domain
            else None
        )

        self.storage = Storage(
            self,
            "Storage",
            table_name=settings.table_name,
            retain=settings.retain_data,
            deletion_protection=settings.deletion_protection,
        )
        self.secrets = AppSecrets(self, "Secrets")

        bundler = LocalPipBundling(
            project_root=project_root, extra=WEBHOOK_EXTRA, packages=WEBHOOK_PACKAGES
        )
        self.webhook_api = WebhookApi(
            self,
            "WebhookApi",
            code=lambda_code(bundler, source_dir=str(project_root / "functions")),
            table_name=self.storage.table.table_name,
            webhook_secret=self.secrets.recall_webhook,
            event_retention_days=settings.event_retention_days,
            log_retention=log_retention,
            memory_mb=settings.webhook_memory_mb,
            timeout_seconds=settings.webhook_timeout_seconds,
            snap_start=settings.webhook_snap_start,
            throttle_rate=settings.webhook_throttle_rate,
            throttle_burst=settings.webhook_throttle_burst,
            log_level=settings.webhook_log_level,
        )

        self.minutes = MeetingMinutes(
            self,
            "Minutes",
            code=lambda_code(
                LocalPipBundling(
                    project_root=project_root, extra=MINUTES_EXTRA, packages=WEBHOOK_PACKAGES
                ),
                source_dir=str(project_root / "functions"),
            ),
            table=self.storage.table,
            openai_api_key=self.secrets.openai_api_key,
            model=settings.minutes_model,
            webhook_url=settings.minutes_webhook_url,
            grace_seconds=settings.minutes_session_grace_seconds,
            minutes_to_chat=settings.minutes_to_chat,
            recall_api_key=self.secrets.recall_api_key,
            recall_region=settings.recall_region,
            log_retention=log_retention,
            log_level=settings.webhook_log_level,
        )

        self.relay = RelayService(
            self,
            "Relay",
            settings=settings.relay,
            project_root=project_root,
            openai_api_key=self.secrets.openai_api_key,
            relay_token_secret=self.secrets.relay_token,
            recall_api_key=self.secrets.recall_api_key,
            tool_signing_secret=self.secrets.tool_signing,
            recall_webhook_secret=self.secrets.recall_webhook,
            recall_region=settings.recall_region,
            table_name=self.storage.table.table_name,
            metrics_service=f"{settings.stack_name}-relay",
            log_retention=log_retention,
            availability_zones=settings.availability_zones,
            origin_tls=origin_tls,
        )
        self.edge = Edge(
            self,
            "Edge",
            load_balancer=self.relay.load_balancer,
            origin_tls_domain=origin_tls.domain_name if origin_tls else None,
            price_class=settings.cloudfront_price_class,
            custom_domain=settings.custom_domain,
        )
        self.control_api = ControlApi(
            self,
            "ControlApi",
            code=lambda_code(
                LocalPipBundling(
                    project_root=project_root,
                    extra=CONTROL_API_EXTRA,
                    packages=CONTROL_API_PACKAGES,
                ),
                source_dir=str(project_root / "control_api"),
            ),
            http_api=self.webhook_api.api,
            stage=self.webhook_api.stage,
            table_name=self.storage.table.table_name,
            relay_token_secret=self.secrets.relay_token,
            recall_api_key=self.secrets.recall_api_key,
            agent_page_url=self.edge.page_url,
            recall_region=settings.recall_region,
            log_retention=log_retention,
            throttle_rate=settings.control_api_throttle_rate,
            throttle_burst=settings.control_api_throttle_burst,
        )
        self.observability = Observability(
            self,
            "Observability",
            relay=self.relay,
            max_sessions_per_task=settings.relay.max_sessions,
            http_api=self.webhook_api.api,
            function=self.webhook_api.function,
            table=self.storage.table,
            alarm_email=settings.alarm_email,
        )

        # Cross-construct grants: the receiver reads its secret and writes the table; the
        # relay records sessions and turns. (ECS grants the task secrets to the execution
        # role itself, at task start.)
        self.storage.grant_data(self.webhook_api.function)
        self.secrets.recall_webhook.grant_read(self.webhook_api.function)
        self.storage.grant_data(self.relay.task_definition.task_role)
        # The minutes job reads meetings and writes minutes; it summarizes with the OpenAI
        # key; its dead-letter alarm goes where every alarm goes.
        self.storage.grant_data(self.minutes.function)
        # The control API creates and reads bots and mints relay tokens for their pages.
        self.storage.grant_data(self.control_api.function)
        self.secrets.relay_token.grant_read(self.control_api.function)
        self.secrets.openai_api_key.grant_read(self.minutes.function)
        self.minutes.alarm.add_alarm_action(cw_actions.SnsAction(self.observability.topic))
        self.observability.dashboard.add_widgets(
            *self.minutes.widgets(), *self.control_api.widgets()
        )

        self._outputs()

    def _outputs(self) -> None:
        CfnOutput(
            self,
            "ControlApiUrl",
            value=self.control_api.url,
            description="The control API (SigV4-signed requests; docs/control-api.md)",
        )
        CfnOutput(
            self,
            "ControlApiInvokePolicyArn",
            value=self.control_api.invoke_policy.managed_policy_arn,
            description="Attach to the IAM roles or users allowed to call the control API",
        )
        CfnOutput(
            self,
            "MinutesDeadLetterQueueUrl",
            value=self.minutes.dead_letters.queue_url,
            description="Minutes jobs that failed every attempt (redrive after a fix)",
        )
        CfnOutput(
            self,
            "MinutesWebhookSecretArn",
            value=self.minutes.webhook_secret.secret_arn,
            description="Verify minutes.ready deliveries with whsec_<this secret's value>",
        )
        CfnOutput(
            self,
            "WebhookUrl",
            value=self.webhook_api.url,
            description="Paste into Recall's dashboard as the webhook endpoint",
        )
        CfnOutput(self, "TableName", value=self.storage.table.table_name)
        CfnOutput(
            self,
            "RelayUrl",
            value=self.edge.relay_url,
            description="OpenAI-compatible Realtime WebSocket URL (a relay token is the key)",
        )
        CfnOutput(
            self,
            "AgentPageUrl",
            value=self.edge.page_url,
            description=(
                "The agent page: the bot's output-media webpage; the relay token rides in "
                "the fragment (#token=...), never the query"
            ),
        )
        CfnOutput(
            self,
            "OpenAIKeySecretArn",
            value=self.secrets.openai_api_key.secret_arn,
            description="Put an OpenAI API key here, then force a new relay deployment",
        )
        CfnOutput(
            self,
            "RecallApiKeySecretArn",
            value=self.secrets.recall_api_key.secret_arn,
            description=(
                "Put your Recall API key here: the control API and the relay's tools (leave, "
                "chat) use it"
            ),
        )
        CfnOutput(
            self,
            "ToolSigningSecretArn",
            value=self.secrets.tool_signing.secret_arn,
            description="Key that signs HTTP tool requests: your endpoints verify with it",
        )
        CfnOutput(
            self,
            "RelayTokenSecretArn",
            value=self.secrets.relay_token.secret_arn,
            description="Key that signs relay tokens (generated; the CLI reads it to mint)",
        )
        CfnOutput(self, "RelayClusterName", value=self.relay.cluster.cluster_name)
        CfnOutput(
            self,
            "RelayServiceName",
            value=self.relay.service.service_name,
            description="aws ecs update-service --force-new-deployment after filling the key",
        )
        CfnOutput(self, "DashboardName", value=self.observability.dashboard.dashboard_name)
        CfnOutput(self, "AlarmTopicArn", value=self.observability.topic.topic_arn)
        CfnOutput(
            self,
            "WebhookSecretArn",
            value=self.secrets.recall_webhook.secret_arn,
            description="Put Recall's whsec_ signing secret here (put-secret-value)",
        )


def retention_days(days: int) -> logs.RetentionDays:
    """The CloudWatch Logs enum member for ``days`` (validated by StackSettings)."""
    by_days = {
        1: logs.RetentionDays.ONE_DAY,
        3: logs.RetentionDays.THREE_DAYS,
        5: logs.RetentionDays.FIVE_DAYS,
        7: logs.RetentionDays.ONE_WEEK,
        14: logs.RetentionDays.TWO_WEEKS,
        30: logs.RetentionDays.ONE_MONTH,
        60: logs.RetentionDays.TWO_MONTHS,
        90: logs.RetentionDays.THREE_MONTHS,
        120: logs.RetentionDays.FOUR_MONTHS,
        150: logs.RetentionDays.FIVE_MONTHS,
        180: logs.RetentionDays.SIX_MONTHS,
        365: logs.RetentionDays.ONE_YEAR,
        400: logs.RetentionDays.THIRTEEN_MONTHS,
        545: logs.RetentionDays.EIGHTEEN_MONTHS,
        731: logs.RetentionDays.TWO_YEARS,
        1096: logs.RetentionDays.THREE_YEARS,
        1827: logs.RetentionDays.FIVE_YEARS,
        2192: logs.RetentionDays.SIX_YEARS,
        2557: logs.RetentionDays.SEVEN_YEARS,
    }
    return by_days[days]
