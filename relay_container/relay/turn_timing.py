"""TurnTimings: when each user turn's answer reached the relay, on the relay's clock.

The relay's half of a turn's latency budget (docs/latency.md). For each finished user
turn (the model's ``input_audio_buffer.speech_stopped``) it keeps, as offsets from that
event's arrival: the final transcript, the relay's own ``response.create`` (a gated,
``addressed`` session), the model's ``response.created`` and its first
``response.output_audio.delta``. Those are events the session core already looks at,
except the first audio delta, which it recognises from its first bytes only while a
response has started and its audio has not (one flag test per model frame otherwise).

A client asks with the relay-only event ``relay.latency.get``; the relay answers it
itself with a ``relay.latency`` event and never forwards either. Only offsets go out
(milliseconds since ``speech_stopped``), never the relay's clock, so a client on another
machine needs no shared clock to use them. Sans I/O: times come in as arguments.
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from typing import Final

from relay.events import (
    RELAY_LATENCY,
    RELAY_LATENCY_GET,
    RESPONSE_CREATED,
    SPEECH_STOPPED,
    TRANSCRIPTION_COMPLETED,
    error_event,
    loads_strict,
)

#: Upstream events whose arrival is timed (all of them recorded types already).
TIMED_TYPES: Final = frozenset({SPEECH_STOPPED, TRANSCRIPTION_COMPLETED, RESPONSE_CREATED})
#: Turns kept per session: the newest, for a client that asks after each answer.
MAX_TURNS: Final = 32
#: A client asks at most this often; faster requests are invalid events (whose budget
#: ends a flooding session).
MIN_REQUEST_SECONDS: Final = 0.05
#: Item ids are short; a longer one is not kept (the offsets still are).
_MAX_ITEM_ID: Final = 64


class TimedTurn:
    """One user turn: when its events arrived (relay clock, seconds)."""

    __slots__ = ("answer_at", "audio_at", "created_at", "item_id", "stopped_at", "transcript_at")

    def __init__(self, item_id: str | None, stopped_at: float) -> None:
        self.item_id = item_id
        self.stopped_at = stopped_at
        self.transcript_at: float | None = None
        self.answer_at: float | None = None
        self.created_at: float | None = None
        self.audio_at: float | None = None

    def as_json(self) -> dict[str, object]:
        """Offsets from ``speech_stopped`` in ms (None: not seen)."""

        def since(moment: float | None) -> float | None:
            return None if moment is None else round((moment - self.stopped_at) * 1000, 3)

        return {
            "item_id": self.item_id,
            "transcript_ms": since(self.transcript_at),
            "answer_requested_ms": since(self.answer_at),
            "response_created_ms": since(self.created_at),
            "first_audio_ms": since(self.audio_at),
        }


class TurnTimings:
    """One session's timed turns (see the module docstring)."""

    __slots__ = ("_asked_at", "_open", "_turns", "awaiting_audio", "requests")

    def __init__(self) -> None:
        self._turns: deque[TimedTurn] = deque(maxlen=MAX_TURNS)
        #: The newest turn, while its answer's first audio has not arrived.
        self._open: TimedTurn | None = None
        #: A response started for the open turn and its first audio is due: the session
        #: core then tests model frames for ``relay.events.AUDIO_DELTA_HEADS``.
        self.awaiting_audio = False
        self._asked_at = -MIN_REQUEST_SECONDS
        self.requests = 0

    def observe(self, kind: str, payload: bytes, now: float) -> None:
        """A timed upstream event (one of :data:`TIMED_TYPES`) arrived at ``now``."""
        if kind == SPEECH_STOPPED:
            fresh = TimedTurn(_item_id(payload), now)
            self._turns.append(fresh)
            self._open = fresh
            self.awaiting_audio = False
            return
        turn = self._open
        if turn is None:
            return  # a response nobody's turn asked for (a greeting, a tool's answer)
        if kind == TRANSCRIPTION_COMPLETED:
            if turn.transcript_at is None:
                turn.transcript_at = now
        elif kind == RESPONSE_CREATED and turn.created_at is None:
            turn.created_at = now
            self.awaiting_audio = True

    def answer_requested(self, now: float) -> None:
        """The relay asked the model to answer the open turn (``response.create``)."""
        if self._open is not None and self._open.answer_at is None:
            self._open.answer_at = now

    def audio_started(self, now: float) -> None:
        """The first audio delta of the open turn's answer arrived."""
        self.awaiting_audio = False
        if self._open is not None:
            self._open.audio_at = now
            self._open = None

    def may_answer(self, now: float) -> bool:
        """Whether a client's request at ``now`` is answered (at most one per interval)."""
        if now - self._asked_at < MIN_REQUEST_SECONDS:
            return False
        self._asked_at = now
        self.requests += 1
        return True

    def answer(self, now: float) -> tuple[bytes, bool]:
        """A client's ``relay.latency.get`` at ``now``: (the report, True), or (a
        ``rate_limited`` error event, False) within an interval of the last one answered."""
        if self.may_answer(now):
            return self.report(), True
        limited = f"{RELAY_LATENCY_GET} at most every {MIN_REQUEST_SECONDS * 1000:g} ms"
        return error_event(limited, code="rate_limited"), False

    def report(self) -> bytes:
        """The ``relay.latency`` event for the client: the kept turns, oldest first."""
        return json.dumps(
            {
                "type": RELAY_LATENCY,
                "event_id": f"event_relay_{uuid.uuid4().hex[:20]}",
                "turns": [turn.as_json() for turn in self._turns],
            },
            separators=(",", ":"),
        ).encode()


def _item_id(payload: bytes) -> str | None:
    """The ``item_id`` of a ``speech_stopped`` event (decoded once a turn, strictly)."""
    try:
        event = loads_strict(payload)
    except ValueError:
        return None
    item_id = event.get("item_id") if isinstance(event, dict) else None
    if isinstance(item_id, str) and len(item_id) <= _MAX_ITEM_ID:
        return item_id
    return None
