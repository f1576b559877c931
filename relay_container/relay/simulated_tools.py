"""How the simulated model decides to call a tool, and the GA events of that call.

The simulator has no language model, so it recognises a few plainly worded requests in a
participant's text (a ``conversation.item.create`` user message with ``input_text``):

- ``take a note: <text>``           → ``take_note {"text": <text>}``
- ``post in the chat: <text>``      → ``send_chat_message {"message": <text>}``
- ``list the notes``                → ``list_notes {}``
- ``leave the meeting``             → ``leave_meeting {}``
- ``call <name> with <json>``       → any declared function, with those arguments

and, for audio (which it cannot understand), ``call_on_speech``: one named function
called in every answer to speech with ``{"text": "(heard N s of speech)"}``; always only
when the session declares that function (``session.tools``), as a real model
would. The call is added to the answer that follows, after its audio, with the GA event
sequence (openai-python ``types/realtime``): ``response.output_item.added``,
``response.function_call_arguments.delta`` / ``.done``, ``response.output_item.done``, and
the item in ``response.done``'s output. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

_PATTERNS: Final = (
    (re.compile(r"\btake a note:\s*(?P<arg>.+)", re.I | re.S), "take_note", "text"),
    (re.compile(r"\bpost in the chat:\s*(?P<arg>.+)", re.I | re.S), "send_chat_message", "message"),
    (re.compile(r"\blist the notes\b", re.I), "list_notes", None),
    (re.compile(r"\bleave the meeting\b", re.I), "leave_meeting", None),
)
_CALL: Final = re.compile(
    r"\bcall (?P<name>[A-Za-z0-9_-]{1,64}) with (?P<args>\{.*\})", re.I | re.S
)
MAX_REQUEST_CHARS: Final = 4000


@dataclass(frozen=True, slots=True)
class RequestedCall:
    """A function the simulated model will call, with its JSON arguments."""

    name: str
    arguments: str


def declared_functions(session: dict[str, Any]) -> set[str]:
    """Names of the function tools a GA ``session`` declares."""
    tools = session.get("tools")
    if not isinstance(tools, list):
        return set()
    return {t["name"] for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)}


def requested_call(item: object, declared: Collection[str]) -> RequestedCall | None:
    """The call a user message asks for, or ``None``."""
    if not isinstance(item, dict) or item.get("type", "message") != "message":
        return None
    if item.get("role") != "user" or not isinstance(item.get("content"), list):
        return None
    text = " ".join(
        str(part.get("text"))
        for part in item["content"]
        if isinstance(part, dict) and part.get("type") == "input_text"
    )[:MAX_REQUEST_CHARS]
    if match := _CALL.search(text):
        name = match["name"]
        try:
            arguments = json.loads(match["args"])
        except ValueError:
            return None
        if name in declared and isinstance(arguments, dict):
            return RequestedCall(name, json.dumps(arguments))
    for pattern, name, key in _PATTERNS:
        if name in declared and (match := pattern.search(text)):
            args = {key: match["arg"].strip()} if key else {}
            return RequestedCall(name, json.dumps(args))
    return None


def speech_call(
    name: str | None, heard_seconds: float, session: dict[str, Any]
) -> RequestedCall | None:
    """The ``call_on_speech`` call for a turn of ``heard_seconds``, if the session declares it."""
    if name is None or name not in declared_functions(session):
        return None
    return RequestedCall(name, json.dumps({"text": f"(heard {heard_seconds:.1f} s of speech)"}))


def function_call_events(
    call: RequestedCall, *, response_id: str, item_id: str, call_id: str, output_index: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The server events streaming ``call``, and its completed item for ``response.done``."""
    item: dict[str, Any] = {
        "id": item_id,
        "type": "function_call",
        "object": "realtime.item",
        "status": "in_progress",
        "call_id": call_id,
        "name": call.name,
        "arguments": "",
    }
    where = {"response_id": response_id, "item_id": item_id, "output_index": output_index}
    done = {**item, "status": "completed", "arguments": call.arguments}
    events = [
        {
            "type": "response.output_item.added",
            "response_id": response_id,
            "output_index": output_index,
            "item": item,
        },
        {
            "type": "response.function_call_arguments.delta",
            **where,
            "call_id": call_id,
            "delta": call.arguments,
        },
        {
            "type": "response.function_call_arguments.done",
            **where,
            "call_id": call_id,
            "name": call.name,
            "arguments": call.arguments,
        },
        {
            "type": "response.output_item.done",
            "response_id": response_id,
            "output_index": output_index,
            "item": done,
        },
    ]
    return events, done
