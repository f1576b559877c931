"""AgentConfig: how the bot behaves, as the one GA ``session.update`` the relay sends.

Built-in defaults, optionally overridden by the JSON or YAML file named by AGENT_CONFIG
(format: ``relay_container/agent.yaml``). The file is untrusted input, validated
with pydantic (unknown keys refused), once at start-up. ``session_update()`` renders the
GA event: ``session.type = "realtime"``, PCM16 24 kHz both ways, voice, server or semantic
VAD, input transcription, noise reduction, and the long-call fields (``truncation``,
``reasoning``). The bill (``relay.bill``) and Recall's ``automatic_leave``
(``relay.automatic_leave``) are read here too but never sent to the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from relay.automatic_leave import AutomaticLeave
from relay.bill import Bill
from relay.errors import ConfigError
from relay.tools.spec import SlowTools, ToolList, declaration

DEFAULT_INSTRUCTIONS: Final = (
    "You are a helpful voice assistant taking part in a video meeting. Speak briefly and "
    "naturally, in the language the participants use. If you are unsure whether someone "
    "is talking to you, stay silent."
)
PCM16_24KHZ: Final = {"type": "audio/pcm", "rate": 24000}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TurnDetection(_Strict):
    """When the model decides the speaker has finished (GA ``audio.input.turn_detection``)."""

    type: Literal["server_vad", "semantic_vad", "none"] = "server_vad"
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    prefix_padding_ms: int = Field(default=300, ge=0, le=10_000)
    silence_duration_ms: int = Field(default=500, ge=0, le=10_000)
    idle_timeout_ms: int | None = Field(default=None, ge=0)
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    create_response: bool = True
    interrupt_response: bool = True

    def payload(self) -> dict[str, Any] | None:
        """The GA object, or None for manual turns."""
        if self.type == "none":
            return None
        common = {
            "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
        }
        if self.type == "semantic_vad":
            return {"type": "semantic_vad", "eagerness": self.eagerness, **common}
        vad: dict[str, Any] = {
            "type": "server_vad",
            "threshold": self.threshold,
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
            **common,
        }
        if self.idle_timeout_ms is not None:
            vad["idle_timeout_ms"] = self.idle_timeout_ms
        return vad


class TurnTaking(_Strict):
    """When the agent speaks in a meeting of several people (``turn_taking`` in agent.yaml).

    ``always``: the model answers every finished turn (server VAD's ``create_response``).
    ``addressed``: the relay asks for an answer only when a finished turn addresses the
    agent: its transcript names one of ``wake_phrases`` (whole words, any case), or it
    follows the agent's own question (``follow_ups``). ``manual``: the agent speaks only
    when a tool or the client asks it to. Barge-in works in every mode.
    """

    mode: Literal["always", "addressed", "manual"] = "always"
    wake_phrases: tuple[str, ...] = Field(default=(), max_length=32)
    follow_ups: bool = True

    @model_validator(mode="after")
    def _addressable(self) -> TurnTaking:
        if self.mode == "addressed" and not self.wake_phrases:
            raise ValueError("mode addressed needs wake_phrases (the agent's name, say)")
        if any(not 1 <= len(p.strip()) <= 64 for p in self.wake_phrases):
            raise ValueError("each wake phrase is 1-64 characters")
        return self


Effort = Literal["minimal", "low", "medium", "high", "xhigh"]
#: The transcription model whose ``delay`` applies (and which takes no ``prompt``).
WHISPER: Final = "gpt-realtime-whisper"
#: Transcription models that take ``keywords`` and ``languages``.
KEYWORD_MODELS: Final = ("gpt-transcribe", "gpt-live-transcribe")


class Chat(_Strict):
    """Which chat messages of the meeting enter the conversation (``chat`` in agent.yaml).

    ``addressed``: messages sent to the agent alone, naming one of ``turn_taking``'s wake
    phrases, or any message when it has no wake phrases or one other person is there;
    ``all``: every message; ``off``: none. Each enters as user text naming its sender, and
    the agent answers it as ``turn_taking`` would answer it said aloud (docs/recall-realtime.md).
    """

    mode: Literal["addressed", "all", "off"] = "addressed"


class Transcription(_Strict):
    """Transcription of what participants say (GA ``audio.input.transcription``).

    ``delay`` works only with gpt-realtime-whisper, which takes no ``prompt``;
    ``keywords`` and ``languages`` only with gpt-transcribe and gpt-live-transcribe
    (docs/openai-realtime.md, "Long-call session fields").
    """

    model: str = Field(default=WHISPER, min_length=1, max_length=64)
    language: str | None = Field(default=None, min_length=2, max_length=16)
    prompt: str | None = Field(default=None, min_length=1, max_length=4000)
    delay: Effort | None = None
    keywords: tuple[str, ...] | None = Field(default=None, min_length=1, max_length=100)
    languages: tuple[str, ...] | None = Field(default=None, min_length=1, max_length=16)

    @model_validator(mode="after")
    def _fits_model(self) -> Transcription:
        if self.delay is not None and self.model != WHISPER:
            raise ValueError(f"delay works only with model {WHISPER}")
        if self.prompt is not None and self.model == WHISPER:
            raise ValueError(f"prompt is not supported by {WHISPER} (use another model)")
        if (self.keywords or self.languages) and self.model not in KEYWORD_MODELS:
            raise ValueError(f"keywords and languages work only with {', '.join(KEYWORD_MODELS)}")
        if any(not 1 <= len(word) <= 100 for word in self.keywords or ()):
            raise ValueError("each keyword is 1-100 characters")
        return self

    def payload(self) -> dict[str, Any]:
        """The GA object, without unset fields."""
        data = self.model_dump(exclude_none=True)
        for name in ("keywords", "languages"):
            if name in data:
                data[name] = list(data[name])
        return data


class Truncation(_Strict):
    """How the model drops old conversation in a long call (GA ``session.truncation``).

    ``retention_ratio``: when the context is full, keep this fraction of it (dropping less
    often keeps the cache warm); ``post_instructions_tokens``: cap the conversation after
    the instructions and tools (a cost lever).
    """

    retention_ratio: float = Field(gt=0.0, le=1.0)
    post_instructions_tokens: int | None = Field(default=None, ge=1, le=1_000_000)

    def payload(self) -> dict[str, Any]:
        """The GA object."""
        body: dict[str, Any] = {"type": "retention_ratio", "retention_ratio": self.retention_ratio}
        if self.post_instructions_tokens is not None:
            body["token_limits"] = {"post_instructions": self.post_instructions_tokens}
        return body


class Reasoning(_Strict):
    """How hard a reasoning realtime model thinks (GA ``session.reasoning``; gen-2 models)."""

    effort: Effort


class AgentConfig(_Strict):
    """The agent's server-side configuration; every field has a safe default."""

    instructions: str = Field(default=DEFAULT_INSTRUCTIONS, min_length=1, max_length=100_000)
    voice: str = "marin"
    speed: float = Field(default=1.0, ge=0.25, le=1.5)
    turn_detection: TurnDetection = TurnDetection()
    turn_taking: TurnTaking = TurnTaking()
    chat: Chat = Chat()
    transcription: Transcription | None = Transcription()
    noise_reduction: Literal["near_field", "far_field"] | None = "far_field"
    #: Function tools: built-ins and HTTP tools the relay runs, and GA ``session.tools``
    #: entries passed to the model as they are (relay.tools.spec).
    tools: ToolList = Field(default_factory=list)
    tool_choice: str | None = None
    max_output_tokens: int | Literal["inf"] | None = None
    #: ``auto``, ``disabled`` or a retention ratio (None: the model's default, ``auto``).
    truncation: Literal["auto", "disabled"] | Truncation | None = None
    reasoning: Reasoning | None = None
    #: Limits on a session's minutes, tokens and estimated cost (relay.bill).
    bill: Bill = Bill()
    #: When Recall makes the bot leave by itself (read by ``voicebot bot create``).
    automatic_leave: AutomaticLeave = AutomaticLeave()
    #: Session fields a client may not change (dotted paths into ``session`` /
    #: ``response``; what each covers: relay.policy). A client's different value is
    #: dropped, logged and counted; the rest of its event applies.
    locked_fields: tuple[str, ...] = ("instructions", "tools", "model")
    #: Said once when a session starts in a meeting (never on re-attach, resume, rollover).
    greeting: str | None = Field(default=None, min_length=1, max_length=2000)
    #: What the meeting hears while a relay tool runs long.
    slow_tools: SlowTools = SlowTools()
    #: Fields a bot's own overlay (``voicebot bot create --instructions/--agent``) may set.
    #: A bot's ``bill`` may only lower the limits here; ``turn_taking`` replaces this one.
    bot_overridable: tuple[
        Literal["instructions", "voice", "greeting", "tools", "bill", "turn_taking"], ...
    ] = ("instructions", "voice", "greeting", "tools", "bill", "turn_taking")
    #: Also answer each dropped field with an ``error`` event (``relay_locked_fields``).
    #: Off by default: some frameworks (Pipecat) treat any error event as fatal.
    locked_fields_error: bool = False

    @model_validator(mode="after")
    def _transcribed_when_addressed(self) -> AgentConfig:
        if self.turn_taking.mode == "addressed" and self.transcription is None:
            raise ValueError(
                "turn_taking.mode addressed needs transcription (it reads what was said)"
            )
        return self

    def locked_values(self) -> dict[str, Any]:
        """The operator's session as a client's values are compared with it: every field
        the relay sets, with ``tools`` always present (``[]`` when the agent has none)."""
        session = self.session()
        session.setdefault("tools", [])
        return session

    def session(self) -> dict[str, Any]:
        """The GA ``session`` object."""
        turn_detection = self.turn_detection.payload()
        if turn_detection is not None and self.turn_taking.mode != "always":
            turn_detection["create_response"] = False  # the relay decides (relay.turn_gate)
        audio_input: dict[str, Any] = {
            "format": dict(PCM16_24KHZ),
            "turn_detection": turn_detection,
            "transcription": self.transcription.payload() if self.transcription else None,
            "noise_reduction": ({"type": self.noise_reduction} if self.noise_reduction else None),
        }
        session: dict[str, Any] = {
            "type": "realtime",
            "instructions": self.instructions,
            "output_modalities": ["audio"],
            "audio": {
                "input": audio_input,
                "output": {"format": dict(PCM16_24KHZ), "voice": self.voice, "speed": self.speed},
            },
        }
        if self.tools:
            session["tools"] = [declaration(tool) for tool in self.tools]
        if self.tool_choice is not None:
            session["tool_choice"] = self.tool_choice
        if self.max_output_tokens is not None:
            session["max_output_tokens"] = self.max_output_tokens
        if self.truncation is not None:
            truncation = self.truncation
            session["truncation"] = (
                truncation if isinstance(truncation, str) else truncation.payload()
            )
        if self.reasoning is not None:
            session["reasoning"] = {"effort": self.reasoning.effort}
        return session

    def session_update(self) -> bytes:
        """The serialized ``session.update`` the relay sends when the upstream opens."""
        event = {"type": "session.update", "session": self.session()}
        return json.dumps(event, separators=(",", ":")).encode()


def load_agent_config(path: Path | None) -> AgentConfig:
    """The defaults, overridden by the file at ``path`` (``.json``, ``.yaml`` or ``.yml``).

    Raises:
        ConfigError: unreadable file, bad syntax, or a field that does not validate
            (every problem listed).
    """
    if path is None:
        return AgentConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"AGENT_CONFIG {path}: {exc.strerror}"]) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError([f"AGENT_CONFIG {path} is not valid JSON/YAML: {exc}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"AGENT_CONFIG {path} must hold a mapping at the top level"])
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"AGENT_CONFIG {'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError(problems) from None
