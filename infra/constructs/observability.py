"""Observability: one CloudWatch dashboard, and alarms on what a person must act on.

Dashboard rows: the relay (live sessions, session starts, auth failures, upstream errors,
relay message delay p50/p99 from its EMF metrics), the load balancer and tasks (5xx,
target health, CPU and memory), the webhooks (API 2xx/4xx/5xx, Lambda errors and
duration) and the table (throttles).

Alarms, each to one SNS topic (optional e-mail subscription from context):

=========================  ===================================================================
alarm                      what to do
=========================  ===================================================================
RelayUpstreamErrors        calls fail at OpenAI: key unset/revoked, quota, outage
RelayUnhealthyTargets      a task fails /healthz for 5 minutes: look at the relay's logs
RelayTarget5xx             the relay answers HTTP 5xx (not drains: those finish as 1001)
RelayAtCapacity            sessions per task near RELAY_MAX_SESSIONS: raise relay_max_count
WebhookServerErrors        Recall's deliveries get 5xx (DynamoDB, or the secret is unset: 503)
WebhookFunctionErrors      the Lambda crashes or times out
TableThrottles             DynamoDB throttles writes
=========================  ===================================================================

Missing data is "not breaching": an idle deployment is not an incident.
"""

from __future__ import annotations

from typing import Final

from aws_cdk import Duration
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.constructs.relay_service import RelayService

FIVE_MINUTES: Final = Duration.minutes(5)
ONE_MINUTE: Final = Duration.minutes(1)
#: Sessions per task, as a fraction of RELAY_MAX_SESSIONS, at which capacity is short.
CAPACITY_ALARM_FRACTION: Final = 0.9
WIDTH: Final = 8  # three widgets per 24-column row


