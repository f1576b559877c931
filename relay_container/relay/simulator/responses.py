"""The simulator's responses: ``response.create`` / ``.cancel`` and streaming one reply.

A reply is a synthesized voice (PCM16 24 kHz) in 100 ms chunks, paced at real time after
a short burst, interleaved with its transcript; then the ``.done`` events, the function
call a participant asked for if any, and ``response.done`` with usage.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import time
from typing import TYPE_CHECKING, Final

from relay.simulated_tools import function_call_events
from relay.simulator.protocol import JsonObject, error_event, new_id, usage
from relay.simulator.voice import BYTES_PER_MS, synthesize_reply

if TYPE_CHECKING:
    from relay.simulator.session import SimulatedSession

REPLY_CHUNK_MS: Final = 100
#: OpenAI sends audio faster than real time at first; this much is sent without pacing.
REPLY_BURST_MS: Final = 300


async def on_response_create(sim: SimulatedSession, event: JsonObject) -> None:
    """Start a response unless one is already active (OpenAI's rule)."""
    if sim.response_active:
        await sim.send(
            error_event(
                "conversation_already_has_active_response",
                "Conversation already has an active response in progress.",
                event_id=event.get("event_id"),
            )
        )
        return
    asked = event.get("response")
    metadata = asked.get("metadata") if isinstance(asked, dict) else None
    # GA: at most 16 string pairs; anything else is not echoed.
    valid = (
        isinstance(metadata, dict)
        and len(metadata) <= 16
        and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    )
    sim.start_response(metadata if valid else None)


async def on_response_cancel(sim: SimulatedSession, event: JsonObject) -> None:
    """Cancel the active response, or say there is none."""
    if not sim.response_active:
        await sim.send(
            error_event(
                "response_cancel_not_active",
                "Cancellation failed: no active response found",
                event_id=event.get("event_id"),
            )
        )
        return
    sim.cancel_response("client_cancelled")


async def stream_response(sim: SimulatedSession, metadata: JsonObject | None = None) -> None:
    """Stream one audio reply; ends with response.done (completed or cancelled)."""
    response_id, item_id = new_id("resp"), new_id("item")
    heard_ms = sum(s["audio_end_ms"] - s["audio_start_ms"] for s in sim.record.speech[-1:])
    transcript = f"This is the simulated model. I heard {heard_ms / 1000:.1f} seconds of speech."
    audio = synthesize_reply(sim.options.reply_ms)
    output = sim.session["audio"]["output"]
    record: JsonObject = {"id": response_id, "status": "in_progress", "audio_ms_sent": 0.0}
    sim.record.keep(sim.record.responses, record)
    response: JsonObject = {
        "object": "realtime.response",
        "id": response_id,
        "status": "in_progress",
        "status_details": None,
        "output": [],
        "conversation_id": sim.conversation_id,
        "output_modalities": ["audio"],
        "max_output_tokens": "inf",
        "audio": {"output": {"format": output["format"], "voice": output["voice"]}},
        "usage": None,
        "metadata": metadata,
    }
    await sim.send({"type": "response.created", "response": response})
    item: JsonObject = {
        "id": item_id,
        "type": "message",
        "object": "realtime.item",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    previous, sim.last_item_id = sim.last_item_id, item_id
    sim.items[item_id] = {"role": "assistant", "audio_ms": 0.0}
    where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
    in_response = {"response_id": response_id, "output_index": 0}
    await sim.send({"type": "response.output_item.added", **in_response, "item": item})
    await sim.send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
    part = {"type": "audio", "transcript": ""}
    await sim.send(
        {"type": "response.content_part.added", **where, "content_index": 0, "part": part}
    )
    if sim.options.think_ms > 0:  # the model's inference, cut short by a cancel
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sim.cancelled.wait(), sim.options.think_ms / 1000)

    words = transcript.split(" ")
    chunk_bytes = REPLY_CHUNK_MS * BYTES_PER_MS
    chunks = [audio[i : i + chunk_bytes] for i in range(0, len(audio), chunk_bytes)]
    words_said = 0
    started = time.monotonic()
    for n, chunk in enumerate(chunks):
        if sim.cancelled.is_set():
            break
        await sim.send(
            {
                "type": "response.output_audio.delta",
                **where,
                "content_index": 0,
                "delta": base64.b64encode(chunk).decode(),
            }
        )
        sent_ms = sim.items[item_id]["audio_ms"] = (
            sim.items[item_id]["audio_ms"] + len(chunk) / BYTES_PER_MS
        )
        record["audio_ms_sent"] = sent_ms
        due_words = math.ceil(len(words) * (n + 1) / len(chunks))
        while words_said < due_words:
            delta = words[words_said] + (" " if words_said < len(words) - 1 else "")
            words_said += 1
            await sim.send(
                {
                    "type": "response.output_audio_transcript.delta",
                    **where,
                    "content_index": 0,
                    "delta": delta,
                }
            )
        # Real-time pacing after a burst: sleep until this chunk's end is due.
        due = started + max(0.0, sent_ms - REPLY_BURST_MS) / 1000 * sim.options.pace
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sim.cancelled.wait(), max(0.0, due - time.monotonic()))

    status = "cancelled" if sim.cancelled.is_set() else "completed"
    said = "".join(w + " " for w in words[:words_said]).strip()
    record["status"] = status
    if status == "cancelled":
        record["reason"] = sim.cancel_reason
    content = [{"type": "output_audio", "transcript": said}]
    item = {**item, "status": "completed" if status == "completed" else "incomplete"}
    item["content"] = content
    if status == "completed":
        await sim.send({"type": "response.output_audio.done", **where, "content_index": 0})
        await sim.send(
            {
                "type": "response.output_audio_transcript.done",
                **where,
                "content_index": 0,
                "transcript": said,
            }
        )
        await sim.send(
            {
                "type": "response.content_part.done",
                **where,
                "content_index": 0,
                "part": {"type": "audio", "transcript": said},
            }
        )
    await sim.send({"type": "response.output_item.done", **in_response, "item": item})
    await sim.send({"type": "conversation.item.done", "previous_item_id": previous, "item": item})
    outputs: list[JsonObject] = [item]
    if status == "completed" and sim.requested_call is not None:
        # The answer's audio first, then the call, as a real model does it.
        events, call_item = function_call_events(
            sim.requested_call,
            response_id=response_id,
            item_id=new_id("item"),
            call_id=new_id("call"),
            output_index=1,
        )
        sim.requested_call = None
        for event in events:
            await sim.send(event)
        outputs.append(call_item)
    response.update(
        status=status,
        status_details=(
            {"type": "cancelled", "reason": sim.cancel_reason} if status == "cancelled" else None
        ),
        output=outputs,
        usage=usage(heard_ms, record["audio_ms_sent"], said),
    )
    await sim.send({"type": "response.done", "response": response})
