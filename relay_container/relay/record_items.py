"""What a relay connection records: upstream events translated into stored items, no I/O.

A :class:`ConnectionRecord` is fed the upstream events the session recognises
(``relay.events.recorded_type``) and turns them into item writes handed to a *sink*
(the writer's queue, ``relay.record_writer``); it never touches the network, the event
loop or the environment. What it produces (shapes from ``storage.items``, keys from
``storage.schema``):

- ``SESSION#<id>`` / ``CONN#<started_at>#<connection_id>`` (``Connection``): model, start,
  end, close codes, and the usage of every ``response.done`` summed per connection;
- ``SESSION#<id>`` / ``TURN#<at_ms>#<seq>`` (``Turn``): final transcripts in order —
  ``conversation.item.input_audio_transcription.completed`` → ``user``,
  ``response.output_audio_transcript.done`` (or ``response.output_text.done`` in a text
  session) → ``assistant``. A user turn is stamped with the time its audio was committed
  (``input_audio_buffer.committed``), not the time its transcript arrived, because the
  transcription runs asynchronously and may finish after the agent has answered.
- every item carries ``expires_at`` = now + the retention.

A connection summary is rewritten whole (``SET`` of every known attribute) at start, at
most every ``usage_interval`` seconds while responses complete, and at the end, so any
later write repairs a lost earlier one. Malformed, mistyped or oversized events are
ignored and counted; nothing here raises on event content.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeGuard

from relay import conversation
from relay.conversation import Turn, TurnTaking, TurnWindow
from relay.events import (
    INPUT_COMMITTED,
    OUTPUT_AUDIO_TRANSCRIPT_DONE,
    OUTPUT_TEXT_DONE,
    PARSED_EVENT_TYPES,
    TRANSCRIPTION_COMPLETED,
)
from relay.response_usage import add_usage
from storage import items, schema, times

#: Longest tool arguments or output kept in a tool call record, in characters.
MAX_TOOL_TEXT_CHARS: Final = 8000
#: Recorded events larger than this are not parsed (ignored and counted): a real
#: ``response.done`` carries transcripts but no audio and stays far below it.
MAX_RECORDED_EVENT_BYTES: Final = 1024 * 1024

#: Close reasons are at most 123 bytes on the wire (RFC 6455 §5.5.1).
MAX_CLOSE_REASON_CHARS: Final = 123
#: Commit times remembered per connection while waiting for their transcripts.
MAX_PENDING_COMMITS: Final = 64
#: Turn sequence numbers wrap here (``schema.turn_sk`` pads to six digits); they only
#: break ties between turns of one session stamped in the same millisecond.
SEQ_MODULUS: Final = 1_000_000

# Values


@dataclass(slots=True)
class RecordCounters:
    enqueued: int = 0
    written: int = 0
    failed_attempts: int = 0
    dropped_queue_full: int = 0
    dropped_write_failed: int = 0
    dropped_on_close: int = 0
    dropped_after_close: int = 0
    ignored_events: int = 0


@dataclass(frozen=True, slots=True)
class PutTurn:
    """Put one whole item (a turn, or a tool call record)."""

    item: items.Turn | items.ToolCallRecord


@dataclass(frozen=True, slots=True)
class UpdateConnection:
    pk: str
    sk: str
    values: dict[str, Any]


RecordOp = PutTurn | UpdateConnection
RecordSink = Callable[[RecordOp], None]


class ConnectionRecord:
    """What one relay connection records: its summary, its turns, its usage.

    Made by :meth:`SessionRecorder.connection_started`. Every method is synchronous and
    cheap: it parses at most one recorded event and hands records to the recorder's
    queue. It stays usable after :meth:`connection_ended` (events that arrive late, for
    example while a re-attach grace period holds the upstream open, are still recorded).
    ``conversation`` keeps the newest turns in memory (seeded with ``history``) for a
    rollover to replay without reading the table, and ``turn_taking`` tells it when the
    conversation is between turns.
    """

    __slots__ = (
        "_commits",
        "_counters",
        "_ended",
        "_next_seq",
        "_responses",
        "_retention_seconds",
        "_sink",
        "_speakers",
        "_tool_started",
        "_usage",
        "_usage_interval",
        "_usage_written_at",
        "connection_id",
        "conversation",
        "model",
        "session_id",
        "speaker_hint",
        "started_at",
        "turn_taking",
    )

    def __init__(
        self,
        *,
        session_id: str,
        connection_id: str,
        model: str,
        started_at: datetime,
        history: Iterable[Turn],
        sink: RecordSink,
        counters: RecordCounters,
        next_seq: Callable[[], int],
        retention_seconds: int,
        usage_interval: float,
    ) -> None:
        """Record the connection's start (see :meth:`SessionRecorder.connection_started`)."""
        self.session_id = session_id
        self.connection_id = connection_id
        self.model = model
        self.started_at = _iso(started_at)
        self.conversation = TurnWindow(history)
        self.turn_taking = TurnTaking()
        self._sink = sink
        self._counters = counters
        self._next_seq = next_seq
        self._retention_seconds = retention_seconds
        self._usage_interval = usage_interval
        self._commits: dict[str, tuple[int, int]] = {}
        #: Who spoke each committed turn (``speaker_hint`` when it was committed).
        self._speakers: dict[str, str] = {}
        #: Set by the session core just before a commit: the turn's speaker (relay.meeting).
        self.speaker_hint: str | None = None
        self._usage: dict[str, int] = {}
        self._responses = 0
        self._usage_written_at = -math.inf
        self._ended: dict[str, Any] = {}
        self._tool_started: dict[str, int] = {}
        self._write_summary()

    # Session-facing API

    def on_upstream_event(self, event_type: str, raw: str | bytes) -> None:
        """Record what an upstream event of a type in :data:`RECORDED_EVENT_TYPES` carries.

        Other types return at once. Malformed, mistyped or oversized events are ignored
        and counted (``ignored_events``); nothing here raises on event content.
        """
        if event_type not in PARSED_EVENT_TYPES:
            self.turn_taking.observe(event_type)  # nothing to read in these
            return
        if len(raw) > MAX_RECORDED_EVENT_BYTES:
            self._counters.ignored_events += 1
            return
        try:
            event = json.loads(raw)
        except (ValueError, RecursionError):  # bad JSON, bad UTF-8, absurd nesting
            self._counters.ignored_events += 1
            return
        if not isinstance(event, dict) or event.get("type") != event_type:
            self._counters.ignored_events += 1
            return
        self.turn_taking.observe(event_type)
        now_ms = _now_ms()
        if event_type == INPUT_COMMITTED:
            self._remember_commit(event.get("item_id"), now_ms)
        elif event_type == TRANSCRIPTION_COMPLETED:
            item_id = event.get("item_id")
            commit = self._commits.pop(item_id, None) if isinstance(item_id, str) else None
            speaker = self._speakers.pop(item_id, None) if isinstance(item_id, str) else None
            self._add_turn(
                "user", event.get("transcript"), commit or (now_ms, None), item_id, speaker
            )
        elif event_type == OUTPUT_AUDIO_TRANSCRIPT_DONE:
            self._add_turn(
                "assistant", event.get("transcript"), (now_ms, None), event.get("item_id")
            )
        elif event_type == OUTPUT_TEXT_DONE:
            self._add_turn("assistant", event.get("text"), (now_ms, None), event.get("item_id"))
        else:
            self._add_response(event.get("response"))

    def connection_ended(
        self,
        *,
        close_code: int | None,
        close_reason: str = "",
        upstream_close_code: int | None = None,
        ended_at: datetime | None = None,
    ) -> None:
        """Record how the connection ended; the first call wins, later ones are ignored."""
        if self._ended:
            return
        ended: dict[str, Any] = {"ended_at": _iso(ended_at)}
        if _is_int(close_code):
            ended["close_code"] = close_code
        if isinstance(close_reason, str) and close_reason:
            ended["close_reason"] = conversation.clean_text(close_reason, MAX_CLOSE_REASON_CHARS)
        if _is_int(upstream_close_code):
            ended["upstream_close_code"] = upstream_close_code
        self._ended = ended
        self._write_summary()

    @property
    def usage(self) -> dict[str, int]:
        """Usage summed over this connection's ``response.done`` events so far."""
        return dict(self._usage)

    # Private

    def _remember_commit(self, item_id: object, now_ms: int) -> None:
        if not isinstance(item_id, str) or len(item_id) > conversation.MAX_ITEM_ID_CHARS:
            self._counters.ignored_events += 1
            return
        # The turn's place is taken now, so it sorts before the answer it triggers even
        # when its transcript arrives after that answer.
        self._commits[item_id] = (now_ms, self._next_seq())
        if len(self._commits) > MAX_PENDING_COMMITS:  # transcripts that never came
            del self._commits[next(iter(self._commits))]
        if self.speaker_hint is not None:
            self._speakers[item_id] = self.speaker_hint
            self.speaker_hint = None
            if len(self._speakers) > MAX_PENDING_COMMITS:
                del self._speakers[next(iter(self._speakers))]

    def chat_turn(self, sender: str, text: str) -> None:
        """A chat message that entered the conversation: a user turn by ``sender``."""
        self._add_turn("user", text, (_now_ms(), None), None, sender, via="chat")

    def _add_turn(
        self,
        role: str,
        text: object,
        place: tuple[int, int | None],
        item_id: object,
        speaker: str | None = None,
        via: str | None = None,
    ) -> None:
        if not isinstance(text, str):
            self._counters.ignored_events += 1
            return
        at_ms, seq = place
        turn = conversation.make_turn(
            role, text, times.key_time_from_epoch_ms(at_ms), item_id, speaker
        )
        if turn is None:  # nothing was said (an empty transcript is normal)
            return
        self.conversation.append(turn)
        item = items.turn_item(
            session_id=self.session_id,
            at_ms=at_ms,
            seq=self._next_seq() if seq is None else seq,
            role=turn.role,
            text=turn.text,
            expires_at=self._expires_at(),
            item_id=turn.item_id,
            speaker=turn.speaker,
            via=via,
        )
        self._sink(PutTurn(item))

    # Relay tool calls (recorded so a resumed session knows them and never runs one twice)

    def tool_call(
        self, *, call_id: str, name: str, arguments: str, output: str | None = None
    ) -> None:
        """Record a relay tool call when it starts (``output`` None) and again when it ends.

        Both writes go to one item (``TOOL#<started ms>#<call_id>``), the second rewriting
        the first with the output.
        """
        at_ms = self._tool_started.get(call_id)
        if at_ms is None:
            at_ms = self._tool_started[call_id] = _now_ms()
            while len(self._tool_started) > MAX_PENDING_COMMITS:
                del self._tool_started[next(iter(self._tool_started))]
        item: items.ToolCallRecord = {
            "pk": schema.session_pk(self.session_id),
            "sk": schema.tool_call_sk(at_ms, call_id),
            "session_id": self.session_id,
            "call_id": call_id,
            "name": name,
            "arguments": items.storable_text(arguments, MAX_TOOL_TEXT_CHARS),
            "at": times.key_time_from_epoch_ms(at_ms),
            "expires_at": self._expires_at(),
        }
        if output is not None:
            item["output"] = items.storable_text(output, MAX_TOOL_TEXT_CHARS)
        self._sink(PutTurn(item))

    def _add_response(self, response: object) -> None:
        if not isinstance(response, dict):
            self._counters.ignored_events += 1
            return
        self._responses += 1
        usage = response.get("usage")
        if isinstance(usage, dict):
            add_usage(self._usage, usage)
        # After the end no later write would carry it, so late usage goes out at once.
        if self._ended or time.monotonic() - self._usage_written_at >= self._usage_interval:
            self._write_summary()

    def _write_summary(self) -> None:
        values: dict[str, Any] = {
            "session_id": self.session_id,
            "connection_id": self.connection_id,
            "started_at": self.started_at,
            "model": self.model,
            "expires_at": self._expires_at(),
        }
        if self._responses:
            values["responses"] = self._responses
            values["usage"] = dict(self._usage)
            self._usage_written_at = time.monotonic()
        values.update(self._ended)
        self._sink(
            UpdateConnection(
                pk=schema.session_pk(self.session_id),
                sk=schema.connection_sk(self.started_at, self.connection_id),
                values=values,
            )
        )

    def _expires_at(self) -> int:
        return int(time.time()) + self._retention_seconds


def discard(op: RecordOp) -> None:
    """A sink that writes nothing (no table)."""
    del op


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _iso(moment: datetime | None) -> str:
    return times.key_time(moment) if moment is not None else times.key_time_from_epoch_ms(_now_ms())
