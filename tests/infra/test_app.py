"""The app synthesizes offline: no AWS account, region, lookup or Docker needed."""

from __future__ import annotations

import json

from tests.infra.conftest import Synthesized


def test_stack_is_environment_agnostic_and_needs_no_lookup(synthesized: Synthesized) -> None:
    """`cdk synth` on a machine without credentials asks AWS nothing (no missing context)."""
    manifest = json.loads((synthesized.outdir / "manifest.json").read_text())
    assert "missing" not in manifest
    artifact = manifest["artifacts"][synthesized.stack.stack_name]
    assert artifact["environment"] == "aws://unknown-account/unknown-region"


def test_relay_image_is_staged_not_built(synthesized: Synthesized) -> None:
    """Synth only copies the Docker context; the image is built by `cdk deploy`."""
    assets = json.loads(
        (synthesized.outdir / f"{synthesized.stack.stack_name}.assets.json").read_text()
    )
    (image,) = assets["dockerImages"].values()
    assert (synthesized.outdir / image["source"]["directory"]).is_dir()
    assert "executable" not in image["source"]  # no custom build command either
