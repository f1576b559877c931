"""The control API's request and response shapes; the OpenAPI document is generated from them.

Requests are strict (unknown fields refused, types not coerced, sizes bounded); their
content is checked again by the same code the CLI uses (``cli.bot_request``). Responses
carry what ``voicebot ... --json`` prints, so both paths can be compared field by field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from cli.bot_request import MAX_BOT_NAME_CHARS, MAX_METADATA_VALUE_CHARS
from storage.delivery_url import MAX_MINUTES_URL_CHARS
from storage.minutes import MAX_MEMORY_KEY_CHARS

MIN_TOKEN_TTL: Final = 60
MAX_TOKEN_TTL: Final = 24 * 3600
DEFAULT_TOKEN_TTL: Final = 3 * 3600
MAX_URL_CHARS: Final = 2048
#: The relay's own bound on an overlay's instructions (relay.agent).
MAX_INSTRUCTIONS_CHARS: Final = 100_000


class CreateBot(BaseModel):
    """``POST /v1/bots``: the options of ``voicebot bot create``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    meeting_url: str = Field(min_length=1, max_length=MAX_URL_CHARS)
    bot_name: str = Field(default="Assistant", min_length=1, max_length=MAX_BOT_NAME_CHARS)
    region: str | None = Field(default=None, max_length=32, description="Recall region")
    join_at: datetime | None = Field(
        default=None, description="ISO 8601 time to join (default: now)"
    )
    persona: str | None = Field(default=None, min_length=1, max_length=MAX_METADATA_VALUE_CHARS)
    memory_key: str | None = Field(default=None, min_length=1, max_length=MAX_MEMORY_KEY_CHARS)
    token_ttl: int = Field(
        default=DEFAULT_TOKEN_TTL,
        ge=MIN_TOKEN_TTL,
        le=MAX_TOKEN_TTL,
        description="Seconds of meeting the relay token covers (after any join_at wait)",
    )
    instructions: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_INSTRUCTIONS_CHARS,
        description="This bot's own instructions (voicebot bot create --instructions)",
    )
    agent: dict[str, Any] | None = Field(
        default=None,
        description=(
            "This bot's persona overlay (voicebot bot create --agent): instructions, voice, "
            "greeting, tools, as far as the operator's agent.yaml bot_overridable allows"
        ),
    )
    minutes_to_chat: bool = Field(
        default=False,
        description="Post the minutes in the meeting chat before a requested leave",
    )
    minutes_url: str | None = Field(
        default=None,
        max_length=MAX_MINUTES_URL_CHARS,
        description="This bot's own https minutes endpoint (signed deliveries)",
    )


class CreatedBot(BaseModel):
    """What ``voicebot bot create --json`` prints."""

    bot_id: str
    session_id: str
    region: str
    page_url: str = Field(description="The agent page URL, without its token")
    join_at: str | None
    recorded: bool
    persona: list[str] = Field(default_factory=list, description="Overlay fields this bot sets")


class Leaving(BaseModel):
    """``POST /v1/bots/{bot_id}/leave``."""

    bot_id: str
    region: str
    status: str = Field(
        default="leaving",
        description="leaving, or leaving_after_minutes (minutes in the chat first)",
    )


class BotView(BaseModel):
    """``GET /v1/bots/{bot_id}``: what ``voicebot bot show --json`` prints."""

    bot: dict[str, Any]
    events: list[dict[str, Any]]
    connections: list[dict[str, Any]]
    turns: list[dict[str, Any]]


class BotList(BaseModel):
    """``GET /v1/bots``: what ``voicebot bots --json`` prints."""

    bots: list[dict[str, Any]]


class Transcript(BaseModel):
    """``GET /v1/bots/{bot_id}/transcript``."""

    turns: list[dict[str, Any]]


class Notes(BaseModel):
    """``GET /v1/bots/{bot_id}/notes``: what the agent noted during the meeting."""

    notes: list[dict[str, Any]]


class MinutesView(BaseModel):
    """``GET /v1/bots/{bot_id}/minutes``: what ``voicebot bot minutes --json`` prints."""

    model_config = ConfigDict(extra="allow")

    bot_id: str
    minutes: dict[str, Any]
    job_state: str


class Problem(BaseModel):
    """Every error answer: a stable code and a message safe to show."""

    error: str
    message: str
