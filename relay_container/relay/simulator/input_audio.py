"""The simulator's input audio buffer: appends, its energy VAD, commits and clears.

Server VAD from the energy of PCM16 24 kHz audio in 20 ms frames: speech starts after a
few loud frames and stops after ``silence_duration_ms`` of quiet, or once a turn has lasted
``max_turn_ms`` with no pause; then the user item is committed and, if the session asks
for it, a response starts.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from typing import TYPE_CHECKING, Final

from websockets.exceptions import ConnectionClosed

from relay.simulated_tools import speech_call
from relay.simulator.protocol import MIN_COMMIT_MS, JsonObject, error_event, new_id
from relay.simulator.voice import BYTES_PER_MS, SAMPLE_RATE, rms_dbfs

if TYPE_CHECKING:
    from relay.simulator.session import SimulatedSession

VAD_FRAME_MS: Final = 20
VAD_FRAME_SAMPLES: Final = SAMPLE_RATE * VAD_FRAME_MS // 1000
#: Consecutive loud frames before speech counts as started (a click is not a word).
VAD_ONSET_FRAMES: Final = 2


async def on_append(sim: SimulatedSession, event: JsonObject) -> None:
    """Record appended audio and run the energy VAD over it."""
    try:
        pcm = base64.b64decode(event.get("audio", ""), validate=True)
    except (binascii.Error, TypeError):
        await sim.send(
            error_event(
                "invalid_value",
                "Invalid 'audio'. Expected base64-encoded audio bytes.",
                param="audio",
                event_id=event.get("event_id"),
            )
        )
        return
    sim.record.note_audio(pcm)
    sim.buffered_ms += len(pcm) / BYTES_PER_MS
    turn_detection = sim.turn_detection()
    data = sim.pending + pcm
    frame_bytes = VAD_FRAME_SAMPLES * 2
    whole = len(data) - len(data) % frame_bytes
    sim.pending = data[whole:]
    for start in range(0, whole, frame_bytes):
        sim.audio_ms += VAD_FRAME_MS
        if turn_detection is not None:
            loud = rms_dbfs(data[start : start + frame_bytes]) > sim.options.vad_threshold_dbfs
            await _vad_frame(sim, loud, turn_detection)


async def _vad_frame(sim: SimulatedSession, loud: bool, turn_detection: JsonObject) -> None:
    if sim.speech_item is None:
        if sim.cut_continues:
            # The sound that outlasted a cut turn: wait for a pause or the answer's end.
            if loud and sim.response_active:
                return
            sim.cut_continues = False
        sim.loud_frames = sim.loud_frames + 1 if loud else 0
        if sim.loud_frames >= VAD_ONSET_FRAMES:
            await _speech_started(sim, turn_detection)
        return
    sim.quiet_ms = 0.0 if loud else sim.quiet_ms + VAD_FRAME_MS
    if sim.quiet_ms >= int(turn_detection.get("silence_duration_ms") or 500):
        await _speech_stopped(sim, turn_detection)
    elif sim.options.max_turn_ms and (
        sim.audio_ms - sim.speech_start_ms >= sim.options.max_turn_ms
    ):
        await _speech_stopped(sim, turn_detection)
        sim.cut_continues = loud


async def _speech_started(sim: SimulatedSession, turn_detection: JsonObject) -> None:
    sim.speech_item = new_id("item")
    sim.quiet_ms = 0.0
    onset_ms = sim.audio_ms - VAD_ONSET_FRAMES * VAD_FRAME_MS
    padding = int(turn_detection.get("prefix_padding_ms") or 0)
    sim.speech_start_ms = max(0.0, onset_ms - padding)
    if turn_detection.get("interrupt_response", True) and sim.response_active:
        sim.cancel_response("turn_detected")
    await sim.send(
        {
            "type": "input_audio_buffer.speech_started",
            "audio_start_ms": int(sim.speech_start_ms),
            "item_id": sim.speech_item,
        }
    )


async def _speech_stopped(sim: SimulatedSession, turn_detection: JsonObject) -> None:
    item_id = sim.speech_item
    assert item_id is not None
    sim.speech_item = None
    sim.loud_frames = 0
    end_ms = sim.audio_ms - sim.quiet_ms
    sim.record.keep(
        sim.record.speech,
        {"item_id": item_id, "audio_start_ms": sim.speech_start_ms, "audio_end_ms": end_ms},
    )
    await sim.send(
        {
            "type": "input_audio_buffer.speech_stopped",
            "audio_end_ms": int(end_ms),
            "item_id": item_id,
        }
    )
    await _commit(sim, item_id, (end_ms - sim.speech_start_ms) / 1000)
    if turn_detection.get("create_response", True) and not sim.response_active:
        sim.start_response()


async def on_commit(sim: SimulatedSession, event: JsonObject) -> None:
    """Manual commit (turn detection off, or a client that commits itself)."""
    if sim.buffered_ms < MIN_COMMIT_MS:
        await sim.send(
            error_event(
                "input_audio_buffer_commit_empty",
                f"Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has "
                f"{sim.buffered_ms:.2f}ms of audio.",
                event_id=event.get("event_id"),
            )
        )
        return
    await _commit(sim, sim.speech_item or new_id("item"), sim.buffered_ms / 1000)
    sim.speech_item = None


async def on_clear(sim: SimulatedSession, event: JsonObject) -> None:
    """Drop the uncommitted input audio."""
    sim.buffered_ms = 0.0
    sim.speech_item = None
    sim.loud_frames = 0
    await sim.send({"type": "input_audio_buffer.cleared"})


def heard_text(transcripts: tuple[str, ...], turn: int, heard_seconds: float) -> str:
    """What the simulator "heard" in a turn: the scripted words of the ``turn``-th turn when
    a script gives them (a scripted meeting, ``--transcripts``), else how long it was."""
    if transcripts:
        return transcripts[turn % len(transcripts)]
    return f"(heard {heard_seconds:.1f} s of speech)"


async def _commit(sim: SimulatedSession, item_id: str, heard_seconds: float) -> None:
    sim.buffered_ms = 0.0
    previous, sim.last_item_id = sim.last_item_id, item_id
    sim.items[item_id] = {"role": "user", "audio_ms": 0.0}
    await sim.send(
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
    await sim.send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
    await sim.send({"type": "conversation.item.done", "previous_item_id": previous, "item": item})
    sim.requested_call = (
        speech_call(sim.options.call_on_speech, heard_seconds, sim.session) or sim.requested_call
    )
    if sim.session["audio"]["input"].get("transcription"):
        text = heard_text(sim.options.transcripts, sim.turns_heard, heard_seconds)
        sim.turns_heard += 1  # the words are the turn's, whenever they arrive
        if sim.options.transcription_ms > 0:
            sim.later(_transcribe_later(sim, item_id, text, heard_seconds))
        else:
            await _transcribe(sim, item_id, text, heard_seconds)


async def _transcribe_later(
    sim: SimulatedSession, item_id: str, text: str, heard_seconds: float
) -> None:
    """The transcription ``transcription_ms`` after the commit (the client may be gone)."""
    await asyncio.sleep(sim.options.transcription_ms / 1000)
    with contextlib.suppress(ConnectionClosed):
        await _transcribe(sim, item_id, text, heard_seconds)


async def _transcribe(sim: SimulatedSession, item_id: str, text: str, heard_seconds: float) -> None:
    """The input transcription events of one committed item."""
    common = {"item_id": item_id, "content_index": 0}
    await sim.send(
        {
            "type": "conversation.item.input_audio_transcription.delta",
            **common,
            "delta": text,
        }
    )
    await sim.send(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            **common,
            "transcript": text,
            "usage": {"type": "duration", "seconds": round(heard_seconds, 1)},
        }
    )
