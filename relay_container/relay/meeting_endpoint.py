"""MeetingEndpoint: the relay process's side of Recall's real-time meeting events.

Recall connects to ``/recall/events/`` (signed upgrades, ``relay.meeting_socket``); each
verified event goes through the router (``relay.meeting_router``): to a live session on
this process, else to the task that holds the session. With a table, this process also
listens on RELAY_INTERNAL_PORT for events other tasks forward (``relay.internal_listener``)
and records itself as the owner of each subject whose first session starts here, released
when its last one ends (``relay.owner_registry``; docs/design/meeting-routing.md).

``relay.server.Relay`` owns one and hands it the events upgrades, the sessions starting and
ending, and its drain and close.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from websockets.http11 import Request

from relay.config import RelayConfig
from relay.errors import DrainingError, RelayError
from relay.handshake import peer_name, refusal, write_response
from relay.internal_listener import InternalListener, LocalDelivery
from relay.meeting_events import MeetingEventError, parse_meeting_event
from relay.meeting_router import MeetingRouter, RouterLimits
from relay.meeting_routes import RouteLimits
from relay.meeting_socket import MeetingSocket, accept_meeting_socket
from relay.metrics import Metrics
from relay.owner_registry import NoRegistry, OwnerDirectory, OwnerRegistry
from relay.recall_signature import SeenIds
from relay.session import RelaySession
from relay.task_address import advertised_host

logger = logging.getLogger(__name__)


class MeetingEndpoint:
    """The events sockets, the router and (with a table) the internal listener and the
    owner registry of one relay process (see the module docstring)."""

    def __init__(
        self,
        config: RelayConfig,
        metrics: Metrics,
        sessions: Callable[[], Iterable[RelaySession]],
        delivery: LocalDelivery | None = None,
    ) -> None:
        """``sessions()``: the process's live sessions; ``delivery(session_id, payload)``
        hands an event to them (True: dealt with), :meth:`deliver` unless given."""
        self.config = config
        self.metrics = metrics
        self._sessions = sessions
        #: Recall's real-time events connections.
        self.sockets: set[MeetingSocket] = set()
        self._seen_upgrades = SeenIds()
        # The registry and the internal listener come up in start() with a table to share.
        self.registry: OwnerDirectory = NoRegistry()
        self.internal: InternalListener | None = None
        self._delivery = delivery or self.deliver
        self.router = MeetingRouter(
            self._delivery,
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
            count=metrics.count,
        )

    async def start(self) -> None:
        """With a table: the internal listener, then the owner registry at its address."""
        config = self.config
        if not config.table_name:
            return
        self.internal = InternalListener(
            config.host,
            config.internal_port,
            config.token_secret,
            self._delivery,
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

    async def flush(self, seconds: float) -> None:
        """The owner releases go out (other tasks then stop forwarding events here)."""
        if isinstance(self.registry, OwnerRegistry):
            await self.registry.flush(seconds)

    async def aclose(self) -> None:
        """Close the events sockets, the router, the listener and the registry."""
        for socket in list(self.sockets):
            socket.close()
        await self.router.aclose()
        if self.internal is not None:
            await self.internal.aclose()
        if isinstance(self.registry, OwnerRegistry):
            await self.registry.flush(1.0)
            await self.registry.aclose()

    # Sessions

    def session_started(self, session_id: str) -> None:
        """A session of ``session_id`` started here: its events come here."""
        self.router.session_started(session_id)

    def session_ended(self, session_id: str) -> None:
        """A session of ``session_id`` ended here; the router lets go of the subject when
        no other session of it is left."""
        if not any(other.claims.sub == session_id for other in self._sessions()):
            self.router.session_ended(session_id)

    # Events

    def route_meeting_event(self, session_id: str, payload: bytes) -> None:
        """One verified Recall real-time message for ``session_id``, from an events
        connection: to the session's task, this one or another (``relay.meeting_router``,
        which also holds it, bounded, for a session that has not opened yet)."""
        self.router.deliver(session_id, payload)

    def deliver(self, session_id: str, payload: bytes) -> bool:
        """One verified Recall real-time message for ``session_id``, parsed and handed to
        the live session(s) of that subject on this process (the router's local delivery).
        True when this process dealt with it: a session took it, or it was refused
        (malformed, naming another session or bot; counted, so it is not sent on). False:
        no session of it is here."""
        try:
            event = parse_meeting_event(payload)
        except MeetingEventError as error:
            return self._refused(session_id, str(error))
        if event.session_id != session_id:
            return self._refused(session_id, "event names another session")
        delivered = False
        for session in list(self._sessions()):
            if session.claims.sub != session_id or session.finished:
                continue
            if session.bot_id and event.bot_id and session.bot_id != event.bot_id:
                return self._refused(session_id, "event of another bot")
            session.meeting_event(event)
            delivered = True
        return delivered

    def _refused(self, session_id: str, reason: str) -> bool:
        self.metrics.count("MeetingEventsRefused")
        logger.warning("meeting event refused", extra={"session_id": session_id, "reason": reason})
        return True  # dealt with here: not for another task either

    # Sockets

    def open_socket(
        self, request: Request, transport: asyncio.Transport, leftover: bytes, *, draining: bool
    ) -> MeetingSocket | None:
        """An upgrade on the events path: a verified events socket, or a refusal written."""
        try:
            if draining:
                raise DrainingError("relay draining: reconnect to another relay")
            socket = accept_meeting_socket(
                self,
                request,
                transport,
                leftover,
                secret=self.config.recall_webhook_secret,
                seen=self._seen_upgrades,
            )
        except RelayError as error:
            self.metrics.count("MeetingSocketsRefused")
            logger.warning(
                "meeting events handshake refused",
                extra={
                    "status": error.http_status,
                    "reason": str(error),
                    "peer": peer_name(transport),
                },
            )
            write_response(transport, refusal(error))
            return None
        if socket is not None:
            self.sockets.add(socket)
        return socket

    def meeting_socket_ended(self, socket: MeetingSocket) -> None:
        """A Recall events connection closed."""
        self.sockets.discard(socket)
