"""SessionExits: the two ways a session's shell ends it on purpose, each one owned task.

- Handover (the core's ``Handover``: this task is leaving): the session's records are
  flushed first, bounded, so the task that takes the session over reads all of them; then
  the client is closed with "reconnect".
- The bill (the core's ``LeaveCall``): the bot leaves its meeting
  (``relay.bill_exit.leave_meeting``, bounded, never raising), then the session ends with
  a normal closure. This task is not cancelled when the session finishes: the bot must go.

``relay.session.RelaySession`` owns one and gives it the way to end the session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from relay.bill_exit import CLOSE_CODE, close_reason, leave_meeting
from relay.effects import Handover
from relay.session_context import SessionContext

#: Bound of the records flush before a handover closes the client.
HANDOVER_FLUSH_SECONDS: Final = 1.0


class SessionExits:
    """A session's handover and bill exit (see the module docstring)."""

    def __init__(
        self, context: SessionContext, *, session_id: str, end: Callable[[int, str], None]
    ) -> None:
        """``end(code, reason)`` closes both legs of the session unless it finished."""
        self._context = context
        self._session_id = session_id
        self._end = end
        self.handover: asyncio.Task[None] | None = None
        self.leaving_call: asyncio.Task[None] | None = None

    def hand_over(self, handover: Handover) -> None:
        """Flush the records, then close the client with the handover's code and reason."""
        self.handover = asyncio.get_running_loop().create_task(self._hand_over(handover))

    def leave_meeting(self, bot_id: str | None, limit: str) -> None:
        """The bill's ``limit`` was reached and the goodbye said: the bot leaves, then the
        session ends."""
        self.leaving_call = asyncio.get_running_loop().create_task(
            self._leave_meeting(bot_id, limit)
        )

    async def _hand_over(self, handover: Handover) -> None:
        await self._context.recorder.flush(HANDOVER_FLUSH_SECONDS)
        self._context.metrics.count("SessionsHandedOver")
        self._end(handover.code, handover.reason)

    async def _leave_meeting(self, bot_id: str | None, limit: str) -> None:
        await leave_meeting(
            self._context.meeting_exit,
            bot_id,
            limit,
            session_id=self._session_id,
            metrics=self._context.metrics,
        )
        self._end(CLOSE_CODE, close_reason(limit))
