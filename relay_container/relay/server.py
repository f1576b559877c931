"""The relay process: one listener serving pages, health and relayed sessions; drain.

Each TCP connection starts as a ``HandshakeConnection``: it reads one HTTP request
(bounded in size and time), answers plain requests through ``pages.py``, and turns a
WebSocket request on ``/v1/realtime`` into a session — draining check (503), query (400
for more than MAX_QUERY_FIELDS fields or a ``token`` in it), token (401), model allow-list
(403), admission (503 full / 429 per subject), then websockets' sans-I/O
``ServerProtocol.accept`` for the 101 (no compression, ``realtime`` echoed when offered)
— before handing the socket to a ``RelaySession``. Nothing is dialled upstream for a
request that is refused.

Pending handshakes (connections whose request is not complete yet) are bounded per
process and per peer address (``pending_handshakes.py``).

A client whose token subject has a *detached* session here (it vanished without a close
frame less than RELAY_REATTACH_SECONDS ago) is re-attached to it: no admission (it holds
its place already), same upstream session. Otherwise, a subject with no live session here
gets a session that resumes the stored conversation (``RelaySession(resume=True)``).

Recall's real-time meeting events (``/recall/events/``) and their routing to the task that
holds the session are ``relay.meeting_endpoint``'s.

Shutdown (``Relay.drain``), in order: /healthz turns 503 and new handshakes are refused;
the live sessions are handed over or end within DRAIN_SECONDS (``live_sessions.py``); the
session records still queued are flushed within what is left of DRAIN_SECONDS (at most
10 s); the listener closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from websockets.http11 import Request

from relay import pages, wire
from relay.admission import Admission
from relay.agent import AgentConfig, load_agent_config
from relay.auth import authenticate
from relay.bill_exit import bill_exit
from relay.config import RelayConfig
from relay.errors import DrainingError, ForbiddenError, RelayError
from relay.handshake import (
    HandshakeConnection,
    accept_upgrade,
    parse_query,
    peer_name,
    refusal,
    write_response,
)
from relay.internal_listener import LocalDelivery
from relay.leaving import BotoEcs, LeaveReason, LeaveWatcher
from relay.live_sessions import LiveSessions
from relay.meeting_endpoint import MeetingEndpoint
from relay.meeting_events import EVENTS_PATH
from relay.meeting_socket import MeetingSocket
from relay.metrics import Metrics
from relay.pending_handshakes import PendingHandshakes
from relay.policy import SessionPolicy
from relay.protection import TaskProtection
from relay.record_writer import open_recorder
from relay.recorder import Recorder
from relay.session import RelaySession
from relay.session_context import SessionContext
from relay.session_setup import SessionSetups

logger = logging.getLogger(__name__)

#: Longest flush of the session records during a drain.
RECORDS_FLUSH_SECONDS: Final = 10.0

REALTIME_PATH: Final = "/v1/realtime"


def per_message_path_compiled() -> bool:
    """Whether the per-message modules run as mypyc builds (built together: wire tells)."""
    return Path(wire.__file__ or "").suffix in (".so", ".pyd")


class Relay:
    """Process-wide state: config, admission, metrics, live sessions, the listener."""

    def __init__(
        self,
        config: RelayConfig,
        agent: AgentConfig | None = None,
        recorder: Recorder | None = None,
        meeting_delivery: LocalDelivery | None = None,
    ) -> None:
        """``meeting_delivery(session_id, payload)`` hands a meeting event to a live session
        on this process (True: taken); the meeting-events side of the session provides it."""
        self.config = config
        # Region None: boto3 resolves it (AWS_REGION on ECS); the endpoint likewise
        # (AWS_ENDPOINT_URL_DYNAMODB in tests).
        self.recorder = (
            recorder
            if recorder is not None
            else open_recorder(config.table_name, retention_days=config.record_retention_days)
        )
        self.agent = agent if agent is not None else load_agent_config(config.agent_config_path)
        self.protection = TaskProtection(config.ecs_agent_uri)
        self.admission = Admission(
            config.max_sessions,
            config.max_sessions_per_subject,
            on_change=self.protection.sessions_changed,
        )
        self.metrics = Metrics(
            namespace=config.metrics_namespace,
            service=config.metrics_service,
            active_sessions=lambda: self.admission.active,
            records=self._record_counts,
        )
        self.setups = SessionSetups.for_config(self.agent, config)
        self.context = SessionContext(
            config=config,
            policy=SessionPolicy(
                self.agent.locked_fields,
                operator=self.agent.locked_values(),
                error_events=self.agent.locked_fields_error,
                on_drop=self._locked_fields_dropped,
            ),
            setups=self.setups,
            metrics=self.metrics,
            recorder=self.recorder,
            meeting_exit=bill_exit(config),
        )
        self.static_dir: Path = config.static_dir
        self.draining = False
        self.live = LiveSessions()
        self._pending = PendingHandshakes(
            config.max_pending_handshakes, config.max_pending_handshakes_per_peer
        )
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Recall's real-time meeting events (relay.meeting_endpoint).
        self.meetings = MeetingEndpoint(
            config, self.metrics, lambda: self.sessions, meeting_delivery
        )

    # Lifecycle

    async def start(self) -> None:
        """Listen, and start the metrics and scale-in protection tasks."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: HandshakeConnection(self),
            self.config.host,
            self.config.port,
            backlog=1024,
            reuse_address=True,
        )
        self.recorder.start()
        if self.config.metrics_interval > 0:
            self._spawn(self.metrics.run(self.config.metrics_interval))
        self._spawn(self.protection.run())
        await self.meetings.start()
        if self.config.ecs_metadata_uri:
            watcher = LeaveWatcher(self.config.ecs_metadata_uri, BotoEcs.default(), self._leave)
            self._spawn(watcher.run())
        logger.info(
            "relay listening",
            extra={
                "url": self.url,
                "upstream": self.config.upstream_url,
                "model": self.config.model,
                "max_sessions": self.config.max_sessions,
                "compiled": per_message_path_compiled(),
            },
        )

    @property
    def port(self) -> int:
        """The port actually bound (the config may say 0)."""
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """ws:// URL of the realtime endpoint."""
        host = self.config.host if self.config.host not in ("0.0.0.0", "::") else "127.0.0.1"
        return f"ws://{host}:{self.port}{REALTIME_PATH}"

    async def drain(self, seconds: float | None = None) -> None:
        """Stop taking sessions, let live ones finish for a while, then close the rest."""
        deadline = self.config.drain_seconds if seconds is None else seconds
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + deadline
        # 1. /healthz → 503 (the balancer stops routing) and new handshakes → 503.
        self.draining = True
        logger.info(
            "relay draining", extra={"live_sessions": len(self.sessions), "drain_seconds": deadline}
        )
        # 2. Live sessions move to another task at their next turn boundary, or end by
        # themselves; 3. at the deadline the rest are closed with 1001.
        margin = max(0.75 * deadline, deadline - self.config.close_timeout - 1.0)
        handover = min(self.config.handover_seconds, margin)
        remaining = await self.live.drain(deadline, handover, self.config.close_timeout)
        # 4. What the sessions recorded goes out before SIGKILL can take it; so do the
        # owner releases (other tasks then stop forwarding meeting events here).
        await self.meetings.flush(max(0.5, min(2.0, ends_at - loop.time())))
        flushed = await self.recorder.flush(
            max(0.5, min(RECORDS_FLUSH_SECONDS, ends_at - loop.time()))
        )
        stats = self.recorder.stats()
        logger.info(
            "relay drained",
            extra={
                "closed_at_deadline": remaining,
                "records_flushed": flushed,
                "records_written": stats.written,
                "records_dropped": stats.dropped,
                "records_unwritten": stats.queued + stats.in_flight,
                "record_write_failures": stats.failed_attempts,
            },
        )

    async def close(self) -> None:
        """Close the listener and stop the background tasks."""
        if self.server is not None:
            self.server.close()
        self.live.shutdown()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.config.close_timeout)
        await self.meetings.aclose()
        await self.recorder.aclose(1.0)
        if self.context.meeting_exit is not None:
            await self.context.meeting_exit.aclose()
        if self.server is not None:
            try:
                async with asyncio.timeout(self.config.close_timeout):
                    await self.server.wait_closed()
            except TimeoutError:
                pass

    def _locked_fields_dropped(
        self, removed: Sequence[str], event_type: str, session_id: str | None
    ) -> None:
        self.metrics.count("LockedFieldsDropped")
        logger.info(
            "locked fields dropped",
            extra={"session_id": session_id, "event_type": event_type, "fields": list(removed)},
        )

    def _leave(self, reason: LeaveReason) -> None:
        """ECS is replacing or stopping this task: leave now rather than at SIGTERM (no new
        sessions, live ones handed over at their next turn boundary); scale-in protection
        goes at once, so nothing makes the deployment wait for this task."""
        if self.draining:
            return
        logger.info("relay leaving", extra={"reason": str(reason)})
        self.protection.release()
        self._spawn(self.drain())

    def _record_counts(self) -> tuple[int, int, int]:
        stats = self.recorder.stats()
        return stats.written, stats.dropped, stats.failed_attempts

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Pending handshakes

    @property
    def sessions(self) -> set[RelaySession]:
        """The live sessions of this process."""
        return self.live.sessions

    @property
    def pending_handshakes(self) -> int:
        """Connections whose HTTP request is not complete yet."""
        return len(self._pending)

    def handshake_started(self, connection: HandshakeConnection) -> None:
        """Give a new connection a place, cutting the oldest pending one at a bound."""
        self._pending.started(connection)

    def handshake_ended(self, connection: HandshakeConnection) -> None:
        """The connection's request was answered, or the connection is gone."""
        self._pending.ended(connection)

    def _session_finished(self, session: RelaySession) -> None:
        self.live.finished(session)
        self.meetings.session_ended(session.claims.sub)

    # Handshakes

    def handle_request(
        self, request: Request, transport: asyncio.Transport, leftover: bytes
    ) -> RelaySession | MeetingSocket | None:
        """Answer one request: a page, a refusal, or a 101 and a new session."""
        path = urlsplit(request.path).path
        if path in (EVENTS_PATH, EVENTS_PATH[:-1]):
            return self.meetings.open_socket(request, transport, leftover, draining=self.draining)
        if path != REALTIME_PATH:
            write_response(
                transport,
                pages.page_response(
                    request.path, request.method, self.static_dir, draining=self.draining
                ),
            )
            return None
        try:
            return self._open_session(request, transport, leftover)
        except RelayError as error:
            if error.error_code in ("invalid_relay_token",):
                self.metrics.count("AuthFailures")
            logger.info(
                "handshake refused",
                extra={
                    "status": error.http_status,
                    "error_code": error.error_code,
                    "reason": str(error),
                    "peer": peer_name(transport),
                },
            )
            write_response(transport, refusal(error))
            return None

    def _open_session(
        self, request: Request, transport: asyncio.Transport, leftover: bytes
    ) -> RelaySession | None:
        if self.draining:
            raise DrainingError("relay draining: reconnect to another relay")
        query = parse_query(request.path)
        claims = authenticate(query, request.headers, self.config.token_secret, now=time.time())
        held = self.live.detached_session(claims.sub)
        if held is not None:
            return self._reattach(held, request, transport, leftover)
        model = self._model(query)
        resume = self.admission.held_by(claims.sub) == 0
        ticket = self.admission.admit(claims.sub)
        try:
            accepted = accept_upgrade(request, transport, self.config.max_frame_bytes)
        except BaseException:
            ticket.release()
            raise
        if not accepted:
            ticket.release()
            return None
        session = RelaySession(
            self.context,
            claims=claims,
            ticket=ticket,
            model=model,
            on_finished=self._session_finished,
            resume=resume,
        )
        self.live.add(session)
        self.metrics.count("SessionsStarted")
        transport.set_protocol(session)
        session.start(transport, leftover)
        self.meetings.session_started(claims.sub)
        return session

    def _reattach(
        self,
        session: RelaySession,
        request: Request,
        transport: asyncio.Transport,
        leftover: bytes,
    ) -> RelaySession | None:
        """The 101, then the held session takes the socket (its model stays the same)."""
        if not accept_upgrade(request, transport, self.config.max_frame_bytes):
            return None
        self.metrics.count("SessionsReattached")
        transport.set_protocol(session)
        session.reattach(transport, leftover)
        return session

    def _model(self, query: dict[str, list[str]]) -> str:
        requested = query.get("model")
        if not requested or not requested[0]:  # ?model= (blank) means the default
            return self.config.model
        model = requested[0]
        if model not in self.config.models:
            raise ForbiddenError(f"model {model[:64]!r} is not allowed on this relay")
        return model


async def serve(config: RelayConfig, stop: asyncio.Event) -> None:
    """Run a relay until ``stop`` is set, then drain and close (SIGTERM path)."""
    relay = Relay(config)
    await relay.start()
    try:
        await stop.wait()
        await relay.drain()
    finally:
        await relay.close()
