"""LeaveWatcher: learns early that ECS is replacing or stopping this relay's task.

ECS tells a task nothing when it starts draining it: the ALB stops sending it new
connections at once, but SIGTERM comes only after the deregistration delay. This watcher
asks ECS instead, every ``interval`` seconds, and calls ``on_leave`` once with the reason,
so the server can start leaving at once (health 503, refuse new handshakes, hand live
sessions over at their next turn boundary) instead of holding calls until SIGTERM:

- :attr:`LeaveReason.STOPPING`: the task's desired status is ``STOPPED`` (a deployment or a
  scale-in picked it; ECS is deregistering it);
- :attr:`LeaveReason.SUPERSEDED`: the deployment that started the task is no longer the
  service's ``PRIMARY`` one, and the primary deployment already runs its desired count
  (leaving earlier would push calls onto tasks that are not there yet). This is the only
  early signal for a task that holds scale-in protection: ECS neither deregisters nor
  stops a protected task, so STOPPING comes only once protection ends; on SUPERSEDED the
  server should call ``TaskProtection.release()`` and leave.

Inputs: the task metadata endpoint v4 (``$ECS_CONTAINER_METADATA_URI_V4/task``: the task's
ARN and cluster; no permission needed) and the ECS API (``DescribeTasks`` on this task:
desired status, ``startedBy`` = the deployment id, ``group`` = ``service:<name>``;
``DescribeServices`` on that service: its deployments). The task role may call both on
this cluster's tasks and services only. Without a metadata URI (local runs) it does
nothing. Errors are logged and retried; nothing is raised into the server. The decision
itself is :func:`leave_reason`, pure, so it is tested without sockets.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger(__name__)

#: Largest task-metadata answer read (a real one is a few KiB).
MAX_METADATA_BYTES: Final = 1 << 20
SERVICE_GROUP_PREFIX: Final = "service:"


class LeaveReason(StrEnum):
    """Why the task should leave now."""

    STOPPING = "ecs is stopping this task"
    SUPERSEDED = "this task's deployment is no longer the primary one"


@dataclass(frozen=True, slots=True)
class TaskIdentity:
    """Which task this process runs in (from the task metadata endpoint)."""

    task_arn: str
    cluster: str


class EcsApi(Protocol):
    """The two ECS calls the watcher needs (a boto3 client, or a fake in unit tests)."""

    def describe_task(self, cluster: str, task_arn: str) -> Mapping[str, Any]:
        """The ``tasks[0]`` of ``DescribeTasks``."""

    def describe_service(self, cluster: str, service: str) -> Mapping[str, Any]:
        """The ``services[0]`` of ``DescribeServices``."""


class BotoEcs:
    """:class:`EcsApi` over a boto3 ECS client (blocking: the watcher runs it in a thread)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @classmethod
    def default(cls) -> BotoEcs:
        """A client for the task's own Region (ECS sets AWS_DEFAULT_REGION, which boto3 reads).

        Short timeouts and two attempts: a slow answer only delays the next look.
        """
        config = Config(
            connect_timeout=3, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}
        )
        return cls(boto3.client("ecs", config=config))

    def describe_task(self, cluster: str, task_arn: str) -> Mapping[str, Any]:
        """Describe one task; raise LookupError if ECS does not know it."""
        tasks = self.client.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"]
        if not tasks:
            raise LookupError(f"ECS does not know task {task_arn}")
        return dict(tasks[0])

    def describe_service(self, cluster: str, service: str) -> Mapping[str, Any]:
        """Describe one service; raise LookupError if ECS does not know it."""
        services = self.client.describe_services(cluster=cluster, services=[service])
        if not services["services"]:
            raise LookupError(f"ECS does not know service {service}")
        return dict(services["services"][0])


def service_of(task: Mapping[str, Any]) -> str | None:
    """The service that started ``task`` (``group`` is ``service:<name>``), if any."""
    group = task.get("group")
    if isinstance(group, str) and group.startswith(SERVICE_GROUP_PREFIX):
        return group.removeprefix(SERVICE_GROUP_PREFIX) or None
    return None


def leave_reason(task: Mapping[str, Any], service: Mapping[str, Any] | None) -> LeaveReason | None:
    """Whether the task described by ECS should leave now, and why (None: stay)."""
    if task.get("desiredStatus") == "STOPPED":
        return LeaveReason.STOPPING
    if service is None:
        return None
    deployments = service.get("deployments")
    if not isinstance(deployments, list):
        return None
    primary = next(
        (d for d in deployments if isinstance(d, dict) and d.get("status") == "PRIMARY"), None
    )
    started_by = task.get("startedBy")
    if primary is None or not isinstance(started_by, str) or started_by == primary.get("id"):
        return None
    if not any(isinstance(d, dict) and d.get("id") == started_by for d in deployments):
        return None  # a task of no deployment we can see: do not guess
    running, desired = primary.get("runningCount"), primary.get("desiredCount")
    if isinstance(running, int) and isinstance(desired, int) and running >= desired > 0:
        return LeaveReason.SUPERSEDED
    return None


