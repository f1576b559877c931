"""``python -m infra.preflight``: can this host build the relay image ``cdk deploy`` needs?

``make deploy`` runs it before ``cdk deploy``. Synthesis needs no container engine, but
publishing the relay image does, and building an arm64 image (the default, Graviton) on
an x86 host needs emulation (QEMU registered with binfmt_misc, which Docker Desktop
ships and a plain Linux Docker engine lacks): without it the build dies half-way with
"exec format error". This checks first and says what to do; it changes nothing.

The architecture is read from ``-c relay_architecture=...`` in the arguments (what
``make deploy ARGS=...`` passes on) or ``cdk.json``, as the app itself would read it.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

#: ``platform.machine()`` spellings → the image architecture they run natively.
NATIVE: Final = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
#: binfmt_misc entries that let a Linux kernel run the other architecture's binaries.
BINFMT: Final = {"arm64": "qemu-aarch64", "x86_64": "qemu-x86_64"}
BUILDX_PLATFORM: Final = {"arm64": "linux/arm64", "x86_64": "linux/amd64"}
BINFMT_DIR: Final = Path("/proc/sys/fs/binfmt_misc")


@dataclass(frozen=True, slots=True)
class Host:
    """What the preflight learned about the build host."""

    system: str  # platform.system(): Linux, Darwin, Windows
    machine: str  # platform.machine()
    engine: str | None  # path of the container engine CLI, None if not found
    engine_running: bool
    emulated: frozenset[str]  # architectures this host can run besides its own


def problems(host: Host, target: str) -> list[str]:
    """Why ``host`` cannot build the relay image for ``target`` (empty: it can)."""
    if host.engine is None:
        return [
            "No container engine found: install Docker (or Finch/Podman and set "
            "CDK_DOCKER=finch|podman). `cdk synth` works without one; `cdk deploy` builds "
            "the relay image with it."
        ]
    if not host.engine_running:
        return [f"{host.engine} is installed but its daemon does not answer: start it."]
    native = NATIVE.get(host.machine.lower())
    if native == target or target in host.emulated or host.system == "Darwin":
        return []  # Docker Desktop and Finch on macOS emulate the other architecture
    other = "x86_64" if target == "arm64" else "arm64"
    return [
        f"The relay image is {target} and this {host.machine} host cannot run {target} "
        f"binaries (no {BINFMT[target]} in {BINFMT_DIR}); the build would fail with "
        '"exec format error". Either register QEMU emulation once: '
        f"`docker run --privileged --rm tonistiigi/binfmt --install {target}`, "
        f"or deploy {other} tasks built natively here: "
        f"`make deploy ARGS='-c relay_architecture={other}'`."
    ]


def inspect_host(engine_name: str, binfmt_dir: Path = BINFMT_DIR) -> Host:
    """Look at this machine: architecture, engine, daemon, emulators."""
    engine = shutil.which(engine_name)
    running = engine is not None and _succeeds([engine, "info"])
    emulated = {arch for arch, entry in BINFMT.items() if (binfmt_dir / entry).exists()}
    if engine is not None and running:
        listing = _output([engine, "buildx", "ls"])
        emulated |= {arch for arch, name in BUILDX_PLATFORM.items() if name in listing}
    return Host(
        system=platform.system(),
        machine=platform.machine(),
        engine=engine,
        engine_running=running,
        emulated=frozenset(emulated),
    )


def target_architecture(args: Sequence[str], cdk_json: Path) -> str:
    """``relay_architecture`` from ``-c``/``--context`` arguments, else cdk.json, else arm64."""
    for i, arg in enumerate(args):
        value = None
        if arg in ("-c", "--context") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--context="):
            value = arg.removeprefix("--context=")
        if value is not None and value.startswith("relay_architecture="):
            return value.removeprefix("relay_architecture=")
    if cdk_json.is_file():
        context = json.loads(cdk_json.read_text()).get("context", {})
        return str(context.get("relay_architecture", "arm64"))
    return "arm64"


def main(argv: Sequence[str] | None = None) -> int:
    """Print what blocks the image build (exit 2) or one line that all is well (exit 0)."""
    parser = argparse.ArgumentParser(prog="python -m infra.preflight", description=__doc__)
    parser.add_argument("--engine", default="docker", help="container CLI (CDK_DOCKER)")
    parser.add_argument("--cdk-json", type=Path, default=Path("cdk.json"))
    parser.add_argument("--binfmt-dir", type=Path, default=BINFMT_DIR, help=argparse.SUPPRESS)
    known, rest = parser.parse_known_args(argv)
    target = target_architecture(rest, known.cdk_json)
    if target not in BINFMT:
        sys.stderr.write(f"relay_architecture must be arm64 or x86_64, got {target!r}\n")
        return 2
    found = problems(inspect_host(known.engine, known.binfmt_dir), target)
    if found:
        sys.stderr.write("Cannot build the relay image:\n  " + "\n  ".join(found) + "\n")
        return 2
    sys.stdout.write(f"preflight: this host can build the {target} relay image\n")
    return 0


def _succeeds(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _output(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout if result.returncode == 0 else ""


if __name__ == "__main__":
    raise SystemExit(main())
