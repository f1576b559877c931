"""The README's Quick start and Deploy commands, run as written in a fresh copy of the repository.

A fresh copy is every file git tracks (or would track) and nothing else: no ``.venv``, no
``node_modules``, no ``cdk.out``; the commands must install what they need. AWS is a fake
account (made-up credentials, account 123456789012) whose every endpoint is a closed
loopback port, so the deploy commands run for real up to synthesis and stop at the first
call to AWS. ``make test`` itself is not run again: this test is part of it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, TIMEOUT, free_port

FAKE_ACCOUNT = "123456789012"
FAKE_REGION = "us-east-1"
#: Installing the environment from scratch dominates: uv (all extras) and npm.
INSTALL_TIMEOUT = 60 * TIMEOUT


def readme_commands(section: str) -> list[str]:
    """The shell commands in the ``sh`` blocks of one ``## section`` of the README."""
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, f"README has no '## {section}' section"
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", match.group(1), re.S):
        for line in block.splitlines():
            command = line.split("  #", 1)[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def fresh_copy(into: Path) -> Path:
    """The repository's files as a fresh clone has them (tracked and not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / os.fsdecode(name)
        if not source.is_file():
            continue  # deleted in the work tree, not yet committed
        target = into / os.fsdecode(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(source, target)
        except FileNotFoundError:
            continue  # removed since listed: a test on another pytest worker made it
    return into


def user_env(home_state: Path) -> dict[str, str]:
    """A user's shell: no activated venv, no AWS of ours, a fake account that answers nothing."""
    venv_bin = str(Path(sys.executable).parent)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "CDK_", "VIRTUAL_ENV", "PYTEST_", "RELAY_", "RECALL_"))
        and k not in {"TABLE_NAME", "VOICEBOT_STACK", "OPENAI_API_KEY", "PYTHONPATH"}
    }
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    closed = f"http://127.0.0.1:{free_port()}"
    env.update(
        AWS_ACCESS_KEY_ID="AKIAIOSFODNN7EXAMPLE",
        AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        AWS_REGION=FAKE_REGION,
        AWS_DEFAULT_REGION=FAKE_REGION,
        CDK_DEFAULT_ACCOUNT=FAKE_ACCOUNT,
        CDK_DEFAULT_REGION=FAKE_REGION,
        AWS_ENDPOINT_URL=closed,  # every AWS service: nothing listens there
        AWS_EC2_METADATA_DISABLED="true",
        AWS_MAX_ATTEMPTS="1",
        XDG_STATE_HOME=str(home_state),
    )
    return env


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to copy from")
    return fresh_copy(tmp_path_factory.mktemp("fresh-clone"))


def test_readme_lists_the_commands_this_test_runs():
    """The README's first commands are the ones run below, in the order a user runs them."""
    assert readme_commands("Quick start") == ["make dev", "make test"]
    deploy = readme_commands("Deploy")
    assert deploy[:2] == ["make bootstrap", "make deploy"]


