"""Framework clients through the relay: Pipecat's and the OpenAI Agents SDK's realtime clients,
as they come out of the box, hold a session, hear the model, and never see an error event.

Both are faithful reproductions of what each framework sends, not the packages themselves:

- **Pipecat** (``pipecat-ai`` 1.14, ``OpenAIRealtimeLLMService``) pulls in onnxruntime,
  numba and llvmlite (hundreds of MB) to run a VAD the relay does not need; too heavy for
  ``make test``. Reproduced from ``pipecat/services/openai/realtime/llm.py``: it dials
  ``{base_url}?model={model}`` with a Bearer header, sends ``session.update`` on
  ``session.created`` with ``json.dumps(event.model_dump(exclude_none=True))`` (so
  ``event_id`` comes first, then ``type``; the session carries ``model`` and
  ``instructions``), streams ``input_audio_buffer.append`` the same way, and stops
  reading at the first ``error`` event whose code is not ``response_cancel_not_active`` or
  ``conversation_already_has_active_response`` ("errors are fatal").
- **OpenAI Agents SDK** (``openai-agents`` 0.24, ``OpenAIRealtimeWebSocketModel``) pins
  ``websockets<17``, which would downgrade the relay's own websockets. It serializes with
  the openai SDK's pydantic types, which are installed here, so this reproduction sends
  the same bytes: ``SessionUpdateEvent(...).model_dump_json(exclude_unset=True)`` right
  after connecting (``type`` last; ``model``, ``instructions``, ``tools: []``), a second
  update carrying ``tracing: "auto"`` on ``session.created``, and appends built the same way.

The relay runs the image's ``relay_container/agent.yaml`` in front of the simulated model.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from pathlib import Path
from typing import Any

from openai.types.realtime.audio_transcription import AudioTranscription
from openai.types.realtime.input_audio_buffer_append_event import InputAudioBufferAppendEvent
from openai.types.realtime.realtime_audio_config import RealtimeAudioConfig
from openai.types.realtime.realtime_audio_config_input import RealtimeAudioConfigInput
from openai.types.realtime.realtime_audio_config_output import RealtimeAudioConfigOutput
from openai.types.realtime.realtime_audio_formats import AudioPCM
from openai.types.realtime.realtime_audio_input_turn_detection import SemanticVad
from openai.types.realtime.realtime_session_create_request import RealtimeSessionCreateRequest
from openai.types.realtime.session_update_event import SessionUpdateEvent
from websockets.asyncio.client import ClientConnection, connect

from relay.agent import load_agent_config
from relay.config import DEFAULT_MODEL
from relay.server import Relay
from tests.conftest import TIMEOUT
from tests.relay.conftest import StartRelay, mint
from tests.relay.test_conversation import chunks, tone

AGENT_YAML = Path(__file__).resolve().parents[2] / "relay_container" / "agent.yaml"
#: What each framework's own configuration tells the model; the relay's agent.yaml wins.
FRAMEWORK_INSTRUCTIONS = "You are a helpful LLM in a WebRTC call. Be concise."
#: Pipecat stops at any error but these two.
PIPECAT_TOLERATED = ("response_cancel_not_active", "conversation_already_has_active_response")


class Heard:
    """What a framework client received."""

    def __init__(self) -> None:
        self.types: list[str] = []
        self.errors: list[dict[str, Any]] = []
        self.audio_bytes = 0
        self.session: dict[str, Any] = {}


def speech() -> list[str]:
    """600 ms of tone then 800 ms of silence: the simulator hears a turn and answers."""
    return chunks(tone(600) + bytes(48 * 800))


async def _listen(ws: ClientConnection, heard: Heard, event: dict[str, Any]) -> None:
    heard.types.append(event["type"])
    if event["type"] == "session.updated":
        heard.session = event["session"]
    elif event["type"] == "response.output_audio.delta":
        heard.audio_bytes += len(base64.b64decode(event["delta"]))
    elif event["type"] == "error":
        heard.errors.append(event["error"])


async def pipecat_client(relay: Relay, token: str) -> Heard:
    """Pipecat 1.14's OpenAIRealtimeLLMService, configured as its project template does."""
    heard = Heard()

    def send(event: dict[str, Any]) -> str:
        # ClientEvent.event_id is a uuid4 default; model_dump(exclude_none=True) keeps the
        # field order: event_id, type, then the event's own fields.
        return json.dumps({"event_id": str(uuid.uuid4()), **event})

    session = {
        "type": "realtime",
        "model": DEFAULT_MODEL,
        "instructions": FRAMEWORK_INSTRUCTIONS,
        "audio": {
            "input": {
                "transcription": {"model": "gpt-realtime-whisper"},
                "turn_detection": {"type": "semantic_vad"},
            },
            "output": {"voice": "alloy"},
        },
        "tools": [],
    }
    async with connect(
        f"{relay.url}?model={DEFAULT_MODEL}",
        additional_headers={"Authorization": f"Bearer {token}"},
    ) as ws:
        streamed = False
        async for message in ws:
            event = json.loads(message)
            await _listen(ws, heard, event)
            if event["type"] == "session.created":
                await ws.send(send({"type": "session.update", "session": session}))
            elif event["type"] == "session.updated" and not streamed:
                streamed = True
                for chunk in speech():
                    await ws.send(send({"type": "input_audio_buffer.append", "audio": chunk}))
            elif event["type"] == "error" and event["error"]["code"] not in PIPECAT_TOLERATED:
                return heard  # "errors are fatal, so exit the receive loop"
            elif event["type"] == "response.done":
                return heard
    return heard


