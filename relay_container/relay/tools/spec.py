"""The ``tools:`` schema of agent.yaml: which functions the relay runs and how.

Each entry of ``tools`` is one of (chosen by its keys, so a typo is an error, never a
tool silently handed to the model as something else):

- ``builtin: <name>`` — a tool the relay implements (:data:`BUILTIN_NAMES`), opt-in;
- an entry with ``url:`` — an HTTP tool: the relay POSTs the model's arguments to the
  operator's endpoint, signed (docs/tools.md);
- anything else — a GA ``session.tools`` entry passed to the model as it is; the model's
  calls of it go to the client (an SDK using the relay keeps its own tools).

``slow_tools`` says what the meeting hears while a tool takes long. Validation only:
no I/O, no secret (the signing secret is an environment variable, never in this file).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    HttpUrl,
    Tag,
    field_validator,
)

#: The built-in tools, each documented in ``relay.tools.builtins``.
BUILTIN_NAMES: Final = (
    "leave_meeting",
    "send_chat_message",
    "take_note",
    "list_notes",
    "end_turn_silently",
)
BuiltinName = Literal[
    "leave_meeting", "send_chat_message", "take_note", "list_notes", "end_turn_silently"
]
#: OpenAI's function-name rule (letters, digits, ``_`` and ``-``, at most 64).
NAME_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_TIMEOUT_SECONDS: Final = 8.0
DEFAULT_MAX_RESPONSE_BYTES: Final = 16 * 1024
EMPTY_PARAMETERS: Final[Mapping[str, Any]] = {"type": "object", "properties": {}}


#: What the model reads about each built-in (GA function tool fields, minus ``type``).
BUILTIN_DECLARATIONS: Final[Mapping[str, Mapping[str, Any]]] = {
    "leave_meeting": {
        "description": (
            "Leave the meeting for good. Only when a participant clearly asks you to leave; "
            "say goodbye first, then call this."
        ),
        "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
    },
    "send_chat_message": {
        "description": (
            "Post a message in the meeting chat, visible to everyone: links, numbers, "
            "spellings, anything easier read than heard. Keep it under 500 characters."
        ),
        "parameters": {
            "type": "object",
            "properties": {"message": {"type": "string", "description": "The text to post."}},
            "required": ["message"],
            "additionalProperties": False,
        },
    },
    "take_note": {
        "description": (
            "Save a note for after the meeting (decisions, action items, anything a "
            "participant asks you to note). One note per call, in a sentence or two."
        ),
        "parameters": {
            "type": "object",
            "properties": {"text": {"type": "string", "description": "The note."}},
            "required": ["text"],
            "additionalProperties": False,
        },
    },
    "list_notes": {
        "description": "Read back the notes saved so far in this meeting, oldest first.",
        "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
    },
    "end_turn_silently": {
        "description": (
            "Say nothing this turn. Call it when the speech you heard was not meant for you "
            "or needs no answer."
        ),
        "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
    },
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BuiltinTool(_Strict):
    """``{builtin: take_note}``: opt in to one of the relay's own tools."""

    builtin: BuiltinName
    #: Replaces the built-in description the model reads (when to call it).
    description: str | None = Field(default=None, min_length=1, max_length=2000)
    timeout_seconds: float = Field(default=DEFAULT_TIMEOUT_SECONDS, gt=0, le=60)

    @property
    def name(self) -> str:
        """The function name the model calls."""
        return self.builtin

    def declaration(self) -> dict[str, Any]:
        """The GA ``session.tools`` entry."""
        base = BUILTIN_DECLARATIONS[self.builtin]
        return {
            "type": "function",
            "name": self.builtin,
            "description": self.description or base["description"],
            "parameters": dict(base["parameters"]),
        }


class HttpTool(_Strict):
    """A function the relay runs by POSTing the model's arguments to ``url``."""

    name: str
    description: str = Field(min_length=1, max_length=2000)
    #: JSON Schema of the arguments, given to the model as it is.
    parameters: dict[str, Any] = Field(default_factory=lambda: dict(EMPTY_PARAMETERS))
    url: HttpUrl
    timeout_seconds: float = Field(default=DEFAULT_TIMEOUT_SECONDS, gt=0, le=60)
    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, ge=1, le=1024 * 1024)

    def declaration(self) -> dict[str, Any]:
        """The GA ``session.tools`` entry (the URL stays in the relay)."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
        }

    @field_validator("name")
    @classmethod
    def _name_rule(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError("must be 1-64 letters, digits, '_' or '-'")
        if value in BUILTIN_NAMES:
            raise ValueError(f"{value!r} is a built-in tool: use `builtin: {value}`")
        return value

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, value: HttpUrl) -> HttpUrl:
        # A secret in the URL would reach logs; the request is signed instead.
        if value.username or value.password:
            raise ValueError("must not carry credentials; requests are signed (docs/tools.md)")
        return value


def _kind(entry: Any) -> str:
    if isinstance(entry, Mapping):
        if "builtin" in entry:
            return "builtin"
        if "url" in entry:
            return "http"
    if isinstance(entry, BuiltinTool):
        return "builtin"
    if isinstance(entry, HttpTool):
        return "http"
    return "client"


ToolSpec = Annotated[
    Annotated[BuiltinTool, Tag("builtin")]
    | Annotated[HttpTool, Tag("http")]
    | Annotated[dict[str, Any], Tag("client")],
    Discriminator(_kind),
]


def tool_name(spec: BuiltinTool | HttpTool | Mapping[str, Any]) -> str | None:
    """The function name of any entry (``None`` for a client entry without one)."""
    if isinstance(spec, BuiltinTool | HttpTool):
        return spec.name
    name = spec.get("name")
    return name if isinstance(name, str) else None


def declaration(spec: BuiltinTool | HttpTool | Mapping[str, Any]) -> dict[str, Any]:
    """The GA ``session.tools`` entry of any entry (a client entry as written)."""
    if isinstance(spec, BuiltinTool | HttpTool):
        return spec.declaration()
    return dict(spec)


def _unique_names(tools: list[Any]) -> list[Any]:
    seen: set[str] = set()
    for spec in tools:
        name = tool_name(spec)
        if name is None:
            continue
        if name in seen:
            raise ValueError(f"tool {name!r} is declared twice")
        seen.add(name)
    return tools


#: The type of ``AgentConfig.tools``: entries as above, names unique.
ToolList = Annotated[list[ToolSpec], AfterValidator(_unique_names)]


class SlowTools(_Strict):
    """What the meeting hears while a tool runs longer than ``after_ms``.

    ``say: model`` asks the model to tell the participants, in its own words, that it is
    working on it; ``say: filler`` has it say ``filler`` verbatim; ``say: nothing`` keeps
    quiet. Either way it is an ordinary response: a participant's speech interrupts it.
    """

    after_ms: int = Field(default=1500, ge=0, le=60_000)
    say: Literal["model", "filler", "nothing"] = "model"
    filler: str = Field(default="One moment, please.", min_length=1, max_length=500)

    def instructions(self, tool: str) -> str | None:
        """The out-of-band response's instructions for a slow ``tool``, or ``None``."""
        if self.say == "nothing":
            return None
        if self.say == "filler":
            return f"Say exactly this and nothing else: {self.filler}"
        return (
            f"The tool {tool} you called is still running. Tell the participants in a few "
            "words that you are working on it. Do not call any tool and do not guess the result."
        )
