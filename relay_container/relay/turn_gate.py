"""TurnGate: whether a finished turn in a meeting is for the agent (``turn_taking``).

In ``addressed`` mode the model does not answer every turn by itself (the relay sends
its ``session.update`` with ``create_response: false``): the session core shows this gate
each final transcript and asks for an answer (``response.create``) only when the gate
says the turn addresses the agent. Pure: transcripts in, a decision out.

A turn addresses the agent when it names one of the wake phrases (whole words, any case,
so "Ava" matches "ava," but not "Java"), or, with ``follow_ups``, when it is the first
turn after the agent asked a question (its last sentence ended with "?"). In ``manual``
mode no turn does: the agent speaks when a tool or the client asks. In a meeting with one
other human every turn is for the agent (``hinted``, from ``relay.meeting``'s roster).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from relay.conversation import Turn
from relay.events import OUTPUT_AUDIO_TRANSCRIPT_DONE, TRANSCRIPTION_COMPLETED

#: Finished turns a gated session shows its gate (:meth:`TurnGate.finished_turn`).
GATED_TYPES: Final = frozenset({TRANSCRIPTION_COMPLETED, OUTPUT_AUDIO_TRANSCRIPT_DONE})
#: What the relay sends when the gate says a turn is for the agent.
ANSWER_EVENT: Final = b'{"type":"response.create","event_id":"relay_turn_answer"}'


def wake_pattern(wake_phrases: Iterable[str]) -> re.Pattern[str] | None:
    """A regex finding any of ``wake_phrases`` as whole words, any case (None: no phrases)."""
    phrases = [p.strip() for p in wake_phrases if p.strip()]
    words = "|".join(r"\s+".join(map(re.escape, p.split())) for p in phrases)
    return re.compile(rf"(?<!\w)(?:{words})(?!\w)", re.IGNORECASE) if words else None


class TurnGate:
    """Decides per finished user turn (see the module docstring)."""

    __slots__ = ("_asked", "_follow_ups", "_hints", "_pattern", "answered", "heard")

    def __init__(
        self, *, wake_phrases: Iterable[str], follow_ups: bool, hints: bool = True
    ) -> None:
        self._pattern = wake_pattern(wake_phrases)
        self._follow_ups = follow_ups
        #: Whether the meeting's own signs count (one other human, a chat DM): not in manual.
        self._hints = hints
        self._asked = False
        #: Turns heard, and turns the gate asked an answer for.
        self.heard = self.answered = 0

    def finished_turn(self, kind: str, turn: Turn | None, *, hinted: bool = False) -> bool:
        """A final transcript of ``kind`` (one of ``GATED_TYPES``) made ``turn`` the
        conversation's newest: True when it is a participant's turn for the agent
        (``hinted``: see :meth:`user_said`)."""
        if turn is None:
            return False
        if kind == OUTPUT_AUDIO_TRANSCRIPT_DONE and turn.role == "assistant":
            self.agent_said(turn.text)
            return False
        return (
            kind == TRANSCRIPTION_COMPLETED
            and turn.role == "user"
            and self.user_said(turn.text, hinted=hinted)
        )

    def user_said(self, text: str, *, hinted: bool = False) -> bool:
        """A participant's finished turn: True when it is for the agent. ``hinted``: the
        meeting says so (one other human in it, or a chat message sent to the agent alone)."""
        self.heard += 1
        addressed = (
            (self._pattern is not None and self._pattern.search(text) is not None)
            or (self._follow_ups and self._asked)
            or (self._hints and hinted)
        )
        self._asked = False  # a follow-up is the turn right after the question only
        self.answered += addressed
        return addressed

    def agent_said(self, text: str) -> None:
        """The agent's finished turn (whether it ended with a question)."""
        self._asked = text.rstrip().endswith("?")
