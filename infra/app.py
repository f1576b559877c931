"""Entry point of the CDK app (``cdk.json``: ``python -m infra.app``).

Reads settings from context, builds the stack, registers cdk-nag's AwsSolutions checks
(an unacknowledged error fails the synth) and the acknowledgments of ``infra/nag.py``,
and the checkov skips of ``infra/checkov.py``, then synthesizes. Nothing else happens here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from infra.checkov import skip_checkov_findings
from infra.nag import acknowledge_findings
from infra.settings import SettingsError, StackSettings
from infra.stack import VoiceAgentStack

PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent


def build(app: App, *, project_root: Path = PROJECT_ROOT) -> VoiceAgentStack:
    """Add the stack, cdk-nag and its acknowledgments to ``app``; return the stack."""
    settings = StackSettings.from_context(app.node)
    stack = VoiceAgentStack(app, settings.stack_name, settings=settings, project_root=project_root)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    acknowledge_findings(stack)
    skip_checkov_findings(stack)
    return stack


def main() -> None:
    """Synthesize the app into ``cdk.out``; bad context exits 2 with the list of problems."""
    app = App()
    try:
        build(app)
    except SettingsError as exc:
        sys.stderr.write(f"{exc}\n")
        raise SystemExit(2) from None
    app.synth()


if __name__ == "__main__":
    main()
