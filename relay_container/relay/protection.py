"""ECS task scale-in protection while the relay holds live sessions, bounded in time.

When the task goes from idle to holding a session it asks the ECS agent
(``PUT $ECS_AGENT_URI/task-protection/v1/state``) to protect it from scale-in for
``protect_minutes`` (default 5, at most :data:`MAX_PROTECT_MINUTES`), and **never renews
it**; it clears the protection when the last session ends, and for good once the task is
leaving (:meth:`TaskProtection.release`). ECS does not stop a protected task, in a
scale-in or a deployment, until its protection ends, so an unbounded one would hold a
deploy (and CloudFormation's update, which times out and rolls back) for as long as any
call lasts; bounded, the most a deploy can wait on it is ``protect_minutes``. A call
longer than that is moved by the relay's hand-over when its task leaves, not by holding
the task. Without ECS_AGENT_URI (local runs, tests) it does nothing. One owned task
reconciles the wanted state with the agent; a failed call is logged and retried, never
raised into a session.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Final
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

STATE_PATH: Final = "/task-protection/v1/state"
#: Longest protection ever asked for: a deploy waits at most this long on a busy task.
MAX_PROTECT_MINUTES: Final = 10


class TaskProtection:
    """Keeps ECS scale-in protection on for a bounded time after the task becomes busy.

    Args:
        agent_uri: ``$ECS_AGENT_URI``, or None to do nothing.
        protect_minutes: protection asked for when the task becomes busy; never renewed.
        retry_seconds: wait after a failed call before trying again.
        timeout: deadline of one call to the agent.

    Raises:
        ValueError: ``protect_minutes`` outside 1..MAX_PROTECT_MINUTES.
    """

    def __init__(
        self,
        agent_uri: str | None,
        *,
        protect_minutes: int = 5,
        retry_seconds: float = 10.0,
        timeout: float = 5.0,
    ) -> None:
        if not 1 <= protect_minutes <= MAX_PROTECT_MINUTES:
            raise ValueError(f"protect_minutes must be 1..{MAX_PROTECT_MINUTES}")
        self.agent_uri = agent_uri.rstrip("/") if agent_uri else None
        self.protect_minutes = protect_minutes
        self.retry_seconds = retry_seconds
        self.timeout = timeout
        self.wanted = False
        #: The task is leaving: protection is off for good.
        self.released = False
        #: What the agent last confirmed (None: never asked).
        self.confirmed: bool | None = None
        #: Grants the agent confirmed (one per busy period; a test reads it).
        self.grants = 0
        self._busy = False
        self._changed = asyncio.Event()

    def sessions_changed(self, active: int) -> None:
        """Called on every admit/release with the live session count."""
        busy = active > 0
        if busy == self._busy:
            return
        self._busy = busy
        self._want(busy and not self.released)

    def release(self) -> None:
        """The task is leaving (drain, deployment, scale-in): clear protection, never renew."""
        self.released = True
        self._want(False)

    async def run(self) -> None:
        """Reconcile until cancelled (owned by the server)."""
        if self.agent_uri is None:
            return
        while True:
            wanted = self.wanted
            wait: float | None = None
            if wanted != self.confirmed:
                try:
                    await self._put(wanted)
                    self.confirmed = wanted
                    self.grants += wanted
                except (OSError, TimeoutError, ValueError) as exc:
                    logger.warning(
                        "task protection update failed",
                        extra={"protection_enabled": wanted, "error": str(exc)},
                    )
                    wait = self.retry_seconds
            self._changed.clear()
            if self.wanted != wanted:
                continue
            # Nothing to renew: a granted protection simply lapses after protect_minutes.
            try:
                async with asyncio.timeout(wait):
                    await self._changed.wait()
            except TimeoutError:
                pass

    def _want(self, wanted: bool) -> None:
        if wanted != self.wanted:
            self.wanted = wanted
            self._changed.set()

    async def _put(self, enabled: bool) -> None:
        assert self.agent_uri is not None
        parts = urlsplit(self.agent_uri + STATE_PATH)
        body: dict[str, object] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = self.protect_minutes
        payload = json.dumps(body).encode()
        host = parts.hostname or "localhost"
        port = parts.port or 80
        request = (
            f"PUT {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode() + payload
        async with asyncio.timeout(self.timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(request)
                await writer.drain()
                status_line = await reader.readline()
            finally:
                writer.close()
                await writer.wait_closed()
        fields = status_line.split(b" ", 2)
        if len(fields) < 2 or not fields[1].isdigit():
            raise ValueError("the ECS agent sent no HTTP status")
        status = int(fields[1])
        if status != 200:
            raise ValueError(f"the ECS agent answered HTTP {status}")
        logger.info("task protection set", extra={"protection_enabled": enabled})
