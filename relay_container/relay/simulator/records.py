"""What the simulator remembers of each connection, for tests, and how it is told to behave.

``GET /_sim/sessions`` serves these records. Everything is bounded, so a `make dev`
simulator left running for days stays small.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from relay.simulator.protocol import JsonObject
from relay.simulator.voice import BYTES_PER_MS

#: Bounds that keep a long-running dev simulator's memory flat.
MAX_SESSIONS_KEPT: Final = 64
#: Only the latest sessions keep their audio (60 s each by default): a few MB, not a leak.
AUDIO_SESSIONS_KEPT: Final = 8
#: Per-session bound on each recorded list (speech, responses, truncates, session updates).
MAX_RECORDED_ITEMS: Final = 1_000
MAX_EVENT_RUNS: Final = 2_000


@dataclass(frozen=True, slots=True)
class SimulatorOptions:
    """How the simulated model behaves; the defaults suit `make dev` and most tests."""

    reply_ms: int = 2_000
    #: 1.0 paces reply audio at real time after the burst; 0 sends it all at once.
    pace: float = 1.0
    vad_threshold_dbfs: float = -40.0
    #: When set, the Bearer key (or subprotocol key) must equal it, else HTTP 401.
    api_key: str | None = None
    max_recorded_seconds: float = 60.0
    voice: str = "marin"
    #: A turn with no pause ends after this long (0: only silence ends a turn).
    max_turn_ms: int = 8_000
    #: A declared function the model calls in every answer to speech, with
    #: ``{"text": <transcript>}`` (audio has no words to recognise; see simulated_tools).
    call_on_speech: str | None = None
    #: The words of each turn, in order (a scripted meeting: audio carries no words the
    #: simulator could recognise): a session's Nth turn is transcribed as the Nth line,
    #: cycling. Empty: "(heard 1.4 s of speech)".
    transcripts: tuple[str, ...] = ()
    #: The model's own time to its first audio: response.created comes at once, the first
    #: audio delta this many ms later (a real model's inference; bench/turn_latency.py).
    think_ms: int = 0
    #: Input transcription (when configured) arrives this many ms after the commit,
    #: without holding anything else up, as a real transcription model's does.
    transcription_ms: int = 0


@dataclass(slots=True)
class SessionRecord:
    """What one connection received and answered, as served by ``GET /_sim/sessions``."""

    index: int
    model: str | None
    auth: str
    subprotocol: str | None
    max_audio_bytes: int
    closed: bool = False
    close_code: int | None = None
    client_events: list[list[Any]] = field(default_factory=list)
    audio_bytes_received: int = 0
    speech: list[JsonObject] = field(default_factory=list)
    responses: list[JsonObject] = field(default_factory=list)
    truncates: list[JsonObject] = field(default_factory=list)
    session_updates: list[JsonObject] = field(default_factory=list)
    items_created: list[JsonObject] = field(default_factory=list)
    errors_sent: list[str | None] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)

    def note_event(self, event_type: str) -> None:
        """Append a client event type, run-length encoded, with a bound."""
        if self.client_events and self.client_events[-1][0] == event_type:
            self.client_events[-1][1] += 1
        elif len(self.client_events) < MAX_EVENT_RUNS:
            self.client_events.append([event_type, 1])

    def keep(self, records: list[JsonObject], entry: JsonObject) -> None:
        """Append to one of the recorded lists, up to its bound."""
        if len(records) < MAX_RECORDED_ITEMS:
            records.append(entry)

    def note_audio(self, pcm: bytes) -> None:
        """Count received audio and keep it up to the cap."""
        self.audio_bytes_received += len(pcm)
        room = self.max_audio_bytes - len(self.audio)
        if room > 0:
            self.audio += pcm[:room]

    def as_json(self) -> JsonObject:
        """The public stats of this session (no audio, no key)."""
        return {
            "index": self.index,
            "model": self.model,
            "auth": self.auth,
            "subprotocol": self.subprotocol,
            "closed": self.closed,
            "close_code": self.close_code,
            "client_events": self.client_events,
            "audio_ms_received": self.audio_bytes_received / BYTES_PER_MS,
            "speech": self.speech,
            "responses": self.responses,
            "truncates": self.truncates,
            "session_updates": self.session_updates,
            "items_created": self.items_created,
            "errors_sent": self.errors_sent,
        }
