"""Local, Docker-free bundling of the webhook Lambda: pinned wheels plus our sources.

``cdk synth`` must run on a machine with no Docker daemon, so the Lambda asset is built by
:class:`LocalPipBundling` (a jsii ``ILocalBundling``) instead of a bundling container:

1. ``uv pip install --python-platform aarch64-manylinux2014 --python-version 3.14
   --only-binary=:all: --target <out>`` of one extra's pins, read from ``pyproject.toml``
   with :mod:`tomllib` (the one list of pins; never copied). A package without a matching
   wheel fails the synth loudly instead of shipping a host-built binary. uv (pinned in the
   ``infra`` extra) rather than pip: it keeps a wheel cache, so a synth after the first
   reuses the downloaded wheels (pip took ~13 s per bundle here, uv ~3 s).
2. Copy our source packages (``functions/``, ``storage/``) in, without tests, caches or
   bytecode; a nested one (``relay_container/relay``) is copied to the top (``relay/``).

The asset hash is computed from the *sources* (the pins plus every file copied in), not
from the output, so an unchanged function is not re-uploaded: the output differs run to
run (timestamps, RECORD files). Transitive dependencies are not pinned by the extra; a
fresh resolve may pick newer ones without changing the hash until a source changes.

This module does not build the relay image (``ContainerImage.from_asset`` only stages its
context at synth; Docker builds it at deploy time).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

#: The Lambda runtime's Python and CPU; wheels must match them, not the synth machine.
LAMBDA_PYTHON_VERSION: Final = "3.14"
#: uv's name for the manylinux2014 aarch64 wheel tag (pip's ``manylinux2014_aarch64``).
LAMBDA_PLATFORM: Final = "aarch64-manylinux2014"

#: What never goes into an asset: caches, bytecode, tests, editor and OS litter.
_SKIP_NAMES: Final = frozenset(
    {"__pycache__", "tests", ".pytest_cache", ".mypy_cache", ".DS_Store"}
)
_SKIP_SUFFIXES: Final = (".pyc", ".pyo")


class BundlingError(RuntimeError):
    """The Lambda bundle could not be built (the install failed, or a source is missing)."""


def extra_requirements(pyproject: Path, extra: str) -> list[str]:
    """The pinned requirements of ``[project.optional-dependencies].<extra>``."""
    with pyproject.open("rb") as handle:
        data: dict[str, Any] = tomllib.load(handle)
    try:
        requirements = data["project"]["optional-dependencies"][extra]
    except KeyError as exc:
        raise BundlingError(f"{pyproject} has no optional-dependencies extra {extra!r}") from exc
    if not isinstance(requirements, list) or not all(isinstance(r, str) for r in requirements):
        raise BundlingError(f"extra {extra!r} in {pyproject} is not a list of strings")
    return list(requirements)


def source_files(root: Path, package: str) -> Iterator[Path]:
    """Files of ``root/package`` that belong in an asset, in a stable order.

    ``package`` may also name one file (the operator's ``relay_container/agent.yaml``,
    which lands at the asset's top, beside the ``relay`` package that looks for it there).
    """
    base = root / package
    if base.is_file():
        yield base
        return
    if not base.is_dir():
        raise BundlingError(f"source package {base} does not exist")
    for path in sorted(base.rglob("*")):
        relative = path.relative_to(root)
        if any(part in _SKIP_NAMES for part in relative.parts):
            continue
        if path.is_file() and not path.name.endswith(_SKIP_SUFFIXES):
            yield path


@jsii.implements(ILocalBundling)
class LocalPipBundling:
    """Builds a Lambda asset directory with uv and a copy, on the synth machine."""

    def __init__(
        self,
        *,
        project_root: Path,
        extra: str,
        packages: Sequence[str],
        python_version: str = LAMBDA_PYTHON_VERSION,
        platform: str = LAMBDA_PLATFORM,
    ) -> None:
        """Bundle ``extra``'s pins and the source ``packages`` found under ``project_root``."""
        self.project_root = project_root
        self.extra = extra
        self.packages = tuple(packages)
        self.python_version = python_version
        self.platform = platform

    @property
    def requirements(self) -> list[str]:
        """The pins this bundle installs (read from pyproject.toml each time)."""
        return extra_requirements(self.project_root / "pyproject.toml", self.extra)

    def source_hash(self) -> str:
        """SHA-256 over the pins, the target platform and every source file copied in."""
        digest = hashlib.sha256()
        for line in (self.python_version, self.platform, *self.requirements):
            digest.update(line.encode() + b"\n")
        for package in self.packages:
            for path in source_files(self.project_root, package):
                digest.update(path.relative_to(self.project_root).as_posix().encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
        return digest.hexdigest()

    def install_command(self, output_dir: str) -> list[str]:
        """The uv invocation (CPython wheels for the Lambda's Python and CPU only, no bytecode)."""
        return [
            sys.executable, "-m", "uv", "pip", "install",
            "--quiet", "--no-compile-bytecode",
            "--python", sys.executable,
            "--python-platform", self.platform,
            "--only-binary=:all:",
            "--python-version", self.python_version,
            "--target", output_dir,
            *self.requirements,
        ]  # fmt: skip

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        """Fill ``output_dir``; True tells CDK that no Docker bundling is needed."""
        del options  # the Docker-shaped options do not apply to a local install
        self.bundle_into(Path(output_dir))
        return True

    def bundle_into(self, output_dir: Path) -> None:
        """Install the wheels, then copy the sources; raise :class:`BundlingError` on failure."""
        output_dir.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            self.install_command(str(output_dir)),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BundlingError(
                f"uv could not install the {self.extra!r} extra for "
                f"{self.platform}/cp{self.python_version}:\n{result.stderr.strip()}"
            )
        # Console scripts carry the synth machine's interpreter path; the Lambda has no use.
        shutil.rmtree(output_dir / "bin", ignore_errors=True)
        (output_dir / ".lock").unlink(missing_ok=True)  # uv's lock on the target directory
        for package in self.packages:
            # A nested package ("relay_container/relay") lands at the top ("relay/").
            parent = (self.project_root / package).parent
            for path in source_files(self.project_root, package):
                target = output_dir / path.relative_to(parent)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)


def lambda_code(bundler: LocalPipBundling, *, source_dir: str) -> lambda_.Code:
    """A Lambda asset built by ``bundler``, hashed from its sources.

    ``source_dir`` is what CDK stages when bundling is skipped (tests set context
    ``aws:cdk:bundling-stacks`` to ``[]``); keep it small, it is copied as is.
    """
    return lambda_.Code.from_asset(
        source_dir,
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=bundler.source_hash(),
        bundling=BundlingOptions(
            # Never pulled: try_bundle always succeeds or raises. CDK requires an image.
            image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.14"),
            # jsii calls back with the options struct positionally, not as the keywords
            # its Python stub declares; the class matches what actually arrives.
            local=bundler,  # type: ignore[arg-type]
        ),
    )