class Observability(Construct):
    """Dashboard, alarms and the alarm topic. Exposes ``dashboard``, ``topic``, ``alarms``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        relay: RelayService,
        max_sessions_per_task: int,
        http_api: apigwv2.HttpApi,
        function: lambda_.IFunction,
        table: dynamodb.TableV2,
        alarm_email: str | None,
    ) -> None:
        """Build the dashboard and the alarms over the given components."""
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self, "Alarms", display_name="Recall voice agent alarms", enforce_ssl=True
        )
        if alarm_email is not None:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self._relay = relay
        metrics = _Metrics(relay=relay, http_api=http_api, function=function, table=table)
        self.alarms = self._build_alarms(metrics, max_sessions_per_task)
        self.dashboard = self._build_dashboard(metrics)

    # Private

    def _alarm(
        self,
        name: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        description: str,
        periods: int = 1,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            name,
            metric=metric,
            threshold=threshold,
            evaluation_periods=periods,
            datapoints_to_alarm=periods,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        return alarm

    def _build_alarms(self, m: _Metrics, max_sessions: int) -> list[cloudwatch.Alarm]:
        return [
            self._alarm(
                "RelayUpstreamErrors",
                m.relay("UpstreamErrors", "Sum", FIVE_MINUTES),
                threshold=5,
                description="Relay sessions fail at OpenAI (key unset or revoked, quota, outage).",
            ),
            self._alarm(
                "RelayUnhealthyTargets",
                m.target_group.metrics.unhealthy_host_count(period=Duration.minutes(1)),
                threshold=1,
                periods=5,
                description="A relay task has failed its /healthz check for 5 minutes.",
            ),
            self._alarm(
                "RelayTarget5xx",
                m.target_group.metrics.http_code_target(
                    elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=FIVE_MINUTES
                ),
                threshold=10,
                description="The relay answers HTTP 5xx to requests through the load balancer.",
            ),
            self._alarm(
                "RelayAtCapacity",
                m.relay("ActiveSessions", "Average", FIVE_MINUTES),
                threshold=max(1, int(max_sessions * CAPACITY_ALARM_FRACTION)),
                periods=2,
                description=(
                    "Sessions per task are near RELAY_MAX_SESSIONS for 10 minutes: scaling "
                    "is at relay_max_count; raise it or the task size."
                ),
            ),
            self._alarm(
                "WebhookServerErrors",
                m.api_server_errors,
                threshold=5,
                description=(
                    "Recall's webhook deliveries get 5xx (503: the signing secret is unset; "
                    "500: DynamoDB). Recall retries, but fix it within a day."
                ),
            ),
            self._alarm(
                "WebhookFunctionErrors",
                m.function.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
                threshold=1,
                description="The webhook Lambda crashed or timed out.",
            ),
            self._alarm(
                "TableThrottles",
                m.table_throttles,
                threshold=1,
                description="DynamoDB throttled requests on the application table.",
            ),
        ]

    def _build_dashboard(self, m: _Metrics) -> cloudwatch.Dashboard:
        def graph(title: str, *metrics: cloudwatch.IMetric) -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(title=title, left=list(metrics), width=WIDTH)

        dashboard = cloudwatch.Dashboard(self, "Dashboard")
        dashboard.add_widgets(
            graph(
                "Live sessions (total, per task)",
                m.relay("ActiveSessions", "Sum").with_(label="total (sum of samples)"),
                m.relay("ActiveSessions", "Average").with_(label="per task"),
            ),
            graph(
                "Session starts / auth failures / upstream errors",
                m.relay("SessionsStarted", "Sum"),
                m.relay("AuthFailures", "Sum"),
                m.relay("UpstreamErrors", "Sum"),
            ),
            graph(
                "Relay message delay (ms)",
                m.relay("RelayDelayMs", "p50"),
                m.relay("RelayDelayMs", "p99"),
            ),
        )
        dashboard.add_widgets(
            graph(
                "Load balancer 5xx",
                m.target_group.metrics.http_code_target(elbv2.HttpCodeTarget.TARGET_5XX_COUNT),
                m.load_balancer.metrics.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT),
            ),
            graph(
                "Relay targets",
                m.target_group.metrics.healthy_host_count(),
                m.target_group.metrics.unhealthy_host_count(),
            ),
            graph(
                "Relay tasks CPU / memory (%)",
                m.service.metric_cpu_utilization(),
                m.service.metric_memory_utilization(),
            ),
        )
        dashboard.add_widgets(
            graph("Webhook answers", *m.api_answers),
            graph(
                "Webhook Lambda errors / duration",
                m.function.metric_errors(statistic="Sum"),
                m.function.metric_duration(statistic="p50"),
                m.function.metric_duration(statistic="p99"),
            ),
            graph("DynamoDB throttled requests", m.table_throttles),
        )
        return dashboard


class _Metrics:
    """The metrics the dashboard and alarms share, built once."""

    def __init__(
        self,
        *,
        relay: RelayService,
        http_api: apigwv2.HttpApi,
        function: lambda_.IFunction,
        table: dynamodb.TableV2,
    ) -> None:
        self._relay = relay
        self.target_group = relay.target_group
        self.load_balancer = relay.load_balancer
        self.service: ecs.FargateService = relay.service
        self.function = function
        count = http_api.metric_count(period=FIVE_MINUTES, statistic="Sum")
        client = http_api.metric_client_error(period=FIVE_MINUTES, statistic="Sum")
        self.api_server_errors = http_api.metric_server_error(period=FIVE_MINUTES, statistic="Sum")
        self.api_answers: list[cloudwatch.IMetric] = [
            cloudwatch.MathExpression(
                expression="count - client - server",
                using_metrics={"count": count, "client": client, "server": self.api_server_errors},
                label="2xx",
                period=FIVE_MINUTES,
            ),
            client.with_(label="4xx"),
            self.api_server_errors.with_(label="5xx"),
        ]
        self.table_throttles = table.metric_throttled_requests_for_operations(
            operations=[
                dynamodb.Operation.PUT_ITEM,
                dynamodb.Operation.UPDATE_ITEM,
                dynamodb.Operation.TRANSACT_WRITE_ITEMS,
                dynamodb.Operation.GET_ITEM,
                dynamodb.Operation.QUERY,
            ],
            period=FIVE_MINUTES,
        )

    def relay(self, name: str, statistic: str, period: Duration = ONE_MINUTE) -> cloudwatch.Metric:
        """A relay EMF metric for this deployment's ``Service`` dimension."""
        return self._relay.relay_metric(name, statistic).with_(period=period)
