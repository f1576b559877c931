"""A simulated OpenAI Realtime model (GA protocol) for `make dev` and the tests.

It owns one thing: behaving like ``wss://api.openai.com/v1/realtime`` closely enough that
the relay, the agent page and the SDK-based tests can hold a whole conversation with no
account anywhere. It refuses to be smarter than that: no language, no tools, no text
modality. Run it as ``python -m relay.simulator --host 127.0.0.1 --port 0``; when ready it
prints exactly one line, ``simulator listening on ws://HOST:PORT/v1/realtime``, and it exits
0 on SIGTERM/SIGINT. Tests may instead ``await serve_simulator(host, port, options)``.

What it does, in GA shapes (docs/openai-realtime.md §2):

- Handshake: WebSocket path ``/v1/realtime`` (``?model=`` recorded), HTTP 401 without
  ``Authorization: Bearer …`` (or the browser subprotocol ``openai-insecure-api-key.…``),
  or with a key other than ``--api-key`` when one is set. Selects ``realtime`` iff offered.
- Beta is dead, as at OpenAI: an ``OpenAI-Beta`` header or the ``openai-beta.realtime-v1``
  subprotocol gets an ``error`` event ``beta_api_shape_disabled`` and close 4000. Stricter
  than OpenAI (which answers ``missing_required_parameter``): a ``session.update`` whose
  ``session.type`` is not ``"realtime"`` is treated as the beta shape too, so a relay that
  passes these tests provably speaks GA. Beta-only session fields (``modalities``,
  ``voice``, ``turn_detection``… at the top level) get ``unknown_parameter`` errors.
- ``session.created`` on connect; ``session.update`` deep-merges into the session and is
  answered with ``session.updated`` carrying the whole merged session.
- Server VAD from the energy of appended PCM16 24 kHz audio (20 ms frames, threshold in
  dBFS): ``input_audio_buffer.speech_started`` / ``speech_stopped`` after
  ``silence_duration_ms`` of quiet, or once a turn has lasted ``max_turn_ms`` (8 s) with no
  pause (a looping clip, a noisy room: a real VAD ends such turns too, and the user of
  `make dev` must hear an answer). Sound that runs on unbroken past such a cut is the same
  sound, not a new speaker: it starts no turn, and so interrupts nothing, until it pauses or
  the answer is over. Then ``input_audio_buffer.committed``, the user item
  (``conversation.item.added`` / ``.done``), input transcription events when
  ``audio.input.transcription`` is set (text: ``(heard 1.4 s of speech)``), then, if
  ``create_response``, a response. Speech during a response cancels it when
  ``interrupt_response`` (``response.done`` status ``cancelled``, reason ``turn_detected``).
- A response: ``response.created``, ``response.output_item.added``,
  ``conversation.item.added``, ``response.content_part.added``, ``response.output_audio.delta``
  chunks (100 ms of a synthesized vowel-like voice, PCM16 24 kHz, paced at real time after a
  short burst) interleaved with ``response.output_audio_transcript.delta``, then the
  ``.done`` events and ``response.done`` with usage.
- ``response.create``, ``response.cancel``, ``input_audio_buffer.commit`` / ``.clear``,
  ``conversation.item.create`` / ``.delete`` / ``.truncate`` (answered with
  ``conversation.item.truncated``; ``audio_end_ms`` beyond the audio sent is an error, as
  at OpenAI). Unknown client events and malformed JSON get an ``error`` event and the
  session goes on.

What it records, for tests (the one chosen mechanism: HTTP GET on the same port):

- ``GET /_sim/sessions`` → JSON ``{"sessions": [...]}``, one object per connection in
  order: ``model``, ``auth`` (``bearer``/``subprotocol``), ``subprotocol``, ``closed``,
  ``close_code``, ``client_events`` (event types in order, run-length encoded as
  ``[type, count]`` pairs), ``audio_ms_received``, ``speech`` (VAD segments), ``responses``
  (id, status, audio ms sent), ``truncates`` (item_id, content_index, audio_end_ms,
  audio_ms_sent), ``session_updates`` (the ``session`` objects received),
  ``items_created`` (``role`` and ``text`` of each ``conversation.item.create``, e.g. a
  relay's resume seeds) and ``errors_sent`` (codes). Never a key, never audio.
- ``GET /_sim/sessions/<index>/audio`` → the PCM it received in that session, raw s16le
  24 kHz mono: the first ``max_recorded_seconds`` (60 s) of each of the latest 8 sessions.

Everything recorded is bounded (64 sessions, 1,000 entries per list, audio as above), so
a `make dev` simulator left running for days stays small.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import http
import json
import math
import signal
import sys
import time
import uuid
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from relay.simulated_tools import (
    RequestedCall,
    declared_functions,
    function_call_events,
    requested_call,
    speech_call,
)

JsonObject = dict[str, Any]

SAMPLE_RATE: Final = 24_000
BYTES_PER_MS: Final = SAMPLE_RATE * 2 // 1000
VAD_FRAME_MS: Final = 20
VAD_FRAME_SAMPLES: Final = SAMPLE_RATE * VAD_FRAME_MS // 1000
#: Consecutive loud frames before speech counts as started (a click is not a word).
VAD_ONSET_FRAMES: Final = 2
REPLY_CHUNK_MS: Final = 100
#: OpenAI sends audio faster than real time at first; this much is sent without pacing.
REPLY_BURST_MS: Final = 300
#: A manual commit needs at least this much buffered audio (OpenAI's rule).
MIN_COMMIT_MS: Final = 100
REALTIME_PATH: Final = "/v1/realtime"
SIM_PATH: Final = "/_sim/sessions"
BETA_SUBPROTOCOL: Final = "openai-beta.realtime-v1"
KEY_SUBPROTOCOL_PREFIX: Final = "openai-insecure-api-key."
BETA_CLOSE_CODE: Final = 4000
BETA_MESSAGE: Final = (
    "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."
)
GA_SESSION_FIELDS: Final = frozenset(
    {
        "type",
        "model",
        "output_modalities",
        "instructions",
        "audio",
        "include",
        "tracing",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "truncation",
        "prompt",
    }
)
CLIENT_EVENTS: Final = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.delete",
    "conversation.item.truncate",
    "response.create",
    "response.cancel",
)
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


# Synthesized voice ------------------------------------------------------------------------

#: Formant frequencies (Hz) of a few vowels, for a voice that sounds like talking.
VOWELS: Final = ((730, 1090, 2440), (530, 1840, 2480), (570, 840, 2410), (300, 870, 2240))
WAVETABLE_SIZE: Final = 1024


@lru_cache(maxsize=len(VOWELS))
def _vowel_wavetable(vowel: int) -> tuple[float, ...]:
    """One period of a 120 Hz glottal-ish tone whose harmonics are shaped by formants."""
    formants = VOWELS[vowel]
    f0 = 120.0
    harmonics = [
        (h, sum(1.0 / (1.0 + ((h * f0 - f) / 90.0) ** 2) for f in formants) / h**0.5)
        for h in range(1, int(3500 / f0))
    ]
    table = [
        sum(a * math.sin(2 * math.pi * h * i / WAVETABLE_SIZE) for h, a in harmonics)
        for i in range(WAVETABLE_SIZE)
    ]
    peak = max(abs(v) for v in table)
    return tuple(v / peak for v in table)


@lru_cache(maxsize=8)
def synthesize_reply(duration_ms: int) -> bytes:
    """PCM16 24 kHz of a vowel-like voice: 250 ms syllables with pitch contour and gaps.

    Deterministic, so tests can compare what was played with what was sent.
    """
    samples = array("h")
    syllable = SAMPLE_RATE // 4
    phase = 0.0
    for n in range(SAMPLE_RATE * duration_ms // 1000):
        index, at = divmod(n, syllable)
        table = _vowel_wavetable(index % len(VOWELS))
        # Pitch falls across a phrase of 8 syllables and wobbles a little within each.
        f0 = 140.0 - 3.0 * (index % 8) + 8.0 * math.sin(2 * math.pi * at / syllable)
        phase = (phase + f0 * WAVETABLE_SIZE / SAMPLE_RATE) % WAVETABLE_SIZE
        # Raised-cosine syllable envelope over 80 % of the syllable, then a short gap.
        x = at / (0.8 * syllable)
        envelope = 0.5 - 0.5 * math.cos(2 * math.pi * x) if x < 1.0 else 0.0
        samples.append(int(9000 * envelope * table[int(phase)]))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def rms_dbfs(pcm: bytes) -> float:
    """Loudness of PCM16 little-endian audio in dB relative to full scale."""
    samples = array("h", pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    if not samples:
        return -math.inf
    mean_square = sum(s * s for s in samples) / len(samples)
    return 10 * math.log10(mean_square / 32768**2) if mean_square else -math.inf


# Event helpers ---------------------------------------------------------------------------


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def error_event(
    code: str | None,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    param: str | None = None,
    event_id: str | None = None,
) -> JsonObject:
    """An OpenAI-shaped ``error`` server event."""
    return {
        "type": "error",
        "event_id": _id("event"),
        "error": {
            "type": error_type,
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        },
    }


def default_session(model: str, voice: str) -> JsonObject:
    """The GA session object a fresh connection starts with."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": _id("sess"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "You are a simulated voice agent.",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(time.time()) + 3600,
        "include": None,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": SAMPLE_RATE},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 500,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": SAMPLE_RATE},
                "voice": voice,
                "speed": 1.0,
            },
        },
    }