class LeaveWatcher:
    """Polls ECS until the task should leave, then calls ``on_leave(reason)`` once.

    Args:
        metadata_uri: ``$ECS_CONTAINER_METADATA_URI_V4``, or None to do nothing.
        ecs: the ECS API (:class:`BotoEcs` on AWS).
        on_leave: called once, on the event loop, with the reason.
        interval: seconds between two looks (and after a failed one).
        timeout: deadline of one metadata request.
    """

    def __init__(
        self,
        metadata_uri: str | None,
        ecs: EcsApi,
        on_leave: Callable[[LeaveReason], None],
        *,
        interval: float = 15.0,
        timeout: float = 5.0,
    ) -> None:
        self.metadata_uri = metadata_uri.rstrip("/") if metadata_uri else None
        self.ecs = ecs
        self.on_leave = on_leave
        self.interval = interval
        self.timeout = timeout
        #: Set once the task should leave (None until then).
        self.reason: LeaveReason | None = None
        self.identity: TaskIdentity | None = None

    async def run(self) -> None:
        """Watch until the task should leave (then return) or until cancelled."""
        if self.metadata_uri is None:
            return
        while True:
            try:
                reason = await self._look()
            except (
                OSError,
                TimeoutError,
                ValueError,
                LookupError,
                BotoCoreError,
                ClientError,
            ) as exc:
                logger.warning("leave watch failed", extra={"error": str(exc)})
                reason = None
            if reason is not None:
                self.reason = reason
                logger.info("relay task leaving", extra={"reason": reason.value})
                self.on_leave(reason)
                return
            await asyncio.sleep(self.interval)

    async def _look(self) -> LeaveReason | None:
        if self.identity is None:
            self.identity = await self._identity()
        identity = self.identity
        task = await asyncio.to_thread(self.ecs.describe_task, identity.cluster, identity.task_arn)
        service_name = service_of(task)
        service = (
            await asyncio.to_thread(self.ecs.describe_service, identity.cluster, service_name)
            if service_name is not None and task.get("desiredStatus") != "STOPPED"
            else None
        )
        return leave_reason(task, service)

    async def _identity(self) -> TaskIdentity:
        assert self.metadata_uri is not None
        body = await self._get(self.metadata_uri + "/task")
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("task metadata is not a JSON object")
        arn, cluster = document.get("TaskARN"), document.get("Cluster")
        if not isinstance(arn, str) or not isinstance(cluster, str) or not arn or not cluster:
            raise ValueError("task metadata names no TaskARN and Cluster")
        return TaskIdentity(task_arn=arn, cluster=cluster)

    async def _get(self, url: str) -> bytes:
        return await get_metadata(url, self.timeout)


def _dechunk(body: bytes) -> bytes:
    """Decode an HTTP/1.1 chunked body (Go's server chunks answers over ~4 KiB)."""
    out, rest = b"", body
    while True:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            raise ValueError("truncated chunked body")
        size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
        if size == 0:
            return out
        if len(rest) < size + 2:
            raise ValueError("truncated chunked body")
        out, rest = out + rest[:size], rest[size + 2 :]


async def get_metadata(url: str, timeout: float) -> bytes:  # noqa: ASYNC109 - one request's deadline
    """GET one task-metadata document: a minimal HTTP/1.1 GET within ``timeout`` (the
    endpoint is link-local, plain HTTP, no redirects)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError("the task metadata URI must be an http:// URL")
    request = (
        f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "Accept: application/json\r\nConnection: close\r\n\r\n"
    ).encode()
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        try:
            writer.write(request)
            await writer.drain()
            response = b""
            while len(response) <= MAX_METADATA_BYTES and (chunk := await reader.read(65536)):
                response += chunk
        finally:
            writer.close()
            await writer.wait_closed()
    if len(response) > MAX_METADATA_BYTES:
        raise ValueError("task metadata answer too large")
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if len(status) < 2 or status[1] != b"200":
        raise ValueError(f"task metadata endpoint answered {lines[0][:40]!r}")
    headers = {
        k.strip().lower(): v.strip().lower() for k, _, v in (x.partition(b":") for x in lines[1:])
    }
    if headers.get(b"transfer-encoding") == b"chunked":
        return _dechunk(body)
    return body
