"""The GA Realtime shapes the simulator speaks: paths, names, the session and error objects.

Plain data and pure functions (docs/openai-realtime.md §2); the handlers build on them.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Final

from relay.simulator.voice import SAMPLE_RATE

JsonObject = dict[str, Any]

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


def new_id(prefix: str) -> str:
    """An OpenAI-looking id: ``prefix_`` and 20 hex digits."""
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
        "event_id": new_id("event"),
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
        "id": new_id("sess"),
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


def usage(input_ms: float, output_ms: float, transcript: str) -> JsonObject:
    """A ``response.done`` usage object for this much audio in and out."""
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
