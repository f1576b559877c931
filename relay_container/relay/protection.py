"""ECS task scale-in protection while the relay holds live sessions.

While at least one session is live the task asks the ECS agent
(``PUT $ECS_AGENT_URI/task-protection/v1/state``) to protect it from scale-in, renewing
before the protection expires, and clears it when the last session ends, so scale-in
picks idle tasks. Without ECS_AGENT_URI (local runs, tests) it does nothing. One owned
task reconciles the wanted state with the agent; a failed call is logged and retried,
never raised into a session.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Final
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

STATE_PATH: Final = "/task-protection/v1/state"


class TaskProtection:
    """Keeps ECS scale-in protection equal to "this task has live sessions".

    Args:
        agent_uri: ``$ECS_AGENT_URI``, or None to do nothing.
        expires_minutes: protection lifetime asked for; renewed at half of it.
        retry_seconds: wait after a failed call before trying again.
    """

    def __init__(
        self,
        agent_uri: str | None,
        *,
        expires_minutes: int = 60,
        retry_seconds: float = 10.0,
        timeout: float = 5.0,
    ) -> None:
        self.agent_uri = agent_uri.rstrip("/") if agent_uri else None
        self.expires_minutes = expires_minutes
        self.retry_seconds = retry_seconds
        self.timeout = timeout
        self.wanted = False
        #: What the agent last confirmed (None: never asked).
        self.confirmed: bool | None = None
        self._changed = asyncio.Event()

    def sessions_changed(self, active: int) -> None:
        """Called on every admit/release with the live session count."""
        wanted = active > 0
        if wanted != self.wanted:
            self.wanted = wanted
            self._changed.set()

    async def run(self) -> None:
        """Reconcile until cancelled (owned by the server)."""
        if self.agent_uri is None:
            return
        renew_after = self.expires_minutes * 60 / 2
        while True:
            wanted = self.wanted
            if wanted != self.confirmed or wanted:
                try:
                    await self._put(wanted)
                    self.confirmed = wanted
                    wait: float | None = renew_after if wanted else None
                except (OSError, TimeoutError, ValueError) as exc:
                    logger.warning(
                        "task protection update failed",
                        extra={"protection_enabled": wanted, "error": str(exc)},
                    )
                    wait = self.retry_seconds
            else:
                wait = None
            self._changed.clear()
            if self.wanted != wanted:
                continue
            try:
                async with asyncio.timeout(wait):
                    await self._changed.wait()
            except TimeoutError:
                pass

    async def _put(self, enabled: bool) -> None:
        assert self.agent_uri is not None
        parts = urlsplit(self.agent_uri + STATE_PATH)
        body: dict[str, object] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = self.expires_minutes
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
