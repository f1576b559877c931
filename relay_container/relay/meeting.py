"""Meeting: who is in a session's meeting, who is speaking, and what the model is told.

The session core's collaborator for Recall's real-time events (``relay.meeting_events``),
sans I/O: events and the relay's clock in; conversation items for the model and decisions
out. It keeps

- the roster (join/leave/update), without the bot itself (the participant whose name is
  the bot's name from our metadata); bounded at :data:`MAX_PARTICIPANTS`;
- a speech timeline: seconds each participant spoke since the last finished user turn,
  from ``speech_on``/``speech_off`` (and ``transcript.data``, if subscribed), so the turn
  is attributed to whoever spoke most in it (:meth:`Meeting.turn_speaker`);
- the chat policy (``chat.mode`` in agent.yaml): which chat messages enter the conversation.

What the model is told, and why this way (docs/recall-realtime.md, "What the model hears"):
short ``system`` message items appended to the conversation — "Ada joined the meeting.",
"Ada is speaking." — rather than instruction updates, because an item keeps its place in
the conversation (the model sees who spoke *before* the audio turn it belongs to: Recall's
``speech_on`` arrives while the person is still talking, and the audio item is only added
when the turn is committed), costs a few tokens once instead of re-sending the
instructions, and cannot clash with an operator's locked instructions. This adds no delay
to an answer in any ``turn_taking`` mode. Chat messages enter as ``user`` text naming the
sender. Items are rate-limited (a token bucket): a flood of events updates the roster but
does not flood the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final, Literal

from relay.meeting_events import MeetingEvent, Participant
from relay.turn_gate import wake_pattern

ChatMode = Literal["addressed", "all", "off"]

#: Participants kept at most (Zoom meetings go to 1,000; Recall's own limits are lower).
MAX_PARTICIPANTS: Final = 1000
#: Items for the model: a burst of this many, then :data:`ITEMS_PER_SECOND`.
ITEM_BURST: Final = 20
ITEMS_PER_SECOND: Final = 2.0
#: "Is speaking" items per user turn, at most (crosstalk of many people).
SPEAKER_ITEMS_PER_TURN: Final = 4


@dataclass(frozen=True, slots=True)
class MeetingPolicy:
    """What a session does with its meeting's events (from agent.yaml)."""

    chat: ChatMode = "addressed"
    #: The agent's names (``turn_taking.wake_phrases``): a chat line naming one is addressed.
    wake_phrases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatLine:
    """A chat message that entered the conversation."""

    sender: str
    text: str
    #: Sent to the bot alone (a DM), not to everyone.
    direct: bool


@dataclass(frozen=True, slots=True)
class Reaction:
    """What one event asks of the session: items for the model, a chat line to answer."""

    items: tuple[bytes, ...] = ()
    chat: ChatLine | None = None


NOTHING: Final = Reaction()


def system_item(text: str) -> bytes:
    """A GA ``conversation.item.create`` of a short system message."""
    return _item("system", text)


def user_item(text: str) -> bytes:
    """A GA ``conversation.item.create`` of a user text message."""
    return _item("user", text)


def _item(role: str, text: str) -> bytes:
    event = {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": role,
            "content": [{"type": "input_text", "text": text}],
        },
    }
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


