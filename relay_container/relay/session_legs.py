"""SessionLegs: the asyncio side of a session's upstream legs, beside its client socket.

``relay.session.RelaySession`` is built on it. It dials each upstream leg the core asks for
(a ``Dial`` effect; ``relay.dialer.open_leg``, bounded by ``open_timeout``), keeps the
legs' transports by number, hands the first leg's setup (bot, persona, tools, bill,
meeting policy) to the core and starts the tool runner, attaches the current leg to the
session and any other leg (a rollover's standby, a retiring leg) through a ``SideLeg``,
swaps them when a rollover switches (``Promote``), and closes or aborts a leg (or cancels
its dial) when the core says so. Every outcome goes back into the core as one input.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Final, cast

from relay.bill_exit import meter_for
from relay.client_events import ClientEvents
from relay.core import SessionCore
from relay.dialer import OpenedLeg, SideLeg, open_leg
from relay.effects import CLIENT, Abort, Close, Effect
from relay.errors import UpstreamError
from relay.session_context import SessionContext
from relay.session_report import SessionReport
from relay.session_setup import start_tools
from relay.tokens import Claims
from relay.tool_runner import ToolRunner
from relay.upstream import UpstreamConnection, UpstreamListener

logger = logging.getLogger("relay.session")  # the session's log lines

monotonic: Final = time.monotonic

#: Socket write-buffer marks: beyond HIGH the other leg stops being read.
WRITE_HIGH: Final = 256 * 1024
WRITE_LOW: Final = 64 * 1024


class SessionLegs(asyncio.Protocol):
    """The upstream legs of one session (see the module docstring); the session's own
    inputs (``_apply``, ``upstream_data_received``) are ``RelaySession``'s."""

    context: SessionContext
    claims: Claims
    model: str
    id: str
    core: SessionCore
    _loop: asyncio.AbstractEventLoop
    _report: SessionReport
    _events: ClientEvents
    _client: asyncio.Transport | None

    def __init__(self) -> None:
        self._upstream: asyncio.Transport | None = None  # the current leg's
        self._current_leg = 1
        self._legs: dict[int, UpstreamConnection] = {}
        self._dials: dict[int, asyncio.Task[None]] = {}
        self._runner: ToolRunner | None = None
        #: The Recall bot of the session, once its setup is resolved (None: not a bot's).
        self.bot_id: str | None = None

    def _apply(self, effects: Sequence[Effect]) -> None:
        raise NotImplementedError

    def upstream_data_received(self, data: bytes) -> None:
        """Model bytes of the current leg."""
        raise NotImplementedError

    @property
    def _listener(self) -> UpstreamListener:
        """The current leg's listener: the session itself (``RelaySession`` is one)."""
        return cast(UpstreamListener, self)

    def _start_dial(self, leg: int, load_history: bool) -> None:
        self._dials[leg] = self._loop.create_task(self._dial(leg, load_history))

    def _cancel_legs(self) -> None:
        """The session finished: no dial goes on, the tool runner stops."""
        for task in self._dials.values():
            task.cancel()
        self._dials.clear()
        if self._runner is not None:
            self._runner.cancel()

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
        extra_seeds = self._configure(opened) if opened.setup is not None else []
        leftover = connection.attach(
            self._listener if current else SideLeg(leg, self._side_data, self._leg_lost)
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

    def _configure(self, opened: OpenedLeg) -> list[bytes]:
        """The first leg brought the session's setup: the core, the tool guard and the tool
        runner take it; returns the tool calls to replay after a resume's turns."""
        setup = opened.setup
        assert setup is not None
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
        return extra_seeds

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
            new.attach(self._listener)

    def _side_data(self, leg: int, data: bytes) -> None:
        self._apply(self.core.leg_data(leg, data, monotonic()))

    def _leg_lost(self, leg: int) -> None:
        self._legs.pop(leg, None)
        if not self.core.finished:
            self._apply(self.core.upstream_lost(leg, monotonic()))
