"""The local bundler builds the Lambda package with uv for arm64/cp3.14, without Docker."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.app import PROJECT_ROOT
from infra.bundling import LocalPipBundling, extra_requirements, source_files
from infra.stack import WEBHOOK_EXTRA, WEBHOOK_PACKAGES


@pytest.fixture(scope="module")
def bundler() -> LocalPipBundling:
    return LocalPipBundling(
        project_root=PROJECT_ROOT, extra=WEBHOOK_EXTRA, packages=WEBHOOK_PACKAGES
    )


def test_requirements_are_the_pins_of_the_webhooks_extra(bundler: LocalPipBundling) -> None:
    """The bundle installs exactly what pyproject.toml pins for `webhooks`, nothing copied."""
    pins = extra_requirements(PROJECT_ROOT / "pyproject.toml", "webhooks")
    assert bundler.requirements == pins
    assert all("==" in pin for pin in pins)
    command = bundler.install_command("/out")
    assert command[-len(pins) :] == pins
    for flag in ("--only-binary=:all:", "aarch64-manylinux2014", "3.14", "--no-compile-bytecode"):
        assert flag in command


def test_source_hash_follows_sources_not_output(bundler: LocalPipBundling, tmp_path: Path) -> None:
    """The asset is re-uploaded when a source or a pin changes, and only then."""
    first = bundler.source_hash()
    assert bundler.source_hash() == first
    (tmp_path / "pyproject.toml").write_text(
        (PROJECT_ROOT / "pyproject.toml").read_text().replace("mangum==", "mangum>=")
    )
    for package in WEBHOOK_PACKAGES:
        (tmp_path / package).symlink_to(PROJECT_ROOT / package)
    changed = LocalPipBundling(
        project_root=tmp_path, extra=WEBHOOK_EXTRA, packages=WEBHOOK_PACKAGES
    )
    assert changed.source_hash() != first


def test_source_files_skip_tests_caches_and_bytecode(tmp_path: Path) -> None:
    """Tests, __pycache__ and .pyc files never reach the Lambda package."""
    package = tmp_path / "pkg"
    (package / "tests").mkdir(parents=True)
    (package / "__pycache__").mkdir()
    (package / "mod.py").write_text("x = 1\n")
    (package / "tests" / "test_mod.py").write_text("")
    (package / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"")
    (package / "stale.pyc").write_bytes(b"")
    assert [p.name for p in source_files(tmp_path, "pkg")] == ["mod.py"]


@pytest.mark.timeout(300)
def test_bundle_holds_arm64_wheels_and_our_sources(
    bundler: LocalPipBundling, tmp_path: Path
) -> None:
    """A real run installs aarch64 wheels for CPython 3.14 and copies functions/ and storage/."""
    out = tmp_path / "bundle"
    bundler.bundle_into(out)
    assert (out / "functions" / "webhooks" / "__init__.py").is_file()
    assert (out / "storage" / "schema.py").is_file()
    assert (out / "fastapi").is_dir()
    assert (out / "mangum").is_dir()
    native = list((out / "pydantic_core").glob("*.so"))
    assert native
    assert all("cpython-314-aarch64" in so.name for so in native)
    assert not (out / "bin").exists()
    assert not (out / ".lock").exists()
    assert not list(out.rglob("__pycache__"))
    assert not (out / "functions" / "webhooks" / "tests").exists()


@pytest.mark.timeout(300)
def test_nested_package_lands_at_the_top_of_the_bundle(tmp_path: Path) -> None:
    """relay_container/relay is copied as relay/, so the control API imports relay.tokens."""
    root = tmp_path / "project"
    (root / "outer" / "inner").mkdir(parents=True)
    (root / "outer" / "inner" / "__init__.py").write_text("")
    (root / "outer" / "inner" / "tokens.py").write_text("X = 1\n")
    (root / "top").mkdir()
    (root / "top" / "__init__.py").write_text("")
    # One small pure-Python pin (the bundler installs at least one requirement).
    (root / "pyproject.toml").write_text(
        '[project.optional-dependencies]\nnone = ["PyJWT==2.15.1"]\n'
    )
    # One file (the operator's agent.yaml) lands beside the nested package, where
    # cli.persona.IMAGE_AGENT_CONFIG (relay's parent's parent) looks for it.
    (root / "outer" / "agent.yaml").write_text("voice: cedar\n")
    nested = LocalPipBundling(
        project_root=root, extra="none", packages=("top", "outer/inner", "outer/agent.yaml")
    )
    out = tmp_path / "bundle"
    nested.bundle_into(out)
    assert (out / "inner" / "tokens.py").read_text() == "X = 1\n"
    assert (out / "top" / "__init__.py").is_file()
    assert (out / "inner").resolve().parent / "agent.yaml" == (out / "agent.yaml").resolve()
    assert (out / "agent.yaml").read_text() == "voice: cedar\n"
    assert not (out / "outer").exists()


def test_the_control_api_bundles_the_operators_agent_config() -> None:
    """The persona rules the API checks are the relay image's agent.yaml."""
    from infra.stack import CONTROL_API_PACKAGES

    assert "relay_container/agent.yaml" in CONTROL_API_PACKAGES
    assert "relay_container/relay" in CONTROL_API_PACKAGES
