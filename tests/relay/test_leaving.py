"""The leave watcher: ECS says the task is stopping or superseded, the relay hears it once.

The decision is a pure function (a table of ECS answers); the watcher itself runs against
a fake task-metadata endpoint and a fake ECS control plane, both real HTTP servers, the
second spoken to by a real boto3 client (AWS JSON 1.1 protocol).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from relay.leaving import BotoEcs, LeaveReason, LeaveWatcher, leave_reason, service_of
from tests.conftest import TIMEOUT
from tests.relay.conftest import (
    FakeUpstream,
    StartRelay,
    eventually,
    mint,
    open_client,
    recv_until,
)

TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/relay-cluster/0123456789abcdef"
CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/relay-cluster"
OLD, NEW = "ecs-svc/1111111111111111111", "ecs-svc/2222222222222222222"


def _task(desired: str = "RUNNING", started_by: str = OLD) -> dict[str, Any]:
    return {
        "taskArn": TASK_ARN,
        "desiredStatus": desired,
        "lastStatus": "RUNNING",
        "startedBy": started_by,
        "group": "service:relay",
    }


def _service(*deployments: tuple[str, str, int, int]) -> dict[str, Any]:
    return {
        "serviceName": "relay",
        "deployments": [
            {"id": i, "status": s, "runningCount": r, "desiredCount": d}
            for i, s, r, d in deployments
        ],
    }


STEADY = _service((OLD, "PRIMARY", 2, 2))
ROLLING_NOT_READY = _service((NEW, "PRIMARY", 1, 2), (OLD, "ACTIVE", 2, 2))
ROLLED = _service((NEW, "PRIMARY", 2, 2), (OLD, "ACTIVE", 2, 2))

DECISIONS = [
    ("steady", _task(), STEADY, None),
    ("stopping", _task("STOPPED"), STEADY, LeaveReason.STOPPING),
    ("stopping-without-service", _task("STOPPED"), None, LeaveReason.STOPPING),
    ("superseded-new-ready", _task(), ROLLED, LeaveReason.SUPERSEDED),
    ("superseded-new-not-ready", _task(), ROLLING_NOT_READY, None),
    ("own-deployment-primary", _task(started_by=NEW), ROLLED, None),
    ("unknown-deployment", _task(started_by="ecs-svc/9"), ROLLED, None),
    ("not-started-by-a-deployment", _task(started_by=""), ROLLED, None),
    ("no-primary", _task(), _service((OLD, "ACTIVE", 2, 2)), None),
    ("deployments-not-a-list", _task(), {"deployments": "PRIMARY"}, None),
    ("deployment-garbage", _task(), {"deployments": [None, 3, "x"]}, None),
    ("primary-wants-zero", _task(), _service((NEW, "PRIMARY", 0, 0), (OLD, "ACTIVE", 1, 1)), None),
    (
        "counts-not-numbers",
        _task(),
        {
            "deployments": [
                {"id": NEW, "status": "PRIMARY", "runningCount": "2", "desiredCount": "2"},
                {"id": OLD, "status": "ACTIVE", "runningCount": 1, "desiredCount": 1},
            ]
        },
        None,
    ),
    ("no-service", _task(), None, None),
    ("empty-task", {}, STEADY, None),
]


@pytest.mark.parametrize(
    ("task", "service", "expected"), [d[1:] for d in DECISIONS], ids=[d[0] for d in DECISIONS]
)
def test_leave_reason_from_what_ecs_says(
    task: dict[str, Any], service: dict[str, Any] | None, expected: LeaveReason | None
) -> None:
    """The task leaves when ECS stops it, or once a ready primary deployment replaced it."""
    assert leave_reason(task, service) == expected


@pytest.mark.parametrize(
    ("group", "expected"),
    [("service:relay", "relay"), ("service:", None), ("family:relay", None), (None, None)],
    ids=["service", "empty-name", "standalone-task", "missing"],
)
def test_service_name_comes_from_the_task_group(group: str | None, expected: str | None) -> None:
    """Only a service's task asks DescribeServices, for its own service."""
    assert service_of({"group": group}) == expected


# Real HTTP fakes


@dataclass
class FakeAws:
    """The task metadata endpoint and the ECS control plane, as the watcher sees them."""

    metadata_uri: str = ""
    ecs_url: str = ""
    metadata: bytes = json.dumps({"TaskARN": TASK_ARN, "Cluster": CLUSTER}).encode()
    metadata_status: int = 200
    chunked: bool = True
    task: dict[str, Any] = field(default_factory=_task)
    service: dict[str, Any] = field(default_factory=lambda: STEADY)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    request_line = (await reader.readline()).decode()
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return request_line, headers, body


