"""cdk-nag AwsSolutions: the app synthesizes with no unacknowledged error, each ack reasoned."""

from __future__ import annotations

import pytest
from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from infra.app import PROJECT_ROOT
from infra.settings import StackSettings
from infra.stack import VoiceAgentStack
from tests.infra.conftest import Synthesized


def test_synth_passes_awssolutions_checks(synthesized: Synthesized) -> None:
    """`cdk synth` succeeds: the assembly's validation report lists no violation."""
    report = synthesized.validation_report()
    violations = [v for r in report["pluginReports"] for v in r.get("violations", [])]
    assert violations == []


def test_every_acknowledgment_names_a_rule_and_gives_a_reason(synthesized: Synthesized) -> None:
    """A reviewer finds a rule id and a real sentence on every suppression."""
    acks = _acknowledgments(synthesized)
    assert acks, "expected acknowledgments in the construct tree"
    for rule, reason in acks:
        if rule.startswith("CloudFormation-Validate::"):
            continue  # added by aws-cdk-lib itself to its own constructs
        assert rule.startswith(("AwsSolutions::AwsSolutions-", "Annotation::@aws-cdk/")), rule
        assert len(reason.split()) >= 12, f"{rule}: reason too thin: {reason!r}"


def test_an_unacknowledged_finding_fails_the_synth(tmp_path) -> None:
    """Without infra/nag.py's acknowledgments, `cdk synth` fails and names each rule."""
    app = App(outdir=str(tmp_path), context={"aws:cdk:bundling-stacks": []})
    VoiceAgentStack(app, "Bare", settings=StackSettings(), project_root=PROJECT_ROOT)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(RuntimeError, match="ValidationFailed") as failure:
        app.synth()
    for rule in (
        "AwsSolutions-APIG4",
        "AwsSolutions-SMG4",
        "AwsSolutions-ECS2",
        "AwsSolutions-IAM5",
        "AwsSolutions-CFR4",
    ):
        assert rule in str(failure.value)


def _acknowledgments(synthesized: Synthesized) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for construct in synthesized.stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                found.extend((str(rule), str(reason)) for rule, reason in entry.data.items())
    return found
