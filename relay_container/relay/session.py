"""RelaySession: the asyncio shell around one ``SessionCore``: sockets, dials, one timer.

The session is the client socket's asyncio protocol and the listener of its upstream
connections. It moves bytes and effects and decides nothing: every socket event and the
timer become one input of the sans-I/O core (``relay.core``), and what the core returns is
carried out in order (``relay.effects``). On the per-message path that is one call into
the core and one write, with no task, coroutine or JSON decode per frame.

It owns the asyncio parts the core cannot: the upstream legs (``relay.session_legs``: one
dial task per leg, each bounded by ``open_timeout``; a resume's conversation and the
session's setup load beside the first), the single
timer armed for the core's earliest deadline, the handover and the bill's exit
(``relay.session_exits``), the log lines and counters for what the core reports, and
the admission ticket released when the core says the session is finished.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Final

from relay.admission import Ticket
from relay.client_events import ClientEvents
from relay.conversation import Turn
from relay.core import SessionCore
from relay.core_moves import DRAIN_REASON
from relay.effects import (
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
from relay.meeting_events import MeetingEvent
from relay.record_items import ConnectionRecord
from relay.session_context import SessionContext
from relay.session_exits import SessionExits
from relay.session_legs import WRITE_HIGH, WRITE_LOW, SessionLegs
from relay.session_report import SessionReport
from relay.tokens import Claims

__all__ = ["DRAIN_REASON", "RelaySession", "SessionContext"]

monotonic: Final = time.monotonic


class RelaySession(SessionLegs):
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
        super().__init__()  # the upstream legs: none yet
        self._started = monotonic()
        self._client: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: The handover and the bill's exit, each a task (not cancelled: the bot must go).
        self._exits = SessionExits(context, session_id=claims.sub, end=self._end)
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
                self._start_dial(effect.leg, effect.load_history)
            elif isinstance(effect, Promote):
                self._promote(effect.leg)
            elif isinstance(effect, ToolEvent):
                if self._runner is not None:
                    self._runner.on_upstream(effect.kind, effect.payload)
            elif isinstance(effect, Handover):
                self._exits.hand_over(effect)
            elif isinstance(effect, LeaveCall):
                self._exits.leave_meeting(self.bot_id, effect.limit)
            elif isinstance(effect, Finished):
                self._finish()

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if at != math.inf:
            self._timer = self._loop.call_later(max(0.0, at - monotonic()), self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._apply(self.core.tick(monotonic()))

    def _end(self, code: int, reason: str) -> None:
        """End the session on purpose (``SessionExits``), unless it finished already."""
        if not self.core.finished:
            self._apply(self.core.shutdown(code, reason, monotonic()))

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
        self._cancel_legs()
        self._ticket.release()
        self._report.closed(
            self.core,
            self.context.recorder.stats(),
            jti=self.claims.jti,
            model=self.model,
            duration=monotonic() - self._started,
        )
        self._on_finished(self)
