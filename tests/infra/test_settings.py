"""StackSettings from CDK context: typed values, every problem reported at once."""

from __future__ import annotations

from typing import Any

import pytest

from infra.settings import CustomDomain, RelaySettings, SettingsError, StackSettings


class FakeNode:
    """A context source like ``App().node``: a plain mapping of context values."""

    def __init__(self, context: dict[str, Any]) -> None:
        self.context = context

    def try_get_context(self, key: str) -> Any:
        return self.context.get(key)


def test_no_context_gives_the_documented_defaults() -> None:
    """A first `cdk deploy` without any -c gets the defaults of the dataclass."""
    assert StackSettings.from_context(FakeNode({})) == StackSettings()


def test_cli_strings_and_json_values_both_parse() -> None:
    """`-c key=value` strings and cdk.json JSON values give the same typed settings."""
    from_cli = StackSettings.from_context(
        FakeNode(
            {
                "retain_data": "false",
                "event_retention_days": "7",
                "relay_allowed_models": "gpt-realtime-mini, gpt-realtime-2.1",
                "alarm_email": "ops@example.com",
            }
        )
    )
    from_json = StackSettings.from_context(
        FakeNode(
            {
                "retain_data": False,
                "event_retention_days": 7,
                "relay_allowed_models": ["gpt-realtime-mini", "gpt-realtime-2.1"],
                "alarm_email": "ops@example.com",
            }
        )
    )
    assert from_cli == from_json
    assert from_cli.retain_data is False
    assert from_cli.event_retention_days == 7
    assert from_cli.relay.models == ("gpt-realtime-2.1", "gpt-realtime-mini")


def test_custom_domain_is_read_from_four_keys() -> None:
    """A domain in a Route 53 zone becomes one CustomDomain value."""
    settings = StackSettings.from_context(
        FakeNode(
            {
                "domain_name": "Voice.Example.com.",
                "hosted_zone_id": "Z123",
                "hosted_zone_name": "example.com",
            }
        )
    )
    assert settings.custom_domain == CustomDomain(
        domain_name="voice.example.com", hosted_zone_id="Z123", hosted_zone_name="example.com"
    )


BAD_CONTEXT = [
    ({"event_retention_days": "a week"}, "event_retention_days"),
    ({"event_retention_days": 0}, "event_retention_days"),
    ({"retain_data": "maybe"}, "retain_data"),
    ({"log_retention_days": 10}, "log_retention_days"),
    ({"relay_cpu": 512, "relay_memory_mib": 512}, "relay_cpu/relay_memory_mib"),
    ({"relay_min_count": 3, "relay_max_count": 2}, "relay counts"),
    ({"relay_desired_count": 2}, "relay_desired_count: no longer a setting"),
    ({"cloudfront_prefix_list_id": "pl-12345678"}, "cloudfront_prefix_list_id: no longer"),
    ({"relay_architecture": "riscv64"}, "relay_architecture"),
    ({"relay_internal_port": 8080}, "relay_internal_port"),
    ({"relay_internal_port": 80}, "relay_internal_port"),
    ({"relay_max_session_seconds": 8 * 86400}, "relay_max_session_seconds"),
    ({"availability_zones": "us-east-1a"}, "availability_zones"),
    (
        {"retain_data": "false", "table_deletion_protection": "true"},
        "cdk destroy. would fail",
    ),
    ({"relay_drain_seconds": 115}, "relay_drain_seconds"),
    ({"relay_deregistration_delay_seconds": 7200}, "relay_deregistration_delay_seconds"),
    ({"relay_idle_timeout_seconds": 30}, "relay_idle_timeout_seconds"),
    ({"relay_sessions_per_task_target": 50}, "relay_sessions_per_task_target"),
    ({"webhook_timeout_seconds": 20}, "webhook_timeout_seconds"),
    ({"alarm_email": "not-an-address"}, "alarm_email"),
    ({"hosted_zone_id": "Z1"}, "only meaningful with domain_name"),
    ({"domain_name": "voice.example.com"}, "needs hosted_zone_id"),
    (
        {
            "domain_name": "voice.other.org",
            "hosted_zone_id": "Z1",
            "hosted_zone_name": "example.com",
        },
        "not inside hosted zone",
    ),
    (
        {
            "domain_name": "v.example.com",
            "hosted_zone_id": "Z1",
            "hosted_zone_name": "example.com",
            "certificate_arn": "arn:aws:acm:eu-west-1:123456789012:certificate/abc",
        },
        "us-east-1",
    ),
]


@pytest.mark.parametrize(("context", "message"), BAD_CONTEXT, ids=[m for _, m in BAD_CONTEXT])
def test_bad_context_is_refused_before_anything_is_built(
    context: dict[str, Any], message: str
) -> None:
    """A wrong -c value stops the synth with a message naming the key."""
    with pytest.raises(SettingsError, match=message):
        StackSettings.from_context(FakeNode(context))


def test_all_problems_are_reported_together() -> None:
    """The user fixes every bad value in one round, not one per synth."""
    with pytest.raises(SettingsError) as failure:
        StackSettings.from_context(FakeNode({"retain_data": "maybe", "relay_max_count": "x"}))
    assert "retain_data" in str(failure.value)
    assert "relay_max_count" in str(failure.value)


def test_relay_settings_are_one_nested_object_read_from_relay_keys() -> None:
    """`-c relay_max_sessions=60` lands in settings.relay, the object the relay construct takes."""
    settings = StackSettings.from_context(
        FakeNode({"relay_max_sessions": "60", "relay_architecture": "x86_64"})
    )
    assert settings.relay == RelaySettings(max_sessions=60, architecture="x86_64")
    assert settings.relay.stickiness_seconds == settings.relay.max_session_seconds


def test_unretained_data_drops_deletion_protection_so_cdk_destroy_works() -> None:
    """`-c retain_data=false` alone gives a table `cdk destroy` can delete."""
    assert StackSettings.from_context(FakeNode({})).deletion_protection is True
    settings = StackSettings.from_context(FakeNode({"retain_data": "false"}))
    assert settings.deletion_protection is False
    kept = StackSettings.from_context(FakeNode({"table_deletion_protection": "false"}))
    assert (kept.retain_data, kept.deletion_protection) == (True, False)