async def agents_sdk_client(relay: Relay, token: str) -> Heard:
    """openai-agents 0.24's OpenAIRealtimeWebSocketModel as RealtimeRunner drives it."""
    heard = Heard()
    initial = SessionUpdateEvent(
        type="session.update",
        session=RealtimeSessionCreateRequest(
            type="realtime",
            model=DEFAULT_MODEL,
            output_modalities=["audio"],
            audio=RealtimeAudioConfig(
                input=RealtimeAudioConfigInput(
                    format=AudioPCM(type="audio/pcm", rate=24000),
                    # The SDK passes these as dicts; pydantic builds the same models.
                    transcription=AudioTranscription(model="gpt-4o-mini-transcribe"),
                    turn_detection=SemanticVad(type="semantic_vad", interrupt_response=True),
                ),
                output=RealtimeAudioConfigOutput(
                    voice="ash", format=AudioPCM(type="audio/pcm", rate=24000)
                ),
            ),
            tools=[],
            instructions=FRAMEWORK_INSTRUCTIONS,
        ),
    )
    tracing = SessionUpdateEvent(
        type="session.update",
        session=RealtimeSessionCreateRequest(model=DEFAULT_MODEL, type="realtime", tracing="auto"),
    )
    async with connect(
        f"{relay.url}?model={DEFAULT_MODEL}",
        user_agent_header="Agents/Python 0.24.0",
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=8 * 1024 * 1024,
    ) as ws:
        await ws.send(initial.model_dump_json(exclude_unset=True))
        async for message in ws:
            event = json.loads(message)
            await _listen(ws, heard, event)
            if event["type"] == "session.created":
                await ws.send(tracing.model_dump_json(exclude_unset=True))
                for chunk in speech():
                    append = InputAudioBufferAppendEvent(
                        type="input_audio_buffer.append", audio=chunk
                    )
                    await ws.send(append.model_dump_json(exclude_unset=True))
            elif event["type"] == "response.done":
                return heard
    return heard


async def test_pipecat_holds_a_session_and_hears_the_model(
    start_relay: StartRelay, simulator_url: str
) -> None:
    """Pipecat's default session.update (model, instructions) earns no error: it hears audio,
    and the model keeps the operator's instructions."""
    relay = await start_relay(
        simulator_url, openai_api_key="sk-simulated", agent_config_path=AGENT_YAML
    )
    async with asyncio.timeout(3 * TIMEOUT):
        heard = await pipecat_client(relay, mint("bot-pipecat"))
    assert heard.errors == []
    assert heard.audio_bytes > 24_000
    assert heard.session["instructions"] == load_agent_config(AGENT_YAML).instructions
    assert heard.session["audio"]["output"]["voice"] == "alloy"  # not locked: applied
    assert relay.metrics.counters["LockedFieldsDropped"] == 1  # the instructions


async def test_agents_sdk_holds_a_session_and_hears_the_model(
    start_relay: StartRelay, simulator_url: str
) -> None:
    """The Agents SDK's updates (model, instructions, tools: [], then tracing) earn no error;
    it hears audio, and the model keeps the operator's instructions."""
    relay = await start_relay(
        simulator_url, openai_api_key="sk-simulated", agent_config_path=AGENT_YAML
    )
    async with asyncio.timeout(3 * TIMEOUT):
        heard = await agents_sdk_client(relay, mint("bot-agents"))
    assert heard.errors == []
    assert heard.audio_bytes > 24_000
    assert heard.session["instructions"] == load_agent_config(AGENT_YAML).instructions
    assert heard.session["tracing"] == "auto"
    # model equals the relay's and tools: [] equals agent.yaml's: only instructions dropped.
    assert relay.metrics.counters["LockedFieldsDropped"] == 1


async def test_with_locked_fields_error_pipecat_stops_at_the_error(
    start_relay: StartRelay, simulator_url: str, tmp_path: Path
) -> None:
    """Why silence is the default: with the opt-in error event, Pipecat quits hearing."""
    agent = tmp_path / "agent.yaml"
    agent.write_text(AGENT_YAML.read_text() + "\nlocked_fields_error: true\n")
    agent.write_text(agent.read_text().replace("locked_fields_error: false\n", ""))
    relay = await start_relay(simulator_url, openai_api_key="sk-simulated", agent_config_path=agent)
    async with asyncio.timeout(3 * TIMEOUT):
        heard = await pipecat_client(relay, mint("bot-pipecat-strict"))
    assert [e["code"] for e in heard.errors] == ["relay_locked_fields"]
    assert heard.errors[0]["param"] == "instructions"
    assert heard.audio_bytes == 0
