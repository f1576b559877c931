"""The conversation so far: its turns, bounded, loaded back from the table, replayed as seeds.

A *turn* is one final transcript: what was heard in the meeting (``user``) or what the
agent said (``assistant``). This module owns

- :class:`Turn`, the validated value, and :func:`make_turn` / :func:`turn_from_item`,
  which clean text from anywhere (an upstream event, a stored item) into one;
- :class:`TurnWindow` and :func:`keep_newest`, the bounded "newest turns" rule shared by
  the live window a connection keeps and by :func:`load_turns`;
- :func:`seed_events`, GA ``conversation.item.create`` events that recreate the
  conversation in a fresh upstream session (resume on another task, rollover before the
  maximum session length), bounded in total size;
- :class:`TurnTaking`, where the conversation stands (someone speaking, an answer in
  progress, a transcript still to come), so a rollover switches sessions between turns.

It does no I/O (``relay.history`` reads the stored turns, ``relay.record_writer`` writes
them) and refuses to seed audio:
the GA API cannot take assistant audio items, so every turn is replayed as text
(user → ``input_text``, assistant → ``output_text``; openai-python
``types/realtime/realtime_conversation_item_{user,assistant}_message_param.py``).
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from relay.events import (
    INPUT_COMMITTED,
    RESPONSE_CREATED,
    RESPONSE_DONE,
    SPEECH_STARTED,
    SPEECH_STOPPED,
    TRANSCRIPTION_COMPLETED,
    TRANSCRIPTION_FAILED,
)

Role = Literal["user", "assistant"]
ROLES: Final[frozenset[str]] = frozenset({"user", "assistant"})

#: Longest text kept for one turn, in characters (a few minutes of speech); longer
#: transcripts are cut and end with :data:`TRUNCATION_MARK`.
MAX_TURN_CHARS: Final = 4000
TRUNCATION_MARK: Final = "…"
REPLACEMENT_CHARACTER: Final = "\ufffd"
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")
#: Longest ``item_id`` kept (OpenAI's are ~30 characters).
MAX_ITEM_ID_CHARS: Final = 128

#: Default bounds of the history kept in memory and loaded from the table.
MAX_HISTORY_TURNS: Final = 200
MAX_HISTORY_BYTES: Final = 64 * 1024
#: Default bound of the seed events sent to a fresh upstream session (the JSON, UTF-8):
#: about 12k tokens of text, well inside every current model's context.
MAX_SEED_BYTES: Final = 48 * 1024
#: Pages read at most by one :func:`load_turns`, whatever the items look like.
MAX_QUERY_PAGES: Final = 10
LOAD_TIMEOUT_SECONDS: Final = 5.0


@dataclass(frozen=True, slots=True)
class Turn:
    """One final transcript: who spoke, what was said (clean, bounded), and when (ISO UTC)."""

    role: Role
    text: str
    at: str = ""
    item_id: str | None = None
    #: Who said it (a user turn in a meeting with real-time events).
    speaker: str | None = None

    @property
    def size(self) -> int:
        """UTF-8 bytes of the text: what the history bounds count."""
        return len(self.text.encode("utf-8"))


# Turns


def clean_text(text: str, limit: int = MAX_TURN_CHARS) -> str:
    """Text safe to store and to send: valid UTF-8 (lone surrogates replaced), bounded, stripped."""
    if len(text) > limit:
        text = text[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK
    # json.loads turns "\\ud800" into a lone surrogate, which no UTF-8 encoder accepts.
    return _LONE_SURROGATE.sub(REPLACEMENT_CHARACTER, text).strip()


def make_turn(
    role: object, text: object, at: object = "", item_id: object = None, speaker: object = None
) -> Turn | None:
    """A :class:`Turn` from untrusted values, or ``None`` when they do not make one.

    ``role`` must be ``"user"`` or ``"assistant"`` and ``text`` a non-blank string; a bad
    ``at`` or ``item_id`` is dropped rather than failing the turn.
    """
    if not isinstance(role, str) or role not in ROLES or not isinstance(text, str):
        return None
    cleaned = clean_text(text)
    if not cleaned:
        return None
    stamp = clean_text(at, 64) if isinstance(at, str) else ""
    ident = clean_text(item_id, MAX_ITEM_ID_CHARS) if isinstance(item_id, str) else None
    return Turn(
        role="user" if role == "user" else "assistant",
        text=cleaned,
        at=stamp,
        item_id=ident or None,
        speaker=clean_text(speaker, 100) or None if isinstance(speaker, str) else None,
    )


def turn_from_item(item: Mapping[str, Any]) -> Turn | None:
    """The turn a stored ``TURN#`` item holds (``storage.items.Turn``), or ``None`` if malformed."""
    return make_turn(
        item.get("role"),
        item.get("text"),
        item.get("at", ""),
        item.get("item_id"),
        item.get("speaker"),
    )


def keep_newest(
    turns: Iterable[Turn],
    *,
    max_turns: int = MAX_HISTORY_TURNS,
    max_bytes: int = MAX_HISTORY_BYTES,
) -> list[Turn]:
    """The newest turns that fit both bounds, oldest first (the order given)."""
    window = TurnWindow(max_turns=max_turns, max_bytes=max_bytes)
    window.extend(turns)
    return window.turns()


