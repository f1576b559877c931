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
process and per peer address, and a new connection always gets a place: at a bound the
oldest pending connection (of that peer, else of all) is cut. Idle sockets therefore
cannot lock out ``/healthz`` or new sessions; a request that arrives in one segment, as
a health check's does, is answered before it could become the oldest.

A client whose token subject has a *detached* session here (it vanished without a close
frame less than RELAY_REATTACH_SECONDS ago) is re-attached to it: no admission (it holds
its place already), same upstream session. Otherwise, a subject with no live session here
gets a session that resumes the stored conversation (``RelaySession(resume=True)``).

Meeting events (Recall's real-time messages) go through ``Relay.router``
(``relay.meeting_router``): to a live session here, else to the task that holds the
session. With a table, the relay also listens on RELAY_INTERNAL_PORT for events other
tasks forward, and records itself as the owner of each subject whose first session starts
here (released when its last one ends; docs/design/meeting-routing.md).

Shutdown (``Relay.drain``), in order: /healthz turns 503 and new handshakes are refused;
detached sessions end at once (nobody can re-attach to them any more); live sessions
continue until they end or DRAIN_SECONDS pass; the rest are closed with 1001 "relay
draining: reconnect"; the session records still queued are flushed within what is left
of DRAIN_SECONDS (at most 10 s); the listener closes.
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
from websockets.server import ServerProtocol

from relay import pages, wire
from relay.admission import Admission
from relay.agent import AgentConfig, load_agent_config
from relay.auth import authenticate, select_subprotocol
from relay.bot_binding import BindingStore
from relay.config import RelayConfig
from relay.errors import DrainingError, ForbiddenError, RelayError
from relay.handshake import (
    HandshakeConnection,
    parse_query,
    peer_name,
    refusal,
    write_response,
)
from relay.internal_listener import InternalListener, LocalDelivery
from relay.leaving import BotoEcs, LeaveReason, LeaveWatcher
from relay.meeting_router import MeetingRouter, RouterLimits
from relay.meeting_routes import RouteLimits
from relay.metrics import Metrics
from relay.owner_registry import NoRegistry, OwnerDirectory, OwnerRegistry
from relay.policy import SessionPolicy
from relay.protection import TaskProtection
from relay.record_writer import open_recorder
from relay.recorder import Recorder
from relay.session import DRAIN_REASON, RelaySession, SessionContext
from relay.session_setup import SessionSetups
from relay.task_address import advertised_host
from relay.tools.registry import build_registry

logger = logging.getLogger(__name__)

#: Longest flush of the session records during a drain.
RECORDS_FLUSH_SECONDS: Final = 10.0

REALTIME_PATH: Final = "/v1/realtime"

#: websockets logs request headers (tokens among them) at DEBUG: never enable it here.
_quiet = logging.getLogger("relay.server.handshake")
_quiet.setLevel(logging.WARNING)


def per_message_path_compiled() -> bool:
    """Whether wire, session and metrics run as mypyc extensions (the image's build; they are
    compiled together, so one stands for all three)."""
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
        self.setups = SessionSetups(
            self.agent,
            build_registry(
                self.agent.tools,
                slow_tools=self.agent.slow_tools,
                recall_api_key=config.recall_api_key,
                recall_region=config.recall_region,
                recall_api_base=config.recall_api_base,
                signing_secret=config.tool_signing_secret,
                table_name=config.table_name,
                retention_days=config.record_retention_days,
            ),
            BindingStore(config.table_name) if config.table_name else None,
        )
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
        )
        self.static_dir: Path = config.static_dir
        self.draining = False
        self.sessions: set[RelaySession] = set()
        #: Handshakes in progress, oldest first, overall and per peer address.
        self._pending: dict[HandshakeConnection, None] = {}
        self._pending_by_peer: dict[str, dict[HandshakeConnection, None]] = {}
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        # Meeting events: the router in front of the local delivery; the registry and the
        # internal listener come up in start() when there is a table to share.
        self.registry: OwnerDirectory = NoRegistry()
        self.internal: InternalListener | None = None
        self._meeting_delivery = meeting_delivery or _no_meeting_delivery
        self.router = MeetingRouter(
            self._meeting_delivery,
            self.registry,
            config.token_secret,
            max_event_bytes=config.max_frame_bytes,
            limits=RouterLimits(
                route=RouteLimits(
                    max_events=config.meeting_backlog_events,
                    max_wait_seconds=config.meeting_wait_seconds,
                ),
                open_timeout=min(3.0, config.open_timeout),
            ),
            count=self.metrics.count,
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
        await self._start_meeting_routing()
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

    async def _start_meeting_routing(self) -> None:
        """With a table: the internal listener, then the owner registry at its address."""
        config = self.config
        if not config.table_name:
            return
        self.internal = InternalListener(
            config.host,
            config.internal_port,
            config.token_secret,
            self._meeting_delivery,
            max_event_bytes=config.max_frame_bytes,
            close_timeout=config.close_timeout,
        )
        await self.internal.start()
        host = await advertised_host(config.host, config.ecs_metadata_uri, config.open_timeout)
        registry = OwnerRegistry(
            config.table_name,
            address=f"{host}:{self.internal.port}",
            session_seconds=config.max_session_seconds,
        )
        registry.start()
        self.registry = self.router.registry = registry
        logger.info("meeting routing ready", extra={"internal_address": registry.address})

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
        # 1. /healthz → 503 (the balancer stops routing) and new handshakes → 503;
        # detached sessions end now, and a client that vanishes from now on ends its own.
        self.draining = True
        logger.info(
            "relay draining", extra={"live_sessions": len(self.sessions), "drain_seconds": deadline}
        )
        for session in list(self.sessions):
            session.holdable = False
        # 2. Live sessions move to another task at their next turn boundary (the page
        # reconnects on 1001 and resumes from the table there), or end by themselves.
        margin = max(0.75 * deadline, deadline - self.config.close_timeout - 1.0)
        handover = min(self.config.handover_seconds, margin)
        for session in list(self.sessions):
            if not session.finished:
                session.leave(handover)
        try:
            async with asyncio.timeout(deadline):
                await self._idle.wait()
        except TimeoutError:
            pass
        # 3. Close the rest with 1001 and a reason the page can act on.
        remaining = list(self.sessions)
        for session in remaining:
            session.shutdown(1001, DRAIN_REASON)
        if remaining:
            try:
                async with asyncio.timeout(self.config.close_timeout + 1):
                    await self._idle.wait()
            except TimeoutError:
                logger.warning(
                    "sessions still open after drain", extra={"live_sessions": len(self.sessions)}
                )
        # 4. What the sessions recorded goes out before SIGKILL can take it; so do the
        # owner releases (other tasks then stop forwarding meeting events here).
        if isinstance(self.registry, OwnerRegistry):
            await self.registry.flush(max(0.5, min(2.0, ends_at - loop.time())))
        flushed = await self.recorder.flush(
            max(0.5, min(RECORDS_FLUSH_SECONDS, ends_at - loop.time()))
        )
        stats = self.recorder.stats()
        logger.info(
            "relay drained",
            extra={
                "closed_at_deadline": len(remaining),
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
        for session in list(self.sessions):
            session.shutdown(1001, DRAIN_REASON)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.config.close_timeout)
        await self.router.aclose()
        if self.internal is not None:
            await self.internal.aclose()
        if isinstance(self.registry, OwnerRegistry):
            await self.registry.flush(1.0)
            await self.registry.aclose()
        await self.recorder.aclose(1.0)
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
    def pending_handshakes(self) -> int:
        """Connections whose HTTP request is not complete yet."""
        return len(self._pending)

    def handshake_started(self, connection: HandshakeConnection) -> None:
        """Give a new connection a place, cutting the oldest pending one at a bound."""
        peer = connection.peer_host
        own = self._pending_by_peer.setdefault(peer, {})
        victim: HandshakeConnection | None = None
        if len(own) >= self.config.max_pending_handshakes_per_peer:
            victim = next(iter(own))
        elif len(self._pending) >= self.config.max_pending_handshakes:
            victim = next(iter(self._pending))
        if victim is not None:
            victim.evict()
        self._pending[connection] = None
        self._pending_by_peer.setdefault(peer, {})[connection] = None

    def handshake_ended(self, connection: HandshakeConnection) -> None:
        """The connection's request was answered, or the connection is gone."""
        self._pending.pop(connection, None)
        own = self._pending_by_peer.get(connection.peer_host)
        if own is not None:
            own.pop(connection, None)
            if not own:
                del self._pending_by_peer[connection.peer_host]

    def _session_finished(self, session: RelaySession) -> None:
        self.sessions.discard(session)
        sub = session.claims.sub
        if not any(other.claims.sub == sub for other in self.sessions):
            self.router.session_ended(sub)
        if not self.sessions:
            self._idle.set()

    # Handshakes

    def handle_request(
        self, request: Request, transport: asyncio.Transport, leftover: bytes
    ) -> RelaySession | None:
        """Answer one request: a page, a refusal, or a 101 and a new session."""
        path = urlsplit(request.path).path
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
        held = self._detached_session(claims.sub)
        if held is not None:
            return self._reattach(held, request, transport, leftover)
        model = self._model(query)
        resume = self.admission.held_by(claims.sub) == 0
        ticket = self.admission.admit(claims.sub)
        try:
            protocol = ServerProtocol(
                select_subprotocol=lambda _p, offered: select_subprotocol(offered),
                max_size=self.config.max_frame_bytes,
                logger=_quiet,
            )
            response = protocol.accept(request)
        except BaseException:
            ticket.release()
            raise
        if response.status_code != 101:
            ticket.release()
            write_response(transport, response)
            return None
        transport.write(response.serialize())
        session = RelaySession(
            self.context,
            claims=claims,
            ticket=ticket,
            model=model,
            on_finished=self._session_finished,
            resume=resume,
        )
        self.sessions.add(session)
        self._idle.clear()
        self.metrics.count("SessionsStarted")
        transport.set_protocol(session)
        session.start(transport, leftover)
        self.router.session_started(claims.sub)
        return session

    def _detached_session(self, sub: str) -> RelaySession | None:
        """The most recently detached session of ``sub`` still held here, if any."""
        found: RelaySession | None = None
        for session in self.sessions:
            if (
                session.detached
                and not session.finished
                and session.claims.sub == sub
                and (found is None or session.detached_at > found.detached_at)
            ):
                found = session
        return found

    def _reattach(
        self,
        session: RelaySession,
        request: Request,
        transport: asyncio.Transport,
        leftover: bytes,
    ) -> RelaySession | None:
        """The 101, then the held session takes the socket (its model stays the same)."""
        protocol = ServerProtocol(
            select_subprotocol=lambda _p, offered: select_subprotocol(offered),
            max_size=self.config.max_frame_bytes,
            logger=_quiet,
        )
        response = protocol.accept(request)
        if response.status_code != 101:
            write_response(transport, response)
            return None
        transport.write(response.serialize())
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


def _no_meeting_delivery(session_id: str, payload: bytes) -> bool:
    """No session side for meeting events is wired in: no session here takes them."""
    return False