def deep_merge(base: JsonObject, update: JsonObject) -> JsonObject:
    """``update`` merged into a copy of ``base``; nested objects merge, the rest replaces."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _usage(input_ms: float, output_ms: float, transcript: str) -> JsonObject:
    # Roughly OpenAI's audio token rates: 10 tokens/s in, 20 tokens/s out.
    audio_in, audio_out = int(input_ms / 100), int(output_ms / 50)
    text_out = len(transcript.split())
    return {
        "total_tokens": audio_in + audio_out + text_out,
        "input_tokens": audio_in,
        "output_tokens": audio_out + text_out,
        "input_token_details": {
            "text_tokens": 0,
            "audio_tokens": audio_in,
            "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
    }


# One connection -----------------------------------------------------------------------------


class SimulatedSession:
    """One Realtime session on one connection: the event handlers and the reply task."""

    def __init__(
        self, ws: ServerConnection, record: SessionRecord, options: SimulatorOptions
    ) -> None:
        self.ws = ws
        self.record = record
        self.options = options
        self.session = default_session(record.model or "gpt-realtime-2.1", options.voice)
        self.conversation_id = _id("conv")
        # Items by id: role and, for assistant audio, how many ms were sent.
        self.items: dict[str, JsonObject] = {}
        self.last_item_id: str | None = None
        # Input audio buffer and VAD state.
        self.pending = b""
        self.audio_ms = 0.0
        self.buffered_ms = 0.0
        self.loud_frames = 0
        self.quiet_ms = 0.0
        self.speech_item: str | None = None
        self.speech_start_ms = 0.0
        # After a turn cut at max_turn_ms, the same unbroken sound is not a new turn.
        self.cut_continues = False
        # The one response in flight, its cancel signal and its record.
        self.response_task: asyncio.Task[None] | None = None
        self.cancel_reason: str | None = None
        self.cancelled = asyncio.Event()
        # A function a participant's text asked for, called in the next answer.
        self.requested_call: RequestedCall | None = None

    # Lifecycle

    async def run(self) -> None:
        """Send session.created, then handle client events until the connection closes."""
        try:
            await self.send({"type": "session.created", "session": self.session})
            async for message in self.ws:
                await self.handle(message)
        except ConnectionClosed:
            pass
        finally:
            if self.response_task is not None:
                self.response_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await self.response_task

    async def send(self, event: JsonObject) -> None:
        """Send one server event, giving it an event id."""
        event.setdefault("event_id", _id("event"))
        if event["type"] == "error" and len(self.record.errors_sent) < MAX_RECORDED_ITEMS:
            self.record.errors_sent.append(event["error"]["code"])
        await self.ws.send(json.dumps(event))

    async def handle(self, message: str | bytes) -> None:
        """Dispatch one client frame."""
        if isinstance(message, bytes):
            self.record.note_event("(binary)")
            await self.send(error_event("invalid_value", "Binary frames are not supported."))
            return
        try:
            event = json.loads(message)
        except ValueError:
            self.record.note_event("(invalid json)")
            await self.send(error_event("invalid_json", "The message is not valid JSON."))
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self.record.note_event("(no type)")
            await self.send(error_event("missing_required_parameter", "Missing 'type'."))
            return
        event_type = event["type"]
        self.record.note_event(event_type)
        client_event_id = event.get("event_id")
        handler = {
            "session.update": self.on_session_update,
            "input_audio_buffer.append": self.on_append,
            "input_audio_buffer.commit": self.on_commit,
            "input_audio_buffer.clear": self.on_clear,
            "conversation.item.create": self.on_item_create,
            "conversation.item.delete": self.on_item_delete,
            "conversation.item.truncate": self.on_truncate,
            "response.create": self.on_response_create,
            "response.cancel": self.on_response_cancel,
        }.get(event_type)
        if handler is None:
            await self.send(
                error_event(
                    "invalid_value",
                    f"Invalid value: '{event_type}'. Supported values are: "
                    + ", ".join(f"'{name}'" for name in CLIENT_EVENTS)
                    + ".",
                    param="type",
                    event_id=client_event_id,
                )
            )
            return
        await handler(event)

    # Session

    async def on_session_update(self, event: JsonObject) -> None:
        """Merge a GA session; the beta shape closes the connection like OpenAI's."""
        update = event.get("session")
        if not isinstance(update, dict) or update.get("type") != "realtime":
            await self.send(error_event("beta_api_shape_disabled", BETA_MESSAGE))
            await self.ws.close(BETA_CLOSE_CODE, "beta_api_shape_disabled")
            return
        self.record.keep(self.record.session_updates, update)
        unknown = sorted(set(update) - GA_SESSION_FIELDS)
        if unknown:
            await self.send(
                error_event(
                    "unknown_parameter",
                    f"Unknown parameter: 'session.{unknown[0]}'.",
                    param=f"session.{unknown[0]}",
                    event_id=event.get("event_id"),
                )
            )
            return
        if "model" in update and update["model"] != self.session["model"]:
            await self.send(
                error_event(
                    "invalid_value",
                    "The model of a session cannot be changed.",
                    param="session.model",
                    event_id=event.get("event_id"),
                )
            )
            return
        self.session = deep_merge(self.session, update)
        await self.send({"type": "session.updated", "session": self.session})

    def _turn_detection(self) -> JsonObject | None:
        value = self.session["audio"]["input"].get("turn_detection")
        return value if isinstance(value, dict) else None

    # Input audio

    async def on_append(self, event: JsonObject) -> None:
        """Record appended audio and run the energy VAD over it."""
        try:
            pcm = base64.b64decode(event.get("audio", ""), validate=True)
        except (binascii.Error, TypeError):
            await self.send(
                error_event(
                    "invalid_value",
                    "Invalid 'audio'. Expected base64-encoded audio bytes.",
                    param="audio",
                    event_id=event.get("event_id"),
                )
            )
            return
        self.record.note_audio(pcm)
        self.buffered_ms += len(pcm) / BYTES_PER_MS
        turn_detection = self._turn_detection()
        data = self.pending + pcm
        frame_bytes = VAD_FRAME_SAMPLES * 2
        whole = len(data) - len(data) % frame_bytes
        self.pending = data[whole:]
        for start in range(0, whole, frame_bytes):
            self.audio_ms += VAD_FRAME_MS
            if turn_detection is not None:
                loud = rms_dbfs(data[start : start + frame_bytes]) > self.options.vad_threshold_dbfs
                await self._vad_frame(loud, turn_detection)

    async def _vad_frame(self, loud: bool, turn_detection: JsonObject) -> None:
        if self.speech_item is None:
            if self.cut_continues:
                # The sound that outlasted a cut turn: wait for a pause or the answer's end.
                if loud and self.response_active:
                    return
                self.cut_continues = False
            self.loud_frames = self.loud_frames + 1 if loud else 0
            if self.loud_frames >= VAD_ONSET_FRAMES:
                await self._speech_started(turn_detection)
            return
        self.quiet_ms = 0.0 if loud else self.quiet_ms + VAD_FRAME_MS
        if self.quiet_ms >= int(turn_detection.get("silence_duration_ms") or 500):
            await self._speech_stopped(turn_detection)
        elif self.options.max_turn_ms and (
            self.audio_ms - self.speech_start_ms >= self.options.max_turn_ms
        ):
            await self._speech_stopped(turn_detection)
            self.cut_continues = loud

    async def _speech_started(self, turn_detection: JsonObject) -> None:
        self.speech_item = _id("item")
        self.quiet_ms = 0.0
        onset_ms = self.audio_ms - VAD_ONSET_FRAMES * VAD_FRAME_MS
        padding = int(turn_detection.get("prefix_padding_ms") or 0)
        self.speech_start_ms = max(0.0, onset_ms - padding)
        if turn_detection.get("interrupt_response", True) and self.response_active:
            self._cancel_response("turn_detected")
        await self.send(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": int(self.speech_start_ms),
                "item_id": self.speech_item,
            }
        )

    async def _speech_stopped(self, turn_detection: JsonObject) -> None:
        item_id = self.speech_item
        assert item_id is not None
        self.speech_item = None
        self.loud_frames = 0
        end_ms = self.audio_ms - self.quiet_ms
        self.record.keep(
            self.record.speech,
            {"item_id": item_id, "audio_start_ms": self.speech_start_ms, "audio_end_ms": end_ms},
        )
        await self.send(
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": int(end_ms),
                "item_id": item_id,
            }
        )
        await self._commit(item_id, (end_ms - self.speech_start_ms) / 1000)
        if turn_detection.get("create_response", True) and not self.response_active:
            self._start_response()

    async def on_commit(self, event: JsonObject) -> None:
        """Manual commit (turn detection off, or a client that commits itself)."""
        if self.buffered_ms < MIN_COMMIT_MS:
            await self.send(
                error_event(
                    "input_audio_buffer_commit_empty",
                    f"Error committing input audio buffer: buffer too small. Expected at least "
                    f"{MIN_COMMIT_MS}ms of audio, but buffer only has "
                    f"{self.buffered_ms:.2f}ms of audio.",
                    event_id=event.get("event_id"),
                )
            )
            return
        await self._commit(self.speech_item or _id("item"), self.buffered_ms / 1000)
        self.speech_item = None

    async def on_clear(self, event: JsonObject) -> None:
        """Drop the uncommitted input audio."""
        self.buffered_ms = 0.0
        self.speech_item = None
        self.loud_frames = 0
        await self.send({"type": "input_audio_buffer.cleared"})

    async def _commit(self, item_id: str, heard_seconds: float) -> None:
        self.buffered_ms = 0.0
        previous, self.last_item_id = self.last_item_id, item_id
        self.items[item_id] = {"role": "user", "audio_ms": 0.0}
        await self.send(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": previous,
                "item_id": item_id,
            }
        )
        item = {
            "id": item_id,
            "type": "message",
            "object": "realtime.item",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        await self.send(
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
        )
        await self.send(
            {"type": "conversation.item.done", "previous_item_id": previous, "item": item}
        )
        self.requested_call = (
            speech_call(self.options.call_on_speech, heard_seconds, self.session)
            or self.requested_call
        )
        if self.session["audio"]["input"].get("transcription"):
            text = f"(heard {heard_seconds:.1f} s of speech)"
            common = {"item_id": item_id, "content_index": 0}
            await self.send(
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    **common,
                    "delta": text,
                }
            )
            await self.send(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    **common,
                    "transcript": text,
                    "usage": {"type": "duration", "seconds": round(heard_seconds, 1)},
                }
            )

    # Conversation items

    async def on_item_create(self, event: JsonObject) -> None:
        """Add a client-made item to the conversation."""
        item = event.get("item")
        if not isinstance(item, dict):
            await self.send(error_event("missing_required_parameter", "Missing 'item'."))
            return
        content = item.get("content")
        part = content[0] if isinstance(content, list) and content else {}
        self.record.keep(
            self.record.items_created,
            {
                "role": item.get("role"),
                "text": part.get("text") if isinstance(part, dict) else None,
            },
        )
        self.requested_call = (
            requested_call(item, declared_functions(self.session)) or self.requested_call
        )
        item = {"object": "realtime.item", "status": "completed", **item}
        item.setdefault("id", _id("item"))
        previous, self.last_item_id = self.last_item_id, item["id"]
        self.items[item["id"]] = {"role": item.get("role"), "audio_ms": 0.0}
        await self.send(
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
        )
        await self.send(
            {"type": "conversation.item.done", "previous_item_id": previous, "item": item}
        )

    async def on_item_delete(self, event: JsonObject) -> None:
        """Delete an item by id."""
        item_id = event.get("item_id")
        if self.items.pop(str(item_id), None) is None:
            await self._no_such_item(item_id, event)
            return
        await self.send({"type": "conversation.item.deleted", "item_id": item_id})

    async def on_truncate(self, event: JsonObject) -> None:
        """Truncate an assistant item's audio at what the client says it played."""
        item_id = event.get("item_id")
        audio_end_ms = event.get("audio_end_ms")
        content_index = event.get("content_index", 0)
        item = self.items.get(str(item_id))
        if item is None:
            await self._no_such_item(item_id, event)
            return
        sent_ms = float(item["audio_ms"])
        self.record.keep(
            self.record.truncates,
            {
                "item_id": item_id,
                "content_index": content_index,
                "audio_end_ms": audio_end_ms,
                "audio_ms_sent": sent_ms,
            },
        )
        if item["role"] != "assistant" or not isinstance(audio_end_ms, int) or audio_end_ms < 0:
            await self.send(
                error_event(
                    "invalid_value",
                    "Only assistant audio can be truncated, at a non-negative integer ms.",
                    param="audio_end_ms",
                    event_id=event.get("event_id"),
                )
            )
            return
        if audio_end_ms > sent_ms:
            await self.send(
                error_event(
                    "invalid_value",
                    f"Audio content of {sent_ms:.0f}ms is already shorter than {audio_end_ms}ms",
                    param="audio_end_ms",
                    event_id=event.get("event_id"),
                )
            )
            return
        item["audio_ms"] = float(audio_end_ms)
        await self.send(
            {
                "type": "conversation.item.truncated",
                "item_id": item_id,
                "content_index": content_index,
                "audio_end_ms": audio_end_ms,
            }
        )

    async def _no_such_item(self, item_id: object, event: JsonObject) -> None:
        await self.send(
            error_event(
                "item_not_found",
                f"Item with item_id not found: {item_id}",
                param="item_id",
                event_id=event.get("event_id"),
            )
        )

    # Responses

    @property
    def response_active(self) -> bool:
        """Whether a response is being generated now."""
        return self.response_task is not None and not self.response_task.done()

    async def on_response_create(self, event: JsonObject) -> None:
        """Start a response unless one is already active (OpenAI's rule)."""
        if self.response_active:
            await self.send(
                error_event(
                    "conversation_already_has_active_response",
                    "Conversation already has an active response in progress.",
                    event_id=event.get("event_id"),
                )
            )
            return
        self._start_response()

    async def on_response_cancel(self, event: JsonObject) -> None:
        """Cancel the active response, or say there is none."""
        if not self.response_active:
            await self.send(
                error_event(
                    "response_cancel_not_active",
                    "Cancellation failed: no active response found",
                    event_id=event.get("event_id"),
                )
            )
            return
        self._cancel_response("client_cancelled")

    def _start_response(self) -> None:
        self.cancel_reason = None
        self.cancelled = asyncio.Event()
        self.response_task = asyncio.create_task(self._respond(), name="simulated-response")

    def _cancel_response(self, reason: str) -> None:
        self.cancel_reason = reason
        self.cancelled.set()

    async def _respond(self) -> None:
        """Stream one audio reply; ends with response.done (completed or cancelled)."""
        response_id, item_id = _id("resp"), _id("item")
        heard_ms = sum(s["audio_end_ms"] - s["audio_start_ms"] for s in self.record.speech[-1:])
        transcript = (
            f"This is the simulated model. I heard {heard_ms / 1000:.1f} seconds of speech."
        )
        audio = synthesize_reply(self.options.reply_ms)
        output = self.session["audio"]["output"]
        record: JsonObject = {"id": response_id, "status": "in_progress", "audio_ms_sent": 0.0}
        self.record.keep(self.record.responses, record)
        response: JsonObject = {
            "object": "realtime.response",
            "id": response_id,
            "status": "in_progress",
            "status_details": None,
            "output": [],
            "conversation_id": self.conversation_id,
            "output_modalities": ["audio"],
            "max_output_tokens": "inf",
            "audio": {"output": {"format": output["format"], "voice": output["voice"]}},
            "usage": None,
            "metadata": None,
        }
        await self.send({"type": "response.created", "response": response})
        item: JsonObject = {
            "id": item_id,
            "type": "message",
            "object": "realtime.item",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        previous, self.last_item_id = self.last_item_id, item_id
        self.items[item_id] = {"role": "assistant", "audio_ms": 0.0}
        where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
        in_response = {"response_id": response_id, "output_index": 0}
        await self.send({"type": "response.output_item.added", **in_response, "item": item})
        await self.send(
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
        )
        part = {"type": "audio", "transcript": ""}
        await self.send(
            {"type": "response.content_part.added", **where, "content_index": 0, "part": part}
        )

        words = transcript.split(" ")
        chunk_bytes = REPLY_CHUNK_MS * BYTES_PER_MS
        chunks = [audio[i : i + chunk_bytes] for i in range(0, len(audio), chunk_bytes)]
        words_said = 0
        started = time.monotonic()
        for n, chunk in enumerate(chunks):
            if self.cancelled.is_set():
                break
            await self.send(
                {
                    "type": "response.output_audio.delta",
                    **where,
                    "content_index": 0,
                    "delta": base64.b64encode(chunk).decode(),
                }
            )
            sent_ms = self.items[item_id]["audio_ms"] = (
                self.items[item_id]["audio_ms"] + len(chunk) / BYTES_PER_MS
            )
            record["audio_ms_sent"] = sent_ms
            due_words = math.ceil(len(words) * (n + 1) / len(chunks))
            while words_said < due_words:
                delta = words[words_said] + (" " if words_said < len(words) - 1 else "")
                words_said += 1
                await self.send(
                    {
                        "type": "response.output_audio_transcript.delta",
                        **where,
                        "content_index": 0,
                        "delta": delta,
                    }
                )
            # Real-time pacing after a burst: sleep until this chunk's end is due.
            due = started + max(0.0, sent_ms - REPLY_BURST_MS) / 1000 * self.options.pace
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.cancelled.wait(), max(0.0, due - time.monotonic()))

        status = "cancelled" if self.cancelled.is_set() else "completed"
        said = "".join(w + " " for w in words[:words_said]).strip()
        record["status"] = status
        if status == "cancelled":
            record["reason"] = self.cancel_reason
        content = [{"type": "output_audio", "transcript": said}]
        item = {**item, "status": "completed" if status == "completed" else "incomplete"}
        item["content"] = content
        if status == "completed":
            await self.send({"type": "response.output_audio.done", **where, "content_index": 0})
            await self.send(
                {
                    "type": "response.output_audio_transcript.done",
                    **where,
                    "content_index": 0,
                    "transcript": said,
                }
            )
            await self.send(
                {
                    "type": "response.content_part.done",
                    **where,
                    "content_index": 0,
                    "part": {"type": "audio", "transcript": said},
                }
            )
        await self.send({"type": "response.output_item.done", **in_response, "item": item})
        await self.send(
            {"type": "conversation.item.done", "previous_item_id": previous, "item": item}
        )
        outputs: list[JsonObject] = [item]
        if status == "completed" and self.requested_call is not None:
            # The answer's audio first, then the call, as a real model does it.
            events, call_item = function_call_events(
                self.requested_call,
                response_id=response_id,
                item_id=_id("item"),
                call_id=_id("call"),
                output_index=1,
            )
            self.requested_call = None
            for event in events:
                await self.send(event)
            outputs.append(call_item)
        response.update(
            status=status,
            status_details=(
                {"type": "cancelled", "reason": self.cancel_reason}
                if status == "cancelled"
                else None
            ),
            output=outputs,
            usage=_usage(heard_ms, record["audio_ms_sent"], said),
        )
        await self.send({"type": "response.done", "response": response})


