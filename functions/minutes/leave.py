"""MeetingExit: post the minutes in the meeting chat, then make the bot leave.

Runs for a bot that was asked to leave on purpose (``storage.leaving``) and was created
with ``minutes_to_chat``. Exactly one worker leaves: the one that claims the ``LEAVE``
item (the job, once the minutes are built or its time bound ran out, or the deadline
message if the job never got there). The chat post needs three things: the stack allows
it (``MINUTES_TO_CHAT``), the bot asked for it, and its platform has a chat
(``functions.minutes.chat``); a chat failure is logged and the bot leaves anyway. A failed
``leave_call`` gives the claim back and raises, so the queue retries it; so does a stack
whose Recall key secret is still a placeholder (nothing is claimed: the dead-letter alarm
says so, and a redrive after the key is put makes the bot leave). A bot already done
(``bot.done`` came first) is not called at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from functions.minutes.chat import chat_limit, chat_messages
from functions.minutes.recall_bot import RecallBots, RecallCallError
from functions.minutes.store import MinutesStore
from functions.minutes.summarizer import Minutes
from storage.minutes import FINAL_STATUSES

logger = logging.getLogger(__name__)


class LeaveOutcome(StrEnum):
    """What :meth:`MeetingExit.leave` did."""

    LEFT = "left"
    ALREADY = "already"  # another worker claimed the leave (or none was requested)
    GONE = "gone"  # the bot had already left its meeting


@dataclass(frozen=True, slots=True)
class MeetingExit:
    """The store, Recall, and whether this stack posts minutes in chats at all."""

    store: MinutesStore
    recall: RecallBots | None
    chat_enabled: bool
    default_region: str = "us-west-2"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def leave(self, bot_id: str, minutes: Minutes | None, *, by: str) -> LeaveOutcome:
        """Post ``minutes`` (if any, and wanted) and leave, if this worker claims the leave."""
        if self.recall is None:
            # Unclaimed and raised: the message is retried, then dead-lettered (the alarm
            # fires); once the key is put in the secret, a redrive makes the bot leave.
            raise RecallCallError("the stack's Recall key secret holds no key: cannot leave")
        if not self.store.claim_leave(bot_id=bot_id, now=self.clock(), by=by):
            return LeaveOutcome.ALREADY
        state = self.store.bot_state(bot_id) or {}
        if state.get("status") in FINAL_STATUSES:
            return LeaveOutcome.GONE
        region = state.get("region")
        region = region if isinstance(region, str) else self.default_region
        posted = 0
        if minutes is not None and self.chat_enabled and self._wants_chat(state):
            posted = self._post(bot_id, region, minutes, str(state.get("meeting_url", "")))
        try:
            self.recall.leave_call(bot_id, region)
        except RecallCallError:
            self.store.release_leave(bot_id=bot_id)
            raise
        self.store.leave_done(bot_id=bot_id, chat_messages=posted)
        logger.info("bot left after the minutes", extra={"bot_id": bot_id, "chat_messages": posted})
        return LeaveOutcome.LEFT

    def _wants_chat(self, state: dict[str, object]) -> bool:
        session_id = state.get("session_id")
        if not isinstance(session_id, str) or not session_id:
            return False
        pointer = self.store.session_bot(session_id)
        return bool(pointer and pointer.get("minutes_to_chat") is True)

    def _post(self, bot_id: str, region: str, minutes: Minutes, meeting_url: str) -> int:
        assert self.recall is not None
        limit = chat_limit(meeting_url)
        if limit is None:
            return 0  # Webex: no chat to post in
        posted = 0
        for message in chat_messages(minutes, limit):
            try:
                self.recall.send_chat_message(bot_id, region, message)
            except RecallCallError as exc:
                logger.warning(
                    "minutes not posted in the chat", extra={"bot_id": bot_id, "error": str(exc)}
                )
                break
            posted += 1
        return posted