@pytest.mark.timeout(int(INSTALL_TIMEOUT + 12 * TIMEOUT))
def test_quick_start_make_dev_from_a_fresh_clone(clone: Path, tmp_path: Path):
    """`make dev` installs what it needs, prints the agent page, and Ctrl-C stops it cleanly."""
    env = user_env(tmp_path / "state")
    # The README's command as written; the ports come from the environment (make variables)
    # so this run cannot collide with a developer's own `make dev`.
    ports = [str(free_port()) for _ in range(3)]
    env["DEV_ARGS"] = (
        f"--relay-port {ports[0]} --webhook-port {ports[1]} --dynamodb-port {ports[2]}"
    )
    proc = subprocess.Popen(
        ["bash", "-c", "make dev"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # Ctrl-C reaches make and voicebot, as in a terminal
    )
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + INSTALL_TIMEOUT
    try:
        while not any(line.startswith("  voicebot webhook send-sample") for line in seen[-1:]):
            line = proc.stdout.readline()
            assert line, "make dev ended before its banner:\n" + "".join(seen[-30:])
            seen.append(line)
            assert time.monotonic() < deadline, "no banner in time:\n" + "".join(seen[-30:])
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
        rest, _ = proc.communicate(timeout=3 * TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
    output = "".join(seen) + rest
    assert f"agent page:      http://127.0.0.1:{ports[0]}/#token=" in output
    assert "stopped" in rest
    assert "Traceback" not in output
    # Our packaging causes no setuptools warning. `make dev` installs with uv, which shows a
    # build's output only when it fails, so the package is built again here, output shown.
    build = subprocess.run(
        [str(clone / ".venv" / "bin" / "uv"), "build", "--wheel", "--out-dir", str(tmp_path)],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=6 * TIMEOUT,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    assert "running build_py" in build.stdout + build.stderr  # the backend's output is here
    for warning in ("Package would be ignored", "BuildBackendWarning", "Please be careful with"):
        assert warning not in output + build.stdout + build.stderr


@pytest.mark.timeout(int(INSTALL_TIMEOUT + 12 * TIMEOUT))
def test_deploy_commands_run_up_to_aws(clone: Path, tmp_path: Path):
    """`make bootstrap` and `make deploy` synthesize the app from a fresh clone (no venv
    activated, no Docker), then fail only where they must reach the (fake) AWS account."""
    env = user_env(tmp_path / "state")
    for command in ("make bootstrap", "make deploy"):
        shutil.rmtree(clone / "cdk.out", ignore_errors=True)
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=INSTALL_TIMEOUT,
        )
        output = result.stdout + result.stderr
        print(f"$ {command}\n{output[-3000:]}")  # shown with -s, and on failure
        assert result.returncode != 0, "a fake account cannot be deployed to"
        assert "Traceback" not in output
        assert "No module named" not in output
        # cdk ran the app (cdk.json's runner found the venv) and synthesized it, then stopped
        # at the first thing only AWS can answer: which account the credentials belong to.
        assert (clone / "cdk.out" / "RecallVoiceAgent.template.json").is_file()
        if command == "make deploy" and "daemon does not answer" in output:
            # A Docker client without its daemon (this machine): the preflight stops the
            # deploy before any AWS call, saying what to fix.
            continue
        assert "Unable to resolve AWS account" in output
        if command == "make deploy":
            # `make synth` ran first, with cdk-nag (in the app) and cfn-lint, and passed.
            assert "cfn-lint cdk.out/" in result.stdout
            assert "cdk deploy RecallVoiceAgent --require-approval broadening" in result.stdout

    # A bare `npx cdk`, as the README allows, with no venv activated: the same app, offline.
    shutil.rmtree(clone / "cdk.out", ignore_errors=True)
    bare = subprocess.run(
        ["npx", "cdk", "synth", "--quiet"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=12 * TIMEOUT,
    )
    assert bare.returncode == 0, bare.stderr[-3000:]
    assert (clone / "cdk.out" / "RecallVoiceAgent.template.json").is_file()


def test_bare_cdk_without_the_venv_says_how_to_get_it(tmp_path: Path):
    """cdk.json's app runner, in a checkout with no venv, names the command that makes one."""
    runner = tmp_path / "scripts" / "cdk-app"
    runner.parent.mkdir()
    shutil.copy2(ROOT / "scripts" / "cdk-app", runner)
    env = user_env(tmp_path / "state")
    if (
        subprocess.run(["python3", "-c", "import aws_cdk"], env=env, capture_output=True).returncode
        == 0
    ):
        pytest.skip("this machine's python3 has aws-cdk-lib: the runner would use it")
    result = subprocess.run(
        ["scripts/cdk-app"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: the CDK app needs the project's Python environment")
    assert "make .venv/bin/activate" in result.stderr
