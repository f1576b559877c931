"""Whole conversations through the relay with the simulated GA model, as real clients hold them."""

from __future__ import annotations

import asyncio
import base64
import math
from array import array

import pytest
from openai import AsyncOpenAI
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from tests.conftest import TIMEOUT
from tests.relay.conftest import SENSITIVE, StartRelay, mint, recv_until


def tone(ms: int, amplitude: int = 8000) -> bytes:
    """PCM16 24 kHz sine: loud enough for the simulator's VAD."""
    return array(
        "h", (int(amplitude * math.sin(2 * math.pi * 220 * i / 24000)) for i in range(24 * ms))
    ).tobytes()


def chunks(pcm: bytes, ms: int = 20) -> list[str]:
    """Base64 chunks of ``ms`` each, registered as sensitive (never to be logged)."""
    step = 48 * ms
    out = [base64.b64encode(pcm[i : i + step]).decode() for i in range(0, len(pcm), step)]
    SENSITIVE.update(c[:64] for c in out if len(c) >= 64 and c.strip("A"))
    return out


async def test_official_sdk_holds_a_conversation(
    start_relay: StartRelay, simulator_url: str
) -> None:
    """The openai SDK, with a relay token as its API key, speaks and hears the answer."""
    relay = await start_relay(simulator_url, openai_api_key="sk-simulated")
    client = AsyncOpenAI(
        api_key=mint("bot-sdk"), websocket_base_url=relay.url.removesuffix("/realtime")
    )
    seen: list[str] = []
    audio_bytes = 0
    transcript = ""
    async with asyncio.timeout(3 * TIMEOUT):
        async with client.realtime.connect(model="gpt-realtime-2.1") as conn:
            await conn.session.update(session={"type": "realtime", "output_modalities": ["audio"]})
            for chunk in chunks(tone(600) + bytes(48 * 800)):
                await conn.input_audio_buffer.append(audio=chunk)
            async for event in conn:
                seen.append(event.type)
                if event.type == "response.output_audio.delta":
                    audio_bytes += len(base64.b64decode(event.delta))
                elif event.type == "response.output_audio_transcript.done":
                    transcript = event.transcript
                elif event.type == "response.done":
                    break
    assert seen[0] == "session.created"
    assert seen.count("session.updated") == 2  # the relay's agent config, then the client's
    assert "input_audio_buffer.speech_started" in seen
    assert "conversation.item.input_audio_transcription.completed" in seen
    assert audio_bytes > 24_000  # more than half a second of reply audio
    assert transcript


async def test_browser_style_client_authenticates_by_subprotocol(
    start_relay: StartRelay, simulator_url: str
) -> None:
    """A browser-style client offering realtime + the key subprotocol gets realtime echoed."""
    relay = await start_relay(simulator_url, openai_api_key="sk-simulated")
    token = mint("bot-browser")
    offered = [Subprotocol("realtime"), Subprotocol(f"openai-insecure-api-key.{token}")]
    async with connect(relay.url, subprotocols=offered, compression=None) as ws:
        assert ws.subprotocol == "realtime"
        events = await recv_until(ws, "session.updated")
        assert events[0]["type"] == "session.created"


async def test_query_token_is_refused_with_400(start_relay: StartRelay, simulator_url: str) -> None:
    """A token in ?token= (which access logs keep) gets 400 and a hint, even a valid one."""
    relay = await start_relay(simulator_url, openai_api_key="sk-simulated")
    token = mint("bot-query")
    for headers in (None, {"Authorization": f"Bearer {token}"}):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                f"{relay.url}?token={token}", additional_headers=headers, compression=None
            ):
                pass
        assert refused.value.response.status_code == 400
        body = refused.value.response.body.decode()
        assert "query string" in body
        assert "Authorization: Bearer <relay token>" in body
        assert token not in body
    assert relay.sessions == set()
