"""The built-in tools: what each does with its (already parsed) arguments.

``leave_meeting`` leaves through ``relay.tools.meeting_exit`` (the minutes in the chat
first, for a bot created with them); ``send_chat_message`` calls Recall for the session's bot;
``take_note`` and ``list_notes`` use the bot's notes in DynamoDB; ``end_turn_silently``
does nothing and asks the relay not to make the model answer. Each returns a JSON-able
result or raises :class:`~relay.tools.errors.ToolFailure`; the bot is always the one the
relay resolved for the session (never an argument), so a model cannot act on another bot.
What the model reads about them is ``relay.tools.spec.BUILTIN_DECLARATIONS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relay.tools.errors import ToolFailure
from relay.tools.meeting_exit import Exit, MeetingExit
from relay.tools.notes import NoteStore
from relay.tools.recall import RecallBotApi


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Who a call acts for: resolved by the relay from the session, never from input."""

    session_id: str
    #: The Recall bot ``voicebot bot create`` recorded for the session (None: a session
    #: not started by a bot, e.g. an SDK client or ``make dev``'s page).
    bot_id: str | None = None


@dataclass(frozen=True, slots=True)
class Builtins:
    """The services the built-ins use; ``None`` where the operator configured none."""

    recall: RecallBotApi | None = None
    notes: NoteStore | None = None
    #: How a bot leaves (None: as ``recall`` alone, at once).
    meeting_exit: MeetingExit | None = None

    async def run(self, name: str, arguments: Mapping[str, Any], ctx: ToolContext) -> Any:
        """Run built-in ``name``.

        Raises:
            ToolFailure: bad arguments, no bot, or the service failed.
        """
        if name == "end_turn_silently":
            return {"ok": True}
        if name == "leave_meeting":
            exit_ = self.meeting_exit or MeetingExit(self._recall())
            how = await exit_.leave(_bot(ctx), ctx.session_id, "tool")
            if how is Exit.AFTER_MINUTES:
                return {"ok": True, "left": False, "leaving_after_minutes": True}
            return {"ok": True, "left": True}
        if name == "send_chat_message":
            message = _text(arguments, "message")
            await self._recall().send_chat_message(_bot(ctx), message)
            return {"ok": True, "sent": True}
        if name == "take_note":
            note = await self._notes().add(
                _bot(ctx), _text(arguments, "text"), session_id=ctx.session_id
            )
            return {"ok": True, "note_id": note["note_id"]}
        if name == "list_notes":
            notes = await self._notes().recent(_bot(ctx))
            return {"ok": True, "notes": [{"at": n["at"], "text": n["text"]} for n in notes]}
        raise ToolFailure(f"there is no built-in tool {name!r}")

    def _recall(self) -> RecallBotApi:
        if self.recall is None:
            raise ToolFailure("the relay has no Recall API key, so it cannot reach the meeting")
        return self.recall

    def _notes(self) -> NoteStore:
        if self.notes is None:
            raise ToolFailure("the relay has no table to keep notes in")
        return self.notes


def _bot(ctx: ToolContext) -> str:
    if not ctx.bot_id:
        raise ToolFailure("this session has no meeting bot, so it cannot act in a meeting")
    return ctx.bot_id


def _text(arguments: Mapping[str, Any], key: str) -> str:
    value = arguments.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ToolFailure(f"the argument {key!r} must be a non-empty string")
    return value
