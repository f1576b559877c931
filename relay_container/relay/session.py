"""RelaySession: the asyncio shell around one ``SessionCore``: sockets, dials, one timer.

The session is the client socket's asyncio protocol and the listener of its upstream
connections. It moves bytes and effects and decides nothing: every socket event and the
timer become one input of the sans-I/O core (``relay.core``), and what the core returns is
carried out in order (``relay.effects``). On the per-message path that is one call into
the core and one write, with no task, coroutine or JSON decode per frame.

It owns the asyncio parts the core cannot: the dial tasks (one per upstream leg, each
bounded by ``open_timeout``; a resume's conversation loads beside the first), the single
timer armed for the core's earliest deadline, the handover task (records flushed, then
the client told to reconnect), the log lines and counters for what the core reports, and
the admission ticket released when the core says the session is finished.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Final

from relay.admission import Ticket
from relay.bill_exit import CLOSE_CODE, close_reason, leave_meeting, meter_for
from relay.client_events import ClientEvents
from relay.conversation import Turn
from relay.core import SessionCore
from relay.core_moves import DRAIN_REASON
from relay.dialer import SideLeg, open_leg
from relay.effects import (
    CLIENT,
    Abort,
    Close,
    Dial,
    Effect,
    Finished,
    Handover,
    Happened,
    LeaveCall,
    Promote,
    Reading,
    Timer,
    ToolEvent,
    Write,
)
from relay.errors import UpstreamError
from relay.meeting_events import MeetingEvent
from relay.record_items import ConnectionRecord
from relay.session_context import SessionContext
from relay.session_report import SessionReport
from relay.session_setup import start_tools
from relay.tokens import Claims
from relay.tool_runner import ToolRunner
from relay.upstream import UpstreamConnection

__all__ = ["DRAIN_REASON", "RelaySession", "SessionContext"]

logger = logging.getLogger(__name__)

monotonic: Final = time.monotonic
#: Bound of the records flush before a handover closes the client.
HANDOVER_FLUSH_SECONDS: Final = 1.0
#: Socket write-buffer marks: beyond HIGH the other leg stops being read.
WRITE_HIGH: Final = 256 * 1024
WRITE_LOW: Final = 64 * 1024


class RelaySession(asyncio.Protocol):
    """One relayed session: the client's protocol and its upstream legs' listener (the
    server hands it the client with :meth:`start`; asyncio's defaults do the rest)."""

    def __init__(
        self,
        context: SessionContext,
        *,
        claims: Claims,
        ticket: Ticket,
        model: str,
        on_finished: Callable[[RelaySession], None],
        resume: bool = False,
    ) -> None:
        self.context = context
        self.claims = claims
        self.model = model
        self.id = uuid.uuid4().hex[:16]
        self.connection_id = self.id
        self._ticket = ticket
        self._on_finished = on_finished
        self._loop = asyncio.get_running_loop()
        self._metrics = context.metrics
        self._report = SessionReport(context.metrics, session_id=self.id, sub=claims.sub)
        self._started = monotonic()
        self._client: asyncio.Transport | None = None
        self._upstream: asyncio.Transport | None = None
        self._current_leg = 1
        self._legs: dict[int, UpstreamConnection] = {}
        self._dials: dict[int, asyncio.Task[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._handover: asyncio.Task[None] | None = None
        self._runner: ToolRunner | None = None
        #: The Recall bot of the session, once its setup is resolved (None: not a bot's).
        self.bot_id: str | None = None
        #: The bot's leave request once its bill ran out (not cancelled: the bot must go).
        self._leaving_call: asyncio.Task[None] | None = None
        #: Checks the client's events; its tool guard covers every relay tool from the start.
        self._events = ClientEvents(
            context.policy, model=model, session_id=self.id, tools=context.setups.guard()
        )
        self.core = SessionCore(
            context.config,
            self._events,
            agent_update=context.setups.default_update,
            new_record=self._new_record,
            resume=resume,
            ping_payload=os.urandom(8),
        )

    # What the server reads and sets

    @property
    def finished(self) -> bool:
        """Both legs closed."""
        return self.core.finished

    @property
    def detached(self) -> bool:
        """The client vanished and may re-attach."""
        return self.core.detached

    def stop_holding(self) -> None:
        """Drain: nobody may re-attach any more; a detached session ends now."""
        self._apply(self.core.stop_holding(monotonic()))

    @property
    def record(self) -> ConnectionRecord:
        """The current client connection's record."""
        return self.core.record

    # Lifecycle

    def start(self, transport: asyncio.Transport, leftover: bytes) -> None:
        """Take over the client socket after the 101 and start dialling the model."""
        self._client = transport
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        self._report.log("session opened", jti=self.claims.jti, model=self.model)
        self._apply(self.core.start(monotonic()))
        if leftover:
            self.data_received(leftover)

    def shutdown(self, code: int = 1001, reason: str = DRAIN_REASON) -> None:
        """Close both legs (drain deadline): the client gets ``code`` and ``reason``."""
        self._apply(self.core.shutdown(code, reason, monotonic()))

    def leave(self, within: float) -> None:
        """This task is leaving: move the session at its next turn boundary, or in ``within`` s."""
        self._apply(self.core.leave(monotonic(), within))

    def reattach(self, transport: asyncio.Transport, leftover: bytes) -> None:
        """A new client socket for this detached session: held frames first, then live."""
        self._client = transport
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        self._apply(self.core.reattach(monotonic()))
        if leftover:
            self.data_received(leftover)

    def meeting_event(self, event: MeetingEvent) -> None:
        """A verified event of this session's meeting (``MeetingEndpoint.deliver``)."""
        if not self.core.finished:
            self._apply(self.core.meeting_event(event, monotonic()))

    # Client leg: asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        """Client bytes: checked by the core and forwarded to the model."""
        core = self.core
        started = monotonic()
        frames = core.frames_up
        out = core.client_data(data, started)
        if isinstance(out, bytes):
            if out:
                upstream = self._upstream
                assert upstream is not None
                upstream.write(out)
                self._metrics.delay.observe(monotonic() - started, core.frames_up - frames)
        else:
            self._apply(out)

    def connection_lost(self, exc: Exception | None) -> None:
        """The client socket is gone."""
        self._client = None
        if not self.core.finished:
            self._apply(self.core.client_lost(monotonic()))

    def pause_writing(self) -> None:
        """The client reads slower than the model talks."""
        self._apply(self.core.client_writable(False, monotonic()))

    def resume_writing(self) -> None:
        """The client caught up."""
        self._apply(self.core.client_writable(True, monotonic()))

    # Current upstream leg: UpstreamListener

    def upstream_data_received(self, data: bytes) -> None:
        """Model bytes: recorded by the core when they matter, forwarded unchanged."""
        core = self.core
        started = monotonic()
        frames = core.frames_down
        out = core.upstream_data(data, started)
        if isinstance(out, bytes):
            if out:
                client = self._client
                if client is not None:
                    client.write(out)
                    self._metrics.delay.observe(monotonic() - started, core.frames_down - frames)
        else:
            self._apply(out)

    def upstream_connection_lost(self, exc: Exception | None) -> None:
        """The current model connection is gone."""
        self._leg_lost(self._current_leg)

    def upstream_pause_writing(self) -> None:
        """The model reads slower than the client sends."""
        self._apply(self.core.upstream_writable(False, monotonic()))

    def upstream_resume_writing(self) -> None:
        """The model caught up."""
        self._apply(self.core.upstream_writable(True, monotonic()))

    # Effects

    def _apply(self, effects: Sequence[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Write):
                transport = self._transport(effect.leg)
                if transport is not None:
                    transport.write(effect.data)
            elif isinstance(effect, Timer):
                self._arm(effect.at)
            elif isinstance(effect, Happened):
                self._report.happened(effect)
            elif isinstance(effect, Close | Abort):
                self._end_leg(effect)
            elif isinstance(effect, Reading):
                transport = self._transport(effect.leg)
                if transport is not None:
                    (transport.resume_reading if effect.on else transport.pause_reading)()
            elif isinstance(effect, Dial):
                task = self._loop.create_task(self._dial(effect.leg, effect.load_history))
                self._dials[effect.leg] = task
            elif isinstance(effect, Promote):
                self._promote(effect.leg)
            elif isinstance(effect, ToolEvent):
                if self._runner is not None:
                    self._runner.on_upstream(effect.kind, effect.payload)
            elif isinstance(effect, Handover):
                self._handover = self._loop.create_task(self._hand_over(effect))
            elif isinstance(effect, LeaveCall):
                self._leaving_call = self._loop.create_task(self._leave_meeting(effect.limit))
            elif isinstance(effect, Finished):
                self._finish()

    def _transport(self, leg: int) -> asyncio.Transport | None:
        if leg == CLIENT:
            return self._client
        connection = self._legs.get(leg)
        return connection.transport if connection is not None else None

    def _end_leg(self, effect: Close | Abort) -> None:
        dial = self._dials.pop(effect.leg, None)
        if dial is not None:
            dial.cancel()
        transport = self._transport(effect.leg)
        if transport is not None:
            (transport.close if isinstance(effect, Close) else transport.abort)()

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if at != math.inf:
            self._timer = self._loop.call_later(max(0.0, at - monotonic()), self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._apply(self.core.tick(monotonic()))

    # Upstream legs

    async def _dial(self, leg: int, load_history: bool) -> None:
        dialled = monotonic()
        try:
            opened = await open_leg(
                self.context.config,
                self.context.dial,
                model=self.model,
                subject=self.claims.sub,
                recorder=self.context.recorder,
                setups=self.context.setups if leg == 1 else None,
                load_history=load_history,
            )
        except UpstreamError as exc:
            return self._dial_failed(leg, exc)
        except Exception:  # a dial task is a boundary: the session hears of every failure
            logger.exception("upstream dial failed unexpectedly", extra={"session_id": self.id})
            return self._dial_failed(leg, UpstreamError("internal error while reaching the model"))
        connection = opened.connection
        if self._dials.pop(leg, None) is None or connection.transport is None:
            if connection.transport is not None:
                connection.transport.abort()  # abandoned while it connected
            return None
        connection.transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        self._legs[leg] = connection
        current = leg == self.core.up.leg
        if current:
            self._upstream = connection.transport
            self._current_leg = leg
            self._report.log("upstream connected", connect_ms=round((monotonic() - dialled) * 1000))
        extra_seeds: list[bytes] = []
        setup = opened.setup
        if setup is not None:
            self.bot_id = setup.bot_id
            self.core.configure(
                setup.agent_update,
                watch_tools=setup.registry is not None,
                gate=setup.gate,
                meter=meter_for(setup, self.model, opened.spent, monotonic()),
                meeting=setup.meeting,
            )
            self._events.tools = setup.tracker
            self._runner, extra_seeds = start_tools(
                setup,
                opened.tool_calls,
                session_id=self.claims.sub,
                send_upstream=self._send_tool_event,
                record=lambda **call: self.core.record.tool_call(**call),
            )
        leftover = connection.attach(
            self if current else SideLeg(leg, self._side_data, self._leg_lost)
        )
        now = monotonic()
        self._apply(self.core.upstream_opened(leg, opened.history, now, extra_seeds))
        greeting = opened.greeting()
        if greeting is not None:
            self._apply(self.core.send_upstream(greeting, now))
        if leftover:
            if current:
                self.upstream_data_received(leftover)
            else:
                self._side_data(leg, leftover)
        return None

    async def _send_tool_event(self, event: bytes) -> None:
        self._apply(self.core.send_upstream(event, monotonic()))

    def _dial_failed(self, leg: int, error: UpstreamError) -> None:
        if self._dials.pop(leg, None) is not None:
            self._apply(self.core.dial_failed(leg, error, monotonic()))

    def _promote(self, leg: int) -> None:
        """A rollover switched: ``leg`` is current, the old current leg is retiring."""
        old = self._legs.get(self._current_leg)
        if old is not None:
            old.attach(SideLeg(self._current_leg, self._side_data, self._leg_lost))
        self._current_leg = leg
        new = self._legs.get(leg)
        self._upstream = new.transport if new is not None else None
        if new is not None:
            new.attach(self)

    def _side_data(self, leg: int, data: bytes) -> None:
        self._apply(self.core.leg_data(leg, data, monotonic()))

    def _leg_lost(self, leg: int) -> None:
        self._legs.pop(leg, None)
        if not self.core.finished:
            self._apply(self.core.upstream_lost(leg, monotonic()))

    async def _hand_over(self, handover: Handover) -> None:
        """Records out first, so the task that takes the session over reads all of them."""
        await self.context.recorder.flush(HANDOVER_FLUSH_SECONDS)
        self._metrics.count("SessionsHandedOver")
        self._apply(self.core.shutdown(handover.code, handover.reason, monotonic()))

    async def _leave_meeting(self, limit: str) -> None:
        """The bill ran out and the goodbye was said: the bot leaves, the session ends."""
        context = self.context
        await leave_meeting(
            context.meeting_exit,
            self.bot_id,
            limit,
            session_id=self.claims.sub,
            metrics=self._metrics,
        )
        if not self.core.finished:
            self._apply(self.core.shutdown(CLOSE_CODE, close_reason(limit), monotonic()))

    # Outcome

    def _new_record(self, history: Sequence[Turn]) -> ConnectionRecord:
        if history:  # a re-attach: a new client connection of the same session
            self.connection_id = uuid.uuid4().hex[:16]
        return self.context.recorder.connection_started(
            session_id=self.claims.sub,
            connection_id=self.connection_id,
            model=self.model,
            history=history,
        )

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in self._dials.values():
            task.cancel()
        self._dials.clear()
        if self._runner is not None:
            self._runner.cancel()
        self._ticket.release()
        self._report.closed(
            self.core,
            self.context.recorder.stats(),
            jti=self.claims.jti,
            model=self.model,
            duration=monotonic() - self._started,
        )
        self._on_finished(self)
