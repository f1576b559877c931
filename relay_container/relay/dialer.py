"""Opening a session's upstream legs: the model's socket, and what the first leg needs.

:func:`open_leg` dials one upstream leg within ``open_timeout``. For a session's first leg
it also loads, beside the dial and each bounded, the stored conversation (a resume) and the
session's setup (its bot, persona and tools; ``relay.session_setup``) with the tool calls
it already made, so the shell can configure the core before the model hears anything.
Every failure is one ``UpstreamError`` the session turns into its close code; a setup or
history that cannot be read costs the persona or the history, never the session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from relay.config import RelayConfig
from relay.conversation import Turn
from relay.errors import UpstreamError
from relay.greeting import greeting_response
from relay.recorder import Recorder
from relay.session_setup import SessionSetup, SessionSetups
from relay.upstream import UpstreamConnection
from relay.usage_meter import Spent

logger = logging.getLogger(__name__)

#: Bound of a resume's conversation load (it flushes first, so at most twice this).
HISTORY_LOAD_SECONDS: Final = 1.0
#: Bound of reading the session's bot and persona (a table read); late, the operator's
#: agent runs.
SETUP_LOAD_SECONDS: Final = 2.0

Dialer = Callable[..., Awaitable[UpstreamConnection]]


@dataclass(slots=True)
class OpenedLeg:
    """A dialled upstream leg, and for a session's first leg what it starts with."""

    connection: UpstreamConnection
    history: Sequence[Turn] = ()
    setup: SessionSetup | None = None
    #: The session's stored tool call records (``storage.items.ToolCallRecord``), oldest first.
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    #: What the session used of its bill before (a resume).
    spent: Spent = field(default_factory=Spent)

    def greeting(self) -> bytes | None:
        """The ``response.create`` that greets a meeting: only when a session starts there
        (a resumed one has its history or tool calls)."""
        if self.setup is None or not self.setup.greeting or self.history or self.tool_calls:
            return None
        return greeting_response(self.setup.greeting)


async def open_leg(
    config: RelayConfig,
    dial: Dialer,
    *,
    model: str,
    subject: str,
    recorder: Recorder,
    setups: SessionSetups | None,
    load_history: bool,
) -> OpenedLeg:
    """Dial one upstream leg; ``setups`` given: also resolve the session's setup.

    Raises:
        UpstreamError: the model could not be reached, refused, or did not answer in time.
    """
    loop = asyncio.get_running_loop()
    history_task = (
        loop.create_task(recorder.load_turns(subject, timeout=HISTORY_LOAD_SECONDS))
        if load_history
        else None
    )
    setup_task = (
        loop.create_task(_setup(setups, subject, recorder, load_history)) if setups else None
    )
    spent_task = loop.create_task(recorder.load_spent(subject)) if setups and load_history else None
    try:
        try:
            async with asyncio.timeout(config.open_timeout):
                connection = await dial(
                    url=config.upstream_url, model=model, api_key=config.openai_api_key
                )
        except TimeoutError:
            raise UpstreamError("the model did not answer in time") from None
        except OSError as exc:
            raise UpstreamError(f"cannot reach the model: {exc.strerror or exc}") from None
        opened = OpenedLeg(connection)
        if history_task is not None:
            opened.history = await history_task
        if setup_task is not None:
            opened.setup, opened.tool_calls = await setup_task
        if spent_task is not None:
            opened.spent = await spent_task
        return opened
    finally:
        for task in (history_task, setup_task, spent_task):
            if task is not None and not task.done():
                task.cancel()


async def _setup(
    setups: SessionSetups, subject: str, recorder: Recorder, load_history: bool
) -> tuple[SessionSetup, list[dict[str, Any]]]:
    calls = await recorder.load_tool_calls(subject) if load_history else []
    executed = [call["call_id"] for call in calls]
    try:
        async with asyncio.timeout(SETUP_LOAD_SECONDS):
            return await setups.resolve(subject, executed=executed), calls
    except TimeoutError:
        logger.warning("the session's bot was not read in time", extra={"sub": subject})
        return setups.operator(executed=executed), calls


class SideLeg:
    """The listener of an upstream leg that is not the session's current one (a rollover's
    standby, a retiring leg): its bytes and its end reach the session with the leg's number."""

    __slots__ = ("_data", "_lost", "leg")

    def __init__(
        self, leg: int, data: Callable[[int, bytes], None], lost: Callable[[int], None]
    ) -> None:
        self.leg = leg
        self._data = data
        self._lost = lost

    def upstream_data_received(self, data: bytes) -> None:
        """Bytes from the standby or a retiring leg."""
        self._data(self.leg, data)

    def upstream_connection_lost(self, exc: Exception | None) -> None:
        """The leg is gone."""
        self._lost(self.leg)

    def upstream_pause_writing(self) -> None:
        """Only set-up events and close frames are written here."""

    def upstream_resume_writing(self) -> None:
        """Only set-up events and close frames are written here."""
