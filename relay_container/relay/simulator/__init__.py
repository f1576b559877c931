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

Modules, one idea each: ``voice`` (the synthesized reply and the VAD's loudness),
``protocol`` (GA shapes), ``records`` (options and what is recorded), ``session`` (one
connection's state and dispatch) with its handlers ``input_audio``, ``items`` and
``responses``, ``server`` (handshake, stats, serving) and ``command`` (the process).
"""

from __future__ import annotations

from relay.simulator.command import main
from relay.simulator.protocol import deep_merge, default_session, error_event
from relay.simulator.records import SessionRecord, SimulatorOptions
from relay.simulator.server import Simulator, listening_url, serve_simulator
from relay.simulator.session import SimulatedSession
from relay.simulator.voice import BYTES_PER_MS, SAMPLE_RATE, rms_dbfs, synthesize_reply

__all__ = [
    "BYTES_PER_MS",
    "SAMPLE_RATE",
    "SessionRecord",
    "SimulatedSession",
    "Simulator",
    "SimulatorOptions",
    "deep_merge",
    "default_session",
    "error_event",
    "listening_url",
    "main",
    "rms_dbfs",
    "serve_simulator",
    "synthesize_reply",
]
