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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from relay.admission import Ticket
from relay.client_events import ClientEvents
from relay.config import RelayConfig
from relay.conversation import Turn
from relay.core import DRAIN_REASON, SessionCore
from relay.effects import (
    CLIENT,
    Abort,
    Close,
    Dial,
    Effect,
    Finished,
    Handover,
    Happened,
    Promote,
    Reading,
    Timer,
    ToolEvent,
    Write,
)
from relay.errors import UpstreamError
from relay.greeting import greeting_response
from relay.metrics import Metrics
from relay.policy import SessionPolicy
from relay.record_items import ConnectionRecord
from relay.record_writer import Recorder
from relay.session_setup import SessionSetup, SessionSetups
from relay.tokens import Claims
from relay.tool_calls import seed_events as tool_seed_events
from relay.tool_runner import ToolRunner
from relay.tools.builtins import ToolContext
from relay.upstream import UpstreamConnection, open_upstream

__all__ = ["DRAIN_REASON", "RelaySession", "SessionContext"]

logger = logging.getLogger(__name__)

monotonic: Final = time.monotonic
#: Bound of a resume's conversation load (it flushes first, so at most twice this).
HISTORY_LOAD_SECONDS: Final = 1.0
#: Bound of reading the session's bot and persona (a table read); late, the operator's
#: agent runs.
SETUP_LOAD_SECONDS: Final = 2.0
#: Bound of the records flush before a handover closes the client.
HANDOVER_FLUSH_SECONDS: Final = 1.0
#: Socket write-buffer marks: beyond HIGH the other leg stops being read.
WRITE_HIGH: Final = 256 * 1024
WRITE_LOW: Final = 64 * 1024
#: What the core reports → the counter it moves.
_COUNTED: Final = {
    "upstream failed": "UpstreamErrors",
    "rollover failed": "UpstreamErrors",
    "queue overflow": "QueueOverflows",
    "re-attach buffer overflow": "ReattachOverflows",
    "session resumed": "SessionsResumed",
    "rollover: switched to the fresh upstream": "Rollovers",
    "client cut": "ClientsCut",
}
_WARNINGS: Final = frozenset({"upstream failed", "rollover failed", "client cut"})