class Meeting:
    """One session's meeting (see the module docstring)."""

    def __init__(self, policy: MeetingPolicy = MeetingPolicy()) -> None:
        self.policy = policy
        self.roster: dict[str, Participant] = {}
        self.bot_name: str | None = None
        #: Participant id → when they started speaking (relay clock), while they speak.
        self._speaking: dict[str, float] = {}
        #: Participant id → seconds spoken since the last attributed turn.
        self._spoken: dict[str, float] = {}
        #: Who started speaking since the last attributed turn.
        self._started: set[str] = set()
        self._named: set[str] = set()  # "is speaking" items sent since the last turn
        self._tokens = float(ITEM_BURST)
        self._refilled = 0.0
        #: Counters for logs and tests.
        self.events = self.items_sent = self.items_dropped = self.ignored = 0

    @property
    def humans(self) -> int:
        """People in the meeting, the bot not counted."""
        return len(self.roster)

    def name_of(self, participant_id: str) -> str | None:
        """A participant's name, if known."""
        found = self.roster.get(participant_id)
        return found.name if found is not None else None

    # Events in

    def on_event(self, event: MeetingEvent, now: float) -> Reaction:
        """Apply one event; what the session should send the model."""
        self.events += 1
        if event.bot_name:
            self.bot_name = event.bot_name
        who = event.participant
        if self._is_bot(who):
            return NOTHING
        kind = event.kind
        if kind == "join" or kind == "update":
            known = who.id in self.roster
            if not known and len(self.roster) >= MAX_PARTICIPANTS:
                self.ignored += 1
                return NOTHING
            self.roster[who.id] = who if who.name or not known else self.roster[who.id]
            if kind == "join" and not known:
                return self._say(f"{_label(who)} joined the meeting ({self._count()}).", now)
            return NOTHING
        if kind == "leave":
            gone = self.roster.pop(who.id, None)
            self._speech_off(who.id, now)
            if gone is None:
                return NOTHING
            return self._say(f"{_label(gone)} left the meeting ({self._count()}).", now)
        self._remember(who)
        if kind == "speech_on":
            self._speaking.setdefault(who.id, now)
            self._started.add(who.id)
            if who.id in self._named or len(self._named) >= SPEAKER_ITEMS_PER_TURN:
                return NOTHING
            self._named.add(who.id)
            return self._say(f"{self._label(who.id)} is speaking.", now)
        if kind == "speech_off":
            self._speech_off(who.id, now)
            return NOTHING
        if kind == "transcript":
            # Words attributed by Recall: count each as ~0.3 s of this person's speech.
            self._spoken[who.id] = self._spoken.get(who.id, 0.0) + 0.3 * len(event.text.split())
            self._started.add(who.id)
            return NOTHING
        return self._chat(event, now)

    # Questions the session asks

    def turn_speaker(self, now: float) -> str | None:
        """The name of this turn's speaker, and a new attribution window starts.

        Who spoke most since the last finished user turn, among those who *started*
        speaking since then (else those still speaking, else anyone): the previous
        speaker's ``speech_off`` often comes after their turn was committed, and that tail
        must not win the next person's turn. None when nobody spoke since (no guess).
        """
        for ident, since in self._speaking.items():
            self._spoken[ident] = self._spoken.get(ident, 0.0) + max(0.0, now - since)
            self._speaking[ident] = now
        pool = self._started or set(self._speaking) or set(self._spoken)
        timed = [(self._spoken.get(ident, 0.0), ident) for ident in pool]
        best = max(timed, default=None)
        chosen = best[1] if best is not None else None  # nobody spoke: no guess
        self._spoken.clear()
        self._started.clear()
        self._named.clear()
        return self._label(chosen) if chosen is not None else None

    # Internals

    def _chat(self, event: MeetingEvent, now: float) -> Reaction:
        mode = self.policy.chat
        direct = event.to is not None and event.to.lower() not in ("everyone", "all", "")
        if mode == "off" or not event.text:
            return NOTHING
        if mode == "addressed" and not (direct or self._names_agent(event.text)):
            return NOTHING
        if not self._spend(now):
            return NOTHING
        sender = self._label(event.participant.id)
        line = ChatLine(sender=sender, text=event.text, direct=direct)
        where = "to you in the chat" if direct else "in the chat"
        return Reaction(items=(user_item(f"{sender} ({where}): {event.text}"),), chat=line)

    def _names_agent(self, text: str) -> bool:
        pattern = wake_pattern(self.policy.wake_phrases)
        if pattern is None:
            return True  # nothing tells an address apart: every chat line is for the agent
        return self.humans <= 1 or pattern.search(text) is not None

    def _say(self, text: str, now: float) -> Reaction:
        if not self._spend(now):
            return NOTHING
        return Reaction(items=(system_item(text),))

    def _spend(self, now: float) -> bool:
        """One item from the token bucket (refilled at ITEMS_PER_SECOND)."""
        self._tokens = min(
            float(ITEM_BURST), self._tokens + (now - self._refilled) * ITEMS_PER_SECOND
        )
        self._refilled = now
        if self._tokens < 1.0:
            self.items_dropped += 1
            return False
        self._tokens -= 1.0
        self.items_sent += 1
        return True

    def _speech_off(self, ident: str, now: float) -> None:
        since = self._speaking.pop(ident, None)
        if since is not None:
            self._spoken[ident] = self._spoken.get(ident, 0.0) + max(0.0, now - since)

    def _remember(self, who: Participant) -> None:
        """Speech or chat from someone whose join we missed (we connected late)."""
        if who.id not in self.roster and len(self.roster) < MAX_PARTICIPANTS:
            self.roster[who.id] = who

    def _is_bot(self, who: Participant) -> bool:
        name = self.bot_name
        return name is not None and who.name is not None and who.name.casefold() == name.casefold()

    def _label(self, ident: str) -> str:
        found = self.roster.get(ident)
        return _label(found) if found is not None else f"participant {ident}"

    def _count(self) -> str:
        n = len(self.roster)
        return "you are alone" if n == 0 else f"{n} {'person' if n == 1 else 'people'} here"


def _label(who: Participant) -> str:
    return who.name or f"participant {who.id}"
