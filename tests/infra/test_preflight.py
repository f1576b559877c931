"""The deploy preflight says, before any build starts, whether this host can build the image."""

from __future__ import annotations

import platform
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from infra.app import PROJECT_ROOT
from infra.preflight import Host, problems, target_architecture

X86 = Host("Linux", "x86_64", "/usr/bin/docker", True, frozenset())

CASES = [
    (X86, "x86_64", None),
    (X86, "arm64", "tonistiigi/binfmt --install arm64"),
    (Host("Linux", "x86_64", "/usr/bin/docker", True, frozenset({"arm64"})), "arm64", None),
    (Host("Linux", "aarch64", "/usr/bin/docker", True, frozenset()), "arm64", None),
    (Host("Linux", "aarch64", "/usr/bin/docker", True, frozenset()), "x86_64", "x86_64"),
    (Host("Darwin", "x86_64", "/usr/local/bin/docker", True, frozenset()), "arm64", None),
    (Host("Linux", "x86_64", None, False, frozenset()), "x86_64", "No container engine"),
    (Host("Linux", "x86_64", "/usr/bin/docker", False, frozenset()), "x86_64", "daemon"),
]


@pytest.mark.parametrize(
    ("host", "target", "expected"),
    CASES,
    ids=[
        "x86-native",
        "x86-to-arm64-no-qemu",
        "x86-to-arm64-qemu",
        "arm-native",
        "arm-to-x86-no-qemu",
        "mac",
        "no-engine",
        "daemon-down",
    ],
)
def test_problems_name_the_fix(host: Host, target: str, expected: str | None) -> None:
    """A host that cannot build gets one message with the command that fixes it."""
    found = problems(host, target)
    if expected is None:
        assert found == []
    else:
        (message,) = found
        assert expected in message


def test_emulation_message_offers_the_other_architecture() -> None:
    """Without QEMU the user may also deploy x86 tasks, built natively, with one flag."""
    (message,) = problems(X86, "arm64")
    assert "exec format error" in message
    assert "-c relay_architecture=x86_64" in message


def test_architecture_comes_from_context_arguments_then_cdk_json(tmp_path: Path) -> None:
    """`make deploy ARGS='-c relay_architecture=...'` beats cdk.json, which beats arm64."""
    cdk_json = tmp_path / "cdk.json"
    assert target_architecture([], cdk_json) == "arm64"
    cdk_json.write_text('{"context": {"relay_architecture": "x86_64"}}')
    assert target_architecture([], cdk_json) == "x86_64"
    args = ["--context", "relay_architecture=arm64"]
    assert target_architecture(args, cdk_json) == "arm64"
    assert target_architecture(["-c", "relay_architecture=x86_64"], tmp_path / "no.json") == (
        "x86_64"
    )


def _fake_engine(tmp_path: Path, *, info_ok: bool, platforms: str) -> Path:
    """A stand-in container CLI: `info` succeeds or not, `buildx ls` prints platforms."""
    engine = tmp_path / "fake-docker"
    engine.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = info ]; then exit {0 if info_ok else 1}; fi\n'
        f'if [ "$1" = buildx ]; then echo "default docker {platforms}"; exit 0; fi\n'
        "exit 1\n"
    )
    engine.chmod(engine.stat().st_mode | stat.S_IXUSR)
    return engine


def _run(engine: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "infra.preflight", "--engine", str(engine)),
            *("--binfmt-dir", str(tmp_path / "binfmt"), "--cdk-json", str(tmp_path / "none")),
            *args,
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or platform.system() != "Linux",
    reason="the fake host below is an x86_64 Linux machine",
)
def test_cli_refuses_an_arm64_build_without_emulation_and_accepts_it_with(tmp_path: Path) -> None:
    """Exit 2 and the fix when buildx lists no arm64; exit 0 once it does (or via binfmt)."""
    bare = _fake_engine(tmp_path, info_ok=True, platforms="linux/amd64, linux/386")
    refused = _run(bare, tmp_path)
    assert refused.returncode == 2
    assert "tonistiigi/binfmt --install arm64" in refused.stderr
    assert _run(bare, tmp_path, "-c", "relay_architecture=x86_64").returncode == 0
    (tmp_path / "binfmt").mkdir()
    (tmp_path / "binfmt" / "qemu-aarch64").write_text("enabled\n")
    assert _run(bare, tmp_path).returncode == 0
    emulating = _fake_engine(tmp_path, info_ok=True, platforms="linux/amd64, linux/arm64")
    (tmp_path / "binfmt" / "qemu-aarch64").unlink()
    accepted = _run(emulating, tmp_path)
    assert accepted.returncode == 0, accepted.stderr
    assert "arm64 relay image" in accepted.stdout


def test_cli_reports_a_stopped_daemon_and_a_bad_architecture(tmp_path: Path) -> None:
    """A daemon that does not answer, or a typo in the architecture, stop the deploy early."""
    stopped = _run(_fake_engine(tmp_path, info_ok=False, platforms=""), tmp_path)
    assert stopped.returncode == 2
    assert "daemon does not answer" in stopped.stderr
    engine = _fake_engine(tmp_path, info_ok=True, platforms="")
    typo = _run(engine, tmp_path, "-c", "relay_architecture=arm65")
    assert typo.returncode == 2
    assert "arm64 or x86_64" in typo.stderr
