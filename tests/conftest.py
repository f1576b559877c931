"""Fixtures shared by every test package: timeouts and the local DynamoDB-compatible server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from storage import schema
from tests.cli.fake_recall import FakeRecall

ROOT = Path(__file__).resolve().parents[1]

#: One unit for every wait in the tests, scaled on slow machines (websockets' ``MS`` idea).
TIMEOUT = 10.0 * float(os.environ.get("TEST_TIMEOUT_FACTOR", "1"))


#: Test folders that run first: the longest units, so neither worker idles at the end.
FIRST: tuple[str, ...] = ("tests/readme", "tests/infra")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Group tests for pytest-xdist (``make pytest`` runs ``-n auto --dist loadgroup``).

    A test file is one group, so its module-scoped fixtures (a fresh clone, a browser) are
    made once, on one worker; the infra tests are one group, so one worker synthesizes the
    app (a session fixture) instead of each. The longest groups are handed out first.
    """

    def group(item: pytest.Item) -> str:
        path = item.path.relative_to(ROOT).as_posix()
        return "tests/infra" if path.startswith("tests/infra/") else path

    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
    items.sort(key=lambda item: not group(item).startswith(FIRST))  # stable: keeps file order


def free_port() -> int:
    """A loopback port that is free now (for servers that cannot report the one they bound)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, deadline: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll until something accepts on 127.0.0.1:port, or fail at the deadline."""
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {port}") from None
            time.sleep(0.05)


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within TIMEOUT."""
    proc.terminate()
    try:
        proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def create_table(endpoint: str, name: str) -> None:
    """Create the application table from storage.schema on a local server."""
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    client.create_table(**schema.create_table_request(name))
    client.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": schema.TTL_ATTRIBUTE},
    )


@pytest.fixture(scope="session", autouse=True)
def _aws_test_credentials() -> Iterator[None]:
    """Fake credentials and region for boto3, so no test can reach a real account."""
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
    )
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def dynamodb_endpoint() -> Iterator[str]:
    """moto's DynamoDB-compatible server as a separate process on 127.0.0.1."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, time.monotonic() + 3 * TIMEOUT, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


@pytest.fixture
def table_name(dynamodb_endpoint: str, request: pytest.FixtureRequest) -> str:
    """A fresh application table for one test, on the shared local server."""
    name = f"t-{abs(hash(request.node.nodeid)) % 10**10}-{time.monotonic_ns() % 10**6}"
    create_table(dynamodb_endpoint, name)
    return name


@pytest.fixture
def fake_recall() -> Iterator[FakeRecall]:
    """A fake Recall API on 127.0.0.1 (tests/cli/fake_recall.py), serving in a thread and
    recording every request."""
    fake = FakeRecall()
    fake.start()
    try:
        yield fake
    finally:
        fake.close()