@pytest.fixture
async def aws() -> AsyncIterator[FakeAws]:
    fake = FakeAws()

    async def metadata(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line, _, _ = await _read_request(reader)
        fake.calls.append(("metadata", {"request": request_line.strip()}))
        head = f"HTTP/1.1 {fake.metadata_status} X\r\nContent-Type: application/json\r\n"
        if fake.chunked:  # as Go's server answers anything over its 4 KiB buffer
            half = len(fake.metadata) // 2
            parts = (fake.metadata[:half], fake.metadata[half:])
            body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n\r\n"
            writer.write(head.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + body)
        else:
            length = f"Content-Length: {len(fake.metadata)}\r\n\r\n"
            writer.write(head.encode() + length.encode() + fake.metadata)
        await writer.drain()
        writer.close()

    async def ecs(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, headers, body = await _read_request(reader)
        action = headers["x-amz-target"].rpartition(".")[2]
        params = json.loads(body)
        fake.calls.append((action, params))
        if action == "DescribeTasks":
            answer: dict[str, Any] = {"tasks": [fake.task], "failures": []}
        elif action == "DescribeServices":
            answer = {"services": [fake.service], "failures": []}
        else:
            answer = {}
        payload = json.dumps(answer).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n"
            + f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        writer.close()

    servers = [await asyncio.start_server(h, "127.0.0.1", 0) for h in (metadata, ecs)]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    fake.metadata_uri = f"http://127.0.0.1:{ports[0]}/v4/abc-123"
    fake.ecs_url = f"http://127.0.0.1:{ports[1]}"
    try:
        yield fake
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


def _watcher(aws: FakeAws, heard: list[LeaveReason]) -> LeaveWatcher:
    client = boto3.client(
        "ecs",
        region_name="us-east-1",
        endpoint_url=aws.ecs_url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    return LeaveWatcher(aws.metadata_uri, BotoEcs(client), heard.append, interval=0.05)


async def _watching(watcher: LeaveWatcher) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(watcher.run())


async def test_watcher_reports_a_superseded_task_once_the_new_deployment_is_ready(
    aws: FakeAws,
) -> None:
    """A deploy: nothing while the old deployment is primary or the new one not ready; then once."""
    heard: list[LeaveReason] = []
    watcher = _watcher(aws, heard)
    task = await _watching(watcher)
    try:
        await eventually(lambda: sum(a == "DescribeServices" for a, _ in aws.calls) >= 2)
        aws.service = ROLLING_NOT_READY
        seen = len(aws.calls)
        await eventually(lambda: sum(a == "DescribeServices" for a, _ in aws.calls[seen:]) >= 2)
        assert heard == []
        aws.service = ROLLED
        await eventually(lambda: heard == [LeaveReason.SUPERSEDED])
        await asyncio.wait_for(task, timeout=5)  # run() returns once it has reported
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert heard == [LeaveReason.SUPERSEDED]
    assert watcher.reason is LeaveReason.SUPERSEDED
    (metadata,) = [p for a, p in aws.calls if a == "metadata"]  # identity read once
    assert metadata["request"].startswith("GET /v4/abc-123/task ")
    describe = next(p for a, p in aws.calls if a == "DescribeTasks")
    assert describe == {"cluster": CLUSTER, "tasks": [TASK_ARN]}
    services = next(p for a, p in aws.calls if a == "DescribeServices")
    assert services == {"cluster": CLUSTER, "services": ["relay"]}


async def test_watcher_reports_a_stopping_task_without_asking_for_the_service(
    aws: FakeAws,
) -> None:
    """Scale-in or a deploy picked this task: the relay hears STOPPING at the next look."""
    aws.task = _task("STOPPED")
    heard: list[LeaveReason] = []
    task = await _watching(_watcher(aws, heard))
    try:
        await eventually(lambda: heard == [LeaveReason.STOPPING])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert "DescribeServices" not in [a for a, _ in aws.calls]


BAD_METADATA = [
    ("server-error", 500, b"{}"),
    ("not-json", 200, b"<html>"),
    ("not-an-object", 200, b"[1, 2]"),
    ("no-arn", 200, json.dumps({"Cluster": CLUSTER}).encode()),
    ("arn-not-a-string", 200, json.dumps({"TaskARN": 7, "Cluster": CLUSTER}).encode()),
    ("oversized", 200, b'{"TaskARN": "' + b"a" * (2 << 20) + b'"}'),
]


@pytest.mark.parametrize(
    ("status", "body"), [b[1:] for b in BAD_METADATA], ids=[b[0] for b in BAD_METADATA]
)
async def test_bad_metadata_is_retried_never_raised(aws: FakeAws, status: int, body: bytes) -> None:
    """A broken or hostile metadata answer costs a retry, not the relay; it recovers."""
    aws.metadata_status, aws.metadata = status, body
    aws.task = _task("STOPPED")
    heard: list[LeaveReason] = []
    task = await _watching(_watcher(aws, heard))
    try:
        await eventually(lambda: sum(a == "metadata" for a, _ in aws.calls) >= 2)
        assert heard == []
        assert not task.done()
        aws.metadata_status = 200
        aws.metadata = json.dumps({"TaskARN": TASK_ARN, "Cluster": CLUSTER}).encode()
        await eventually(lambda: heard == [LeaveReason.STOPPING])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_without_a_metadata_uri_nothing_happens() -> None:
    """Locally (no ECS_CONTAINER_METADATA_URI_V4) the watcher returns at once."""
    heard: list[LeaveReason] = []
    watcher = LeaveWatcher(None, BotoEcs(object()), heard.append)
    async with asyncio.timeout(1):
        await watcher.run()
    assert heard == []
    assert watcher.reason is None


def test_default_client_has_short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """On ECS the watcher's client waits seconds, not boto3's minute, for a slow answer."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    ecs = BotoEcs.default()
    assert ecs.client.meta.region_name == "eu-west-1"
    assert ecs.client.meta.config.read_timeout == 5
    assert ecs.client.meta.config.connect_timeout == 3


async def test_a_relay_whose_task_is_stopping_leaves_at_once(
    aws: FakeAws,
    start_relay: StartRelay,
    fake_upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Wired into the server: ECS says STOPPED, so the relay stops admitting (health 503)
    and hands its idle session over (1001, reconnect) without waiting for SIGTERM."""
    aws.task = _task("STOPPED")
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECS", aws.ecs_url)
    relay = await start_relay(fake_upstream.url, ecs_metadata_uri=aws.metadata_uri)
    async with open_client(relay, mint("bot-leaving")) as ws:
        await recv_until(ws, "session.created")
        await eventually(lambda: relay.draining)
        async with asyncio.timeout(TIMEOUT):
            await ws.wait_closed()
    assert (ws.close_code, ws.close_reason) == (1001, "relay draining: reconnect")