Dialer = Callable[..., Awaitable[UpstreamConnection]]


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What every session of a process shares: the configuration, passed whole."""

    config: RelayConfig
    policy: SessionPolicy
    #: The operator's agent and relay tools, and each bot's persona (resolved per session).
    setups: SessionSetups
    metrics: Metrics
    recorder: Recorder
    #: Opens an upstream connection (a seam: benchmarks and tests may hand over their own).
    dial: Dialer = open_upstream


class RelaySession(asyncio.Protocol):
    """One relayed session: the client's protocol and its upstream legs' listener."""

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
        self._started = monotonic()
        self._client: asyncio.Transport | None = None
        self._upstream: asyncio.Transport | None = None
        self._current_leg = 1
        self._legs: dict[int, UpstreamConnection] = {}
        self._dials: dict[int, asyncio.Task[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._handover: asyncio.Task[None] | None = None
        self._runner: ToolRunner | None = None
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

    @property
    def detached_at(self) -> float:
        """When the client vanished (the core's clock)."""
        return self.core.detached_at

    @property
    def holdable(self) -> bool:
        """Whether a vanished client may re-attach."""
        return self.core.holdable

    @holdable.setter
    def holdable(self, value: bool) -> None:
        if not value:
            self._apply(self.core.stop_holding(monotonic()))

    @property
    def record(self) -> ConnectionRecord:
        """The current client connection's record."""
        return self.core.record

    @property
    def duration(self) -> float:
        """Seconds since the 101."""
        return monotonic() - self._started

    # Lifecycle

    def start(self, transport: asyncio.Transport, leftover: bytes) -> None:
        """Take over the client socket after the 101 and start dialling the model."""
        self._client = transport
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        self._log("session opened", jti=self.claims.jti, model=self.model)
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

    # Client leg: asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Unused: the server hands the transport over with ``start()``."""

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

    def eof_received(self) -> bool | None:
        """The client half-closed: close our side too."""
        return None

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
                self._happened(effect)
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

    def _happened(self, event: Happened) -> None:
        counter = _COUNTED.get(event.what)
        if counter is not None:
            self._metrics.count(counter)
        level = logging.WARNING if event.what in _WARNINGS else logging.INFO
        self._log(event.what, level=level, **event.fields)

    # Upstream legs

    async def _dial(self, leg: int, load_history: bool) -> None:
        config = self.context.config
        dialled = monotonic()
        primary = leg == 1
        history_task = (
            self._loop.create_task(
                self.context.recorder.load_turns(self.claims.sub, timeout=HISTORY_LOAD_SECONDS)
            )
            if load_history
            else None
        )
        setup_task = self._loop.create_task(self._resolve_setup(load_history)) if primary else None
        history: Sequence[Turn] = ()
        setup: tuple[SessionSetup, list[dict[str, Any]]] | None = None
        try:
            async with asyncio.timeout(config.open_timeout):
                connection = await self.context.dial(
                    url=config.upstream_url, model=self.model, api_key=config.openai_api_key
                )
            if history_task is not None:
                history = await history_task
            if setup_task is not None:
                setup = await setup_task
        except TimeoutError:
            return self._dial_failed(leg, UpstreamError("the model did not answer in time"))
        except OSError as exc:
            reason = f"cannot reach the model: {exc.strerror or exc}"
            return self._dial_failed(leg, UpstreamError(reason))
        except UpstreamError as exc:
            return self._dial_failed(leg, exc)
        except Exception:  # a dial task is a boundary: the session hears of every failure
            logger.exception("upstream dial failed unexpectedly", extra={"session_id": self.id})
            return self._dial_failed(leg, UpstreamError("internal error while reaching the model"))
        finally:
            for task in (history_task, setup_task):
                if task is not None and not task.done():
                    task.cancel()
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
            self._log("upstream connected", connect_ms=round((monotonic() - dialled) * 1000))
        extra_seeds: list[bytes] = []
        if setup is not None:
            extra_seeds = self._configure(*setup)
        leftover = connection.attach(self if current else _SideLeg(self, leg))
        now = monotonic()
        self._apply(self.core.upstream_opened(leg, history, now, extra_seeds))
        if setup is not None and setup[0].greeting and not history and not setup[1]:
            # Once, when a session starts in a meeting: a resumed one has its history.
            self._apply(self.core.send_upstream(greeting_response(setup[0].greeting), now))
        if leftover:
            if current:
                self.upstream_data_received(leftover)
            else:
                self._apply(self.core.leg_data(leg, leftover, monotonic()))
        return None

    async def _resolve_setup(self, load_history: bool) -> tuple[SessionSetup, list[dict[str, Any]]]:
        """The session's bot, persona and tools, and its earlier tool calls (resume)."""
        calls = await self.context.recorder.load_tool_calls(self.claims.sub) if load_history else []
        executed = [call["call_id"] for call in calls]
        try:
            async with asyncio.timeout(SETUP_LOAD_SECONDS):
                setup = await self.context.setups.resolve(self.claims.sub, executed=executed)
        except TimeoutError:
            logger.warning("the session's bot was not read in time", extra={"sub": self.claims.sub})
            setup = self.context.setups.operator(executed=executed)
        return setup, calls

    def _configure(self, setup: SessionSetup, calls: list[dict[str, Any]]) -> list[bytes]:
        """Apply the session's setup; the finished tool calls to replay (resume)."""
        self.core.configure(setup.agent_update, watch_tools=setup.registry is not None)
        self._events.tools = setup.tracker
        if setup.registry is None or setup.tracker is None:
            return []
        self._runner = ToolRunner(
            setup.registry,
            setup.tracker,
            ToolContext(session_id=self.claims.sub, bot_id=setup.bot_id),
            send_upstream=self._send_tool_event,
            on_start=lambda call: self.core.record.tool_call(
                call_id=call.call_id, name=call.name, arguments=call.arguments
            ),
            on_result=lambda call, result: self.core.record.tool_call(
                call_id=call.call_id, name=call.name, arguments=call.arguments, output=result.output
            ),
        )
        seeds: list[bytes] = []
        for call in calls:
            if isinstance(call.get("output"), str):
                seeds += tool_seed_events(
                    call["call_id"],
                    str(call.get("name")),
                    str(call.get("arguments")),
                    call["output"],
                )
        return seeds

    async def _send_tool_event(self, event: bytes) -> None:
        self._apply(self.core.send_upstream(event, monotonic()))

    def _dial_failed(self, leg: int, error: UpstreamError) -> None:
        if self._dials.pop(leg, None) is not None:
            self._apply(self.core.dial_failed(leg, error, monotonic()))

    def _promote(self, leg: int) -> None:
        """A rollover switched: ``leg`` is current, the old current leg is retiring."""
        old = self._legs.get(self._current_leg)
        if old is not None:
            old.attach(_SideLeg(self, self._current_leg))
        self._current_leg = leg
        new = self._legs.get(leg)
        self._upstream = new.transport if new is not None else None
        if new is not None:
            new.attach(self)

    def _leg_lost(self, leg: int) -> None:
        self._legs.pop(leg, None)
        if not self.core.finished:
            self._apply(self.core.upstream_lost(leg, monotonic()))

    async def _hand_over(self, handover: Handover) -> None:
        """Records out first, so the task that takes the session over reads all of them."""
        await self.context.recorder.flush(HANDOVER_FLUSH_SECONDS)
        self._metrics.count("SessionsHandedOver")
        self._apply(self.core.shutdown(handover.code, handover.reason, monotonic()))

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
        core = self.core
        stats = self.context.recorder.stats()
        self._log(
            "session closed",
            jti=self.claims.jti,
            model=self.model,
            close_code=core.close_code,
            close_reason=core.close_reason,
            upstream_close_code=core.upstream_close_code,
            duration_ms=round(self.duration * 1000),
            frames_up=core.frames_up,
            frames_down=core.frames_down,
            bytes_up=core.bytes_up,
            bytes_down=core.bytes_down,
            reattached=core.reattached,
            rollovers=core.rollovers,
            turns=len(core.record.conversation),
            records_written=stats.written,
            records_dropped=stats.dropped,
            record_write_failures=stats.failed_attempts,
        )
        self._on_finished(self)

    def _log(self, message: str, *, level: int = logging.INFO, **fields: object) -> None:
        logger.log(
            level,
            message,
            extra={"session_id": self.id, "sub": self.claims.sub, **fields},
        )


class _SideLeg:
    """The listener of an upstream leg that is not the current one (standby, retiring)."""

    __slots__ = ("leg", "session")

    def __init__(self, session: RelaySession, leg: int) -> None:
        self.session = session
        self.leg = leg

    def upstream_data_received(self, data: bytes) -> None:
        """Bytes from the standby or a retiring leg."""
        session = self.session
        session._apply(session.core.leg_data(self.leg, data, monotonic()))

    def upstream_connection_lost(self, exc: Exception | None) -> None:
        """The leg is gone."""
        self.session._leg_lost(self.leg)

    def upstream_pause_writing(self) -> None:
        """Only set-up events and close frames are written here."""

    def upstream_resume_writing(self) -> None:
        """Only set-up events and close frames are written here."""
