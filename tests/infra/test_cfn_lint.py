"""cfn-lint accepts the synthesized templates (default and custom-domain variants)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from infra.app import PROJECT_ROOT
from tests.infra.conftest import Synthesized


def test_cfn_lint_finds_no_error_or_warning(synthesized: Synthesized, custom: Synthesized) -> None:
    """CloudFormation would accept both templates: cfn-lint exits 0 (W3005 off: .cfnlintrc)."""
    templates = [str(t) for s in (synthesized, custom) for t in s.outdir.glob("*.template.json")]
    assert len(templates) == 2
    result = subprocess.run(  # one process: cfn-lint's start-up dominates its run time
        [str(Path(sys.executable).with_name("cfn-lint")), *templates],
        cwd=PROJECT_ROOT,  # picks up the repository's .cfnlintrc
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
