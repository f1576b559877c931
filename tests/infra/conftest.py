"""Synthesized stacks for the infra tests: each app is built and synthesized once per session.

Bundling is skipped (context ``aws:cdk:bundling-stacks: []``) so no test pip-downloads the
Lambda's wheels; ``test_bundling.py`` runs the real bundler once on its own. cdk-nag runs
as in ``cdk synth``: a fixture's synth raises if any error finding is unacknowledged.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App, CfnElement
from aws_cdk.assertions import Template
from constructs import IConstruct

from infra.app import PROJECT_ROOT, build
from infra.stack import VoiceAgentStack

#: Context of the "everything optional switched on" variant.
CUSTOM_CONTEXT: dict[str, Any] = {
    "stack_name": "VoiceAgentCustom",
    "domain_name": "voice.example.com",
    "hosted_zone_id": "Z0123456789ABCDEFGHIJ",
    "hosted_zone_name": "example.com",
    "alarm_email": "ops@example.com",
    "retain_data": "false",
    "webhook_snap_start": "false",
    "relay_deregistration_delay_seconds": "600",
    "relay_architecture": "x86_64",
    "relay_cpu": 1024,
    "relay_memory_mib": 2048,
    "relay_max_count": 6,
    "relay_allowed_models": "gpt-realtime-2.1,gpt-realtime-mini",
    "relay_container_insights": "false",
    "minutes_webhook_url": "https://hooks.example.com/minutes",
    "minutes_to_chat": "true",
}


@dataclass(frozen=True)
class Synthesized:
    """One synthesized app: its stack, the assertions template and the assembly directory."""

    stack: VoiceAgentStack
    template: Template
    outdir: Path

    @property
    def resources(self) -> dict[str, Any]:
        """The template's resources (logical id → resource)."""
        return dict(self.template.to_json()["Resources"])

    def of_type(self, resource_type: str) -> dict[str, Any]:
        """Resources of one CloudFormation type."""
        return dict(self.template.find_resources(resource_type))

    def only(self, resource_type: str) -> dict[str, Any]:
        """The one resource of ``resource_type`` (fails if there are several)."""
        found = self.of_type(resource_type)
        assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
        return dict(next(iter(found.values())))

    def resource_of(self, construct: IConstruct) -> dict[str, Any]:
        """The template resource of ``construct`` (its default child), by its logical id."""
        element = construct.node.default_child
        assert isinstance(element, CfnElement), construct.node.path
        logical_id = self.stack.resolve(self.stack.get_logical_id(element))
        return dict(self.resources[logical_id])

    def validation_report(self) -> dict[str, Any]:
        """cdk-nag's report as written into the assembly."""
        return dict(json.loads((self.outdir / "validation-report.json").read_text()))


#: cdk.json's context (feature flags): `cdk synth` applies them, so the tests do too.
CDK_JSON_CONTEXT: dict[str, Any] = json.loads((PROJECT_ROOT / "cdk.json").read_text())["context"]


def synthesize(outdir: Path, context: dict[str, Any] | None = None) -> Synthesized:
    """Build the real app (settings, stack, cdk-nag) into ``outdir`` and synthesize it."""
    app = App(
        outdir=str(outdir),
        context={**CDK_JSON_CONTEXT, "aws:cdk:bundling-stacks": [], **(context or {})},
    )
    stack = build(app)
    app.synth()  # raises ValidationFailed on any unacknowledged cdk-nag error
    return Synthesized(stack=stack, template=Template.from_stack(stack), outdir=outdir)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The app with default settings (what a first `cdk deploy` creates)."""
    return synthesize(tmp_path_factory.mktemp("cdk-default"))


@pytest.fixture(scope="session")
def template(synthesized: Synthesized) -> Template:
    """The default stack's template."""
    return synthesized.template


@pytest.fixture(scope="session")
def custom(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The app with a custom domain, alarm e-mail and non-default sizes."""
    return synthesize(tmp_path_factory.mktemp("cdk-custom"), CUSTOM_CONTEXT)