class TurnWindow:
    """The newest turns of a conversation, bounded by count and text bytes; oldest evicted.

    A live connection appends every recorded turn here, so a rollover can seed a fresh
    upstream session without reading the table.
    """

    __slots__ = ("_bytes", "_turns", "max_bytes", "max_turns")

    def __init__(
        self,
        turns: Iterable[Turn] = (),
        *,
        max_turns: int = MAX_HISTORY_TURNS,
        max_bytes: int = MAX_HISTORY_BYTES,
    ) -> None:
        """Start with ``turns`` (oldest first), trimmed to the bounds."""
        self.max_turns = max_turns
        self.max_bytes = max_bytes
        self._turns: deque[Turn] = deque()
        self._bytes = 0
        self.extend(turns)

    def append(self, turn: Turn) -> None:
        """Add the newest turn, then evict the oldest ones until both bounds hold."""
        self._turns.append(turn)
        self._bytes += turn.size
        while self._turns and (len(self._turns) > self.max_turns or self._bytes > self.max_bytes):
            self._bytes -= self._turns.popleft().size

    def extend(self, turns: Iterable[Turn]) -> None:
        """Append each of ``turns``, oldest first."""
        for turn in turns:
            self.append(turn)

    def turns(self) -> list[Turn]:
        """A copy of the kept turns, oldest first."""
        return list(self._turns)

    def newest(self) -> Turn | None:
        """The newest turn kept, if any."""
        return self._turns[-1] if self._turns else None

    def __len__(self) -> int:
        """How many turns are kept."""
        return len(self._turns)


# Turn taking

#: Counters stop here, so a peer that never closes what it opens cannot grow them.
_MAX_OPEN: Final = 64


class TurnTaking:
    """Whether the conversation is between turns, from the upstream event types alone.

    Between turns means: the user is not speaking (server VAD), no response is in
    progress, and no committed user audio still waits for its transcript (when
    ``expect_transcripts``; otherwise a rollover would seed a conversation missing the
    last thing the user said). Events lost or never sent can keep it from ever being
    between turns, so a rollover also needs a hard deadline of its own.
    """

    __slots__ = (
        "expect_transcripts",
        "responses_in_progress",
        "transcripts_pending",
        "user_speaking",
    )

    def __init__(self, *, expect_transcripts: bool = True) -> None:
        """Start between turns."""
        self.expect_transcripts = expect_transcripts
        self.user_speaking = False
        self.responses_in_progress = 0
        self.transcripts_pending = 0

    def observe(self, event_type: str) -> None:
        """Account for one upstream event (other types are ignored)."""
        if event_type == SPEECH_STARTED:
            self.user_speaking = True
        elif event_type == SPEECH_STOPPED:
            self.user_speaking = False
        elif event_type == INPUT_COMMITTED:
            self.user_speaking = False
            if self.expect_transcripts:
                self.transcripts_pending = min(self.transcripts_pending + 1, _MAX_OPEN)
        elif event_type in (TRANSCRIPTION_COMPLETED, TRANSCRIPTION_FAILED):
            self.transcripts_pending = max(self.transcripts_pending - 1, 0)
        elif event_type == RESPONSE_CREATED:
            self.responses_in_progress = min(self.responses_in_progress + 1, _MAX_OPEN)
        elif event_type == RESPONSE_DONE:
            self.responses_in_progress = max(self.responses_in_progress - 1, 0)

    @property
    def between_turns(self) -> bool:
        """Nobody speaking, nothing being answered, no transcript outstanding."""
        return not (self.user_speaking or self.responses_in_progress or self.transcripts_pending)


# Seeding


def seed_item(turn: Turn) -> dict[str, Any]:
    """The GA conversation item that replays ``turn`` as text."""
    part_type = "input_text" if turn.role == "user" else "output_text"
    text = f"{turn.speaker}: {turn.text}" if turn.speaker else turn.text  # who said it
    return {
        "type": "message",
        "role": turn.role,
        "content": [{"type": part_type, "text": clean_text(text)}],
    }


def seed_events(
    turns: Sequence[Turn],
    *,
    max_bytes: int = MAX_SEED_BYTES,
    max_events: int = MAX_HISTORY_TURNS,
) -> list[str]:
    """GA ``conversation.item.create`` events that recreate ``turns`` in a fresh session.

    Newest turns win: walking back from the last turn, events are kept while their total
    UTF-8 size stays within ``max_bytes`` and their count within ``max_events``; the
    result is oldest first, ready to send in order after the session's ``session.update``
    and before any audio. Each event carries ``event_id`` ``relay_seed_<n>`` so an
    ``error`` the upstream answers can be told apart from the client's.
    """
    kept: list[str] = []
    total = 0
    for index in range(len(turns) - 1, -1, -1):
        if len(kept) >= max_events:
            break
        event = {
            "type": "conversation.item.create",
            "event_id": f"relay_seed_{index}",
            "item": seed_item(turns[index]),
        }
        encoded = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        size = len(encoded.encode("utf-8"))
        if total + size > max_bytes:
            break
        kept.append(encoded)
        total += size
    kept.reverse()
    return kept
