"""A rollover never clips an utterance, even with a voice detector that reports speech late.

A real model's VAD says ``speech_started`` some hundreds of ms after speech begins; a
rollover that switches "between turns" in that gap used to send the opening words to the
old session, which is then closed. The fake model here reports speech only after
``DELAY_CHUNKS`` chunks (260 ms) and transcribes exactly the chunks it heard; the relay
rolls over every 0.77 s while a speaker talks in bursts. Every utterance must come back
whole, in one transcript.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from relay.server import Relay
from tests.relay.conftest import FakeUpstream, StartRelay, eventually, mint, open_client, recv_until

CHUNK_SECONDS = 0.02
DELAY_CHUNKS = 13  # speech_started 260 ms after speech begins
STOP_CHUNKS = 30  # 600 ms of silence ends a turn (longer than the 0.5 s replay)
WORDS = 15  # 300 ms of speech per utterance
UTTERANCES = 6
#: Silence after each turn's transcript before the next utterance, in chunks. The rollover
#: timer restarts at each switch, which happens at the turn's end (the transcript), and
#: fires 0.77 s later: just after the next utterance began (0.56-0.70 s), before the
#: model's VAD reports it. That is the gap where a switch used to clip the opening words.
PAUSES = (28, 31, 34, 30, 33, 29)


async def late_vad_model(ws: ServerConnection, upstream: FakeUpstream) -> None:
    """GA events only; one chunk of "audio" is one word (or silence when empty)."""
    with contextlib.suppress(ConnectionClosed):
        await ws.send(json.dumps({"type": "session.created", "session": {"type": "realtime"}}))
        heard: list[str] = []
        speaking, speech_run, silence_run, items = False, 0, 0, 0
        async for message in ws:
            event = json.loads(message)
            kind = event["type"]
            if kind == "session.update":
                await ws.send(json.dumps({"type": "session.updated", "session": {}}))
            elif kind == "conversation.item.create":
                for ack in ("conversation.item.added", "conversation.item.done"):
                    await ws.send(json.dumps({"type": ack, "item": {}}))
            elif kind == "input_audio_buffer.append":
                word = base64.b64decode(event["audio"]).decode()
                if word:
                    heard.append(word)
                    speech_run, silence_run = speech_run + 1, 0
                    if not speaking and speech_run >= DELAY_CHUNKS:
                        speaking = True
                        await ws.send(json.dumps({"type": "input_audio_buffer.speech_started"}))
                    continue
                silence_run += 1
                if silence_run < STOP_CHUNKS:
                    continue
                if speaking:
                    items += 1
                    item = f"item_{id(ws)}_{items}"
                    for done in (
                        {"type": "input_audio_buffer.speech_stopped"},
                        {"type": "input_audio_buffer.committed", "item_id": item},
                        {
                            "type": "conversation.item.input_audio_transcription.completed",
                            "item_id": item,
                            "transcript": " ".join(heard),
                        },
                    ):
                        await ws.send(json.dumps(done))
                speaking, speech_run, heard = False, 0, []


def chunk(word: str) -> str:
    audio = base64.b64encode(word.encode()).decode()
    return json.dumps({"type": "input_audio_buffer.append", "audio": audio})


async def speak(relay: Relay) -> tuple[list[str], list[str]]:
    """Talk in bursts at real-time pace; return what was said and what was transcribed."""
    said: list[str] = []
    transcripts: list[str] = []
    async with open_client(relay, mint("bot-rolling")) as ws:
        await recv_until(ws, "session.created")

        async def listen() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for raw in ws:
                    event: dict[str, Any] = json.loads(raw)
                    if event["type"].endswith("input_audio_transcription.completed"):
                        transcripts.append(event["transcript"])

        listener = asyncio.create_task(listen())
        loop = asyncio.get_running_loop()
        start = loop.time()
        script = [
            word
            for u in range(UTTERANCES)
            for word in [
                *([""] * PAUSES[u]),
                *(f"u{u}w{i}" for i in range(WORDS)),
                *([""] * STOP_CHUNKS),
            ]
        ]
        for sent, word in enumerate(script, start=1):
            await ws.send(chunk(word))
            # Paced like a microphone: chunk n leaves at n × 20 ms, whatever the loop did.
            await asyncio.sleep(max(0.0, start + sent * CHUNK_SECONDS - loop.time()))
        said = [" ".join(f"u{u}w{i}" for i in range(WORDS)) for u in range(UTTERANCES)]
        await eventually(lambda: len(transcripts) >= UTTERANCES)
        listener.cancel()
    return said, transcripts


async def test_a_rollover_with_a_late_voice_detector_clips_no_utterance(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    """Every utterance comes back whole although the model was replaced under it many times."""
    fake_upstream.script = late_vad_model
    relay = await start_relay(fake_upstream.url, rollover_seconds=0.77, rollover_replay_seconds=0.5)
    said, transcripts = await speak(relay)
    rollovers: Any = relay.metrics.render()["Rollovers"]
    assert rollovers >= 3, "the scenario must switch sessions several times"
    assert transcripts == said
