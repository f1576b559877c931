"""OwnerRegistry: records which relay process holds a session, and tells others where it is.

A relay process claims a session's owner item (``storage.owners``) when a session of that
subject starts or resumes on it, and releases it (only if still its own) when the last one
ends there. Claims and releases go into one bounded queue (``put_nowait``; full → dropped
and counted, never waited for) drained in order by one writer task, with short botocore
timeouts and a few retries with backoff; nothing on the per-message path writes.
Lookups are one consistent ``GetItem`` in a worker thread inside a deadline; a lookup that
fails answers "unknown" (the router retries with backoff), it never raises.

Without a table (``make dev`` with one relay and no storage, unit tests) use
:class:`NoRegistry`: nothing is recorded and no owner is ever known, so meeting events
reach only sessions on this process.

It refuses to decide when a session starts or ends (the server says so) or to read the
environment: table, address and endpoint are arguments.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from storage import items, owners

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

logger = logging.getLogger(__name__)

_BOTO_CONFIG: Final = Config(
    connect_timeout=2, read_timeout=3, retries={"max_attempts": 1, "mode": "standard"}
)
#: Attempts per claim or release before it is dropped and counted.
WRITE_ATTEMPTS: Final = 4
#: An owner item outlives the longest session by this much, then expires (a crashed task).
EXPIRY_MARGIN_SECONDS: Final = 3600


class OwnerDirectory(Protocol):
    """What the router and the server need from the registry (a fake in unit tests)."""

    address: str | None

    def claim(self, session_id: str) -> None:
        """Record this process as the owner of ``session_id`` (queued, never blocks)."""

    def release(self, session_id: str) -> None:
        """Forget this process as the owner of ``session_id`` if it still is (queued)."""

    async def lookup(self, session_id: str) -> str | None:
        """The owner's internal address, or None (unknown, or the lookup failed)."""


@dataclass(slots=True)
class RegistryStats:
    """Counters of the registry's writes and reads."""

    written: int = 0
    superseded: int = 0
    dropped: int = 0
    failed_attempts: int = 0
    lookup_failures: int = 0


class NoRegistry:
    """No table: nothing recorded, no owner ever known."""

    address: str | None = None

    def claim(self, session_id: str) -> None:
        """Nothing to record."""

    def release(self, session_id: str) -> None:
        """Nothing to forget."""

    async def lookup(self, session_id: str) -> str | None:
        """No owner is known."""
        return None


class OwnerRegistry:
    """Claims, releases and lookups of session owner items in one table."""

    def __init__(
        self,
        table_name: str,
        *,
        address: str,
        session_seconds: float,
        queue_size: int = 1024,
        lookup_timeout: float = 3.0,
        endpoint_url: str | None = None,
    ) -> None:
        """Record ``address`` (``host:port`` of this process's internal listener)."""
        if not owners.is_valid_address(address):
            raise ValueError("the owner address must be host:port")
        resource = boto3.resource("dynamodb", endpoint_url=endpoint_url, config=_BOTO_CONFIG)
        self._table: Table = resource.Table(table_name)
        self.address: str | None = address
        #: This process: a release only removes a claim this process made.
        self.instance = uuid.uuid4().hex
        self._expiry = int(session_seconds) + EXPIRY_MARGIN_SECONDS
        self._queue: asyncio.Queue[tuple[str, str, int]] = asyncio.Queue(maxsize=queue_size)
        self._lookup_timeout = lookup_timeout
        self._writer: asyncio.Task[None] | None = None
        self.stats = RegistryStats()

    # Lifecycle

    def start(self) -> None:
        """Start the writer task (owned here; stopped by :meth:`aclose`)."""
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109 - a bound that answers, never raises
        """Wait until every queued write is done; False if ``timeout`` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._queue.join()
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        """Stop the writer (what is still queued is lost, and counted)."""
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        self.stats.dropped += self._queue.qsize()

    # Writes

    def claim(self, session_id: str) -> None:
        """Queue a claim stamped now (the claim's order against other tasks' claims)."""
        self._put(("claim", session_id, time.time_ns() // 1_000_000))

    def release(self, session_id: str) -> None:
        """Queue a release of this process's claim."""
        self._put(("release", session_id, 0))

    def _put(self, op: tuple[str, str, int]) -> None:
        try:
            self._queue.put_nowait(op)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            logger.warning("owner write dropped: queue full", extra={"session_id": op[1]})

    async def _write_loop(self) -> None:
        while True:
            kind, session_id, since_ms = await self._queue.get()
            try:
                await self._write(kind, session_id, since_ms)
            finally:
                self._queue.task_done()

    async def _write(self, kind: str, session_id: str, since_ms: int) -> None:
        assert self.address is not None
        if kind == "claim":
            owner = owners.SessionOwner(session_id, self.address, self.instance, since_ms)
            request = owners.claim_request(owner, expires_at=since_ms // 1000 + self._expiry)
            call = lambda: self._table.put_item(**request)  # noqa: E731
        else:
            request = owners.release_request(session_id, self.instance)
            call = lambda: self._table.update_item(**request)  # noqa: E731
        for attempt in range(WRITE_ATTEMPTS):
            try:
                await asyncio.to_thread(call)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    # Another task holds a newer claim: the session moved on. Nothing to do.
                    self.stats.superseded += 1
                    return
                self.stats.failed_attempts += 1
            except BotoCoreError:
                self.stats.failed_attempts += 1
            else:
                self.stats.written += 1
                return
            if attempt + 1 < WRITE_ATTEMPTS:
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt) * (0.5 + random.random() / 2))
        self.stats.dropped += 1
        logger.warning("owner write failed", extra={"session_id": session_id, "operation": kind})

    # Reads

    async def lookup(self, session_id: str) -> str | None:
        """The recorded owner's address; None when none is recorded or the read failed."""
        key = owners.owner_key(session_id)
        try:
            async with asyncio.timeout(self._lookup_timeout):
                answer = await asyncio.to_thread(
                    lambda: self._table.get_item(Key=key, ConsistentRead=True)
                )
        except (TimeoutError, BotoCoreError, ClientError) as exc:
            self.stats.lookup_failures += 1
            logger.warning(
                "owner lookup failed",
                extra={"session_id": session_id, "error": type(exc).__name__},
            )
            return None
        item = answer.get("Item")
        owner = owners.owner_from_item(items.plain(item)) if item else None
        return owner.address if owner is not None else None