# The server ------------------------------------------------------------------------------


class Simulator:
    """The handshake rules, the per-connection handler and the recorded sessions."""

    def __init__(self, options: SimulatorOptions) -> None:
        self.options = options
        self.records: deque[SessionRecord] = deque(maxlen=MAX_SESSIONS_KEPT)
        self.count = 0

    def select_subprotocol(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        """Answer ``realtime`` iff offered (browsers fail otherwise); never echo the key."""
        return Subprotocol("realtime") if "realtime" in offered else None

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Serve the stats endpoints; refuse wrong paths and missing or wrong keys."""
        url = urlsplit(request.path)
        if url.path.startswith(SIM_PATH):
            return self._stats_response(connection, url.path)
        if url.path != REALTIME_PATH:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not found\n")
        key = self._offered_key(request.headers)
        if key is None:
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, "Missing bearer key\n")
        if self.options.api_key is not None and key != self.options.api_key:
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, "Incorrect API key\n")
        return None

    def _offered_key(self, headers: Headers) -> str | None:
        authorization = headers.get("Authorization", "")
        if authorization.startswith("Bearer ") and authorization[7:].strip():
            return authorization[7:].strip()
        for value in headers.get_all("Sec-WebSocket-Protocol"):
            for name in value.split(","):
                if name.strip().startswith(KEY_SUBPROTOCOL_PREFIX):
                    return name.strip()[len(KEY_SUBPROTOCOL_PREFIX) :]
        return None

    def _stats_response(self, connection: ServerConnection, path: str) -> Response:
        parts = path[len(SIM_PATH) :].strip("/").split("/")
        if parts == [""]:
            body = json.dumps({"sessions": [r.as_json() for r in self.records]}).encode()
            return _response(http.HTTPStatus.OK, "application/json", body)
        if len(parts) == 2 and parts[1] == "audio" and parts[0].isdigit():
            for record in self.records:
                if record.index == int(parts[0]):
                    return _response(http.HTTPStatus.OK, "application/octet-stream", record.audio)
        return connection.respond(http.HTTPStatus.NOT_FOUND, "No such session\n")

    async def handler(self, ws: ServerConnection) -> None:
        """Run one simulated session; a beta-shaped handshake is closed with 4000."""
        request = ws.request
        assert request is not None
        query = parse_qs(urlsplit(request.path).query)
        headers = request.headers
        record = SessionRecord(
            index=self.count,
            model=query.get("model", [None])[0],
            auth="bearer" if headers.get("Authorization") else "subprotocol",
            subprotocol=ws.subprotocol,
            max_audio_bytes=int(self.options.max_recorded_seconds * 1000 * BYTES_PER_MS),
        )
        self.count += 1
        self.records.append(record)
        for old in list(self.records)[:-AUDIO_SESSIONS_KEPT]:
            old.audio = bytearray()
            old.max_audio_bytes = 0
        try:
            offered = ",".join(headers.get_all("Sec-WebSocket-Protocol"))
            if "OpenAI-Beta" in headers or BETA_SUBPROTOCOL in offered:
                await ws.send(json.dumps(error_event("beta_api_shape_disabled", BETA_MESSAGE)))
                record.errors_sent.append("beta_api_shape_disabled")
                await ws.close(BETA_CLOSE_CODE, "beta_api_shape_disabled")
                return
            await SimulatedSession(ws, record, self.options).run()
        finally:
            record.closed = True
            record.close_code = ws.close_code


def _response(status: http.HTTPStatus, content_type: str, body: bytes | bytearray) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, bytes(body))


async def serve_simulator(
    host: str = "127.0.0.1", port: int = 0, options: SimulatorOptions | None = None
) -> Server:
    """Start the simulated model; the caller closes the returned server."""
    simulator = Simulator(options or SimulatorOptions())
    return await serve(
        simulator.handler,
        host,
        port,
        process_request=simulator.process_request,
        select_subprotocol=simulator.select_subprotocol,
        compression=None,
        max_size=None,
    )


def listening_url(server: Server) -> str:
    """The ``ws://HOST:PORT/v1/realtime`` URL the server is bound to."""
    host, port = server.sockets[0].getsockname()[:2]
    return f"ws://{host}:{port}{REALTIME_PATH}"


async def _main(host: str, port: int, options: SimulatorOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await serve_simulator(host, port, options)
    sys.stdout.write(f"simulator listening on {listening_url(server)}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m relay.simulator``: run until SIGTERM/SIGINT."""
    defaults = SimulatorOptions()
    parser = argparse.ArgumentParser(prog="python -m relay.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply-ms", type=int, default=defaults.reply_ms)
    parser.add_argument("--pace", type=float, default=defaults.pace)
    parser.add_argument("--vad-threshold-dbfs", type=float, default=defaults.vad_threshold_dbfs)
    parser.add_argument("--api-key", default=None, help="require exactly this key")
    parser.add_argument(
        "--max-turn-ms",
        type=int,
        default=defaults.max_turn_ms,
        help="end a turn with no pause after this long (0: only silence ends a turn)",
    )
    parser.add_argument(
        "--call-on-speech", default=None, help="call this declared function after each turn"
    )
    args = parser.parse_args(argv)
    if args.max_turn_ms < 0:
        parser.error("--max-turn-ms must be 0 or more")
    options = SimulatorOptions(
        reply_ms=args.reply_ms,
        pace=args.pace,
        vad_threshold_dbfs=args.vad_threshold_dbfs,
        api_key=args.api_key,
        max_turn_ms=args.max_turn_ms,
        call_on_speech=args.call_on_speech,
    )
    asyncio.run(_main(args.host, args.port, options))


if __name__ == "__main__":
    main()
