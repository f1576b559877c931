"""One dashboard and alarms a person must act on, to SNS with an optional e-mail."""

from __future__ import annotations

import json
from typing import Any

from tests.infra.conftest import Synthesized


def _alarms(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in synthesized.of_type("AWS::CloudWatch::Alarm").items()}


def test_alarms_cover_relay_webhooks_and_table_and_notify_the_topic(
    synthesized: Synthesized,
) -> None:
    """Upstream failures, unhealthy tasks, 5xx, capacity, Lambda errors, throttles each page."""
    alarms = _alarms(synthesized)
    names = " ".join(alarms)
    for expected in (
        "RelayUpstreamErrors",
        "RelayUnhealthyTargets",
        "RelayTarget5xx",
        "RelayAtCapacity",
        "WebhookServerErrors",
        "WebhookFunctionErrors",
        "TableThrottles",
    ):
        assert expected in names
    (topic_id,) = synthesized.of_type("AWS::SNS::Topic")
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
        assert alarm["TreatMissingData"] == "notBreaching"


def test_upstream_error_alarm_reads_the_relays_emf_metric(synthesized: Synthesized) -> None:
    """The alarm watches the same namespace and Service dimension the relay writes."""
    (alarm,) = [a for k, a in _alarms(synthesized).items() if "RelayUpstreamErrors" in k]
    assert alarm["Namespace"] == "RecallVoiceAgent/Relay"
    assert alarm["MetricName"] == "UpstreamErrors"
    assert alarm["Dimensions"] == [{"Name": "Service", "Value": "RecallVoiceAgent-relay"}]


def test_email_subscription_only_when_configured(
    synthesized: Synthesized, custom: Synthesized
) -> None:
    """-c alarm_email=... subscribes that address; without it nobody is subscribed."""
    assert synthesized.of_type("AWS::SNS::Subscription") == {}
    (subscription,) = custom.of_type("AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == "ops@example.com"


def test_dashboard_shows_sessions_delay_alb_webhooks_lambda_and_table(
    synthesized: Synthesized,
) -> None:
    """One dashboard holds every graph an operator looks at first."""
    dashboard = synthesized.only("AWS::CloudWatch::Dashboard")
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for fragment in (
        "ActiveSessions",
        "SessionsStarted",
        "AuthFailures",
        "UpstreamErrors",
        "RelayDelayMs",
        "p99",
        "HTTPCode_Target_5XX_Count",
        "HealthyHostCount",
        "UnHealthyHostCount",
        "4xx",
        "5xx",
        "Errors",
        "Duration",
        "ThrottledRequests",
    ):
        assert fragment in body, fragment
