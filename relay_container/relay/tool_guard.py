"""ToolGuard: a client may neither invoke nor change the relay's own tools.

Sans-I/O: a parsed client event in, a verdict out. A client may not invoke a relay tool
itself (a ``function_call_output`` for a relay ``call_id``, a ``function_call`` item naming
a relay tool, a ``tool_choice`` forcing one) nor add, remove or redefine relay tools (a
``tools`` list naming one is refused; a list without them gets the relay's declarations
merged back in, so they cannot be removed). Refusals are OpenAI-shaped ``error`` events
(code ``relay_tool_refused``) and the event is not forwarded.

Which call ids belong to relay tools is the :class:`~relay.tool_calls.ToolCallTracker`'s
knowledge; it asks this guard and passes them in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from relay.events import CONVERSATION_ITEM_CREATE, RESPONSE_CREATE, SESSION_UPDATE, error_event

#: Client event types to hand to :meth:`ToolGuard.check`; the others cannot reach a tool.
CLIENT_EVENT_TYPES: Final[frozenset[str]] = frozenset(
    {CONVERSATION_ITEM_CREATE, SESSION_UPDATE, RESPONSE_CREATE}
)
REFUSED_CODE: Final = "relay_tool_refused"


@dataclass(frozen=True, slots=True)
class ClientVerdict:
    """A client event's fate: forward ``forward`` (maybe rewritten) or answer ``refusal``."""

    forward: bytes | None
    refusal: bytes | None = None

    @property
    def refused(self) -> bool:
        """True when the event must not reach the model."""
        return self.refusal is not None


class ToolGuard:
    """Checks client events against the relay's tools; see the module docstring."""

    def __init__(
        self, relay_tools: Collection[str], declarations: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        """Guard ``relay_tools``, whose GA ``session.tools`` entries are ``declarations``."""
        self._names = frozenset(relay_tools)
        self._declarations = [dict(d) for d in declarations]

    def check(
        self,
        event_type: str,
        event: Mapping[str, Any],
        relay_call_ids: Callable[[], Collection[str]],
    ) -> ClientVerdict:
        """Refuse a client event that would invoke or change a relay tool.

        ``event`` is the parsed client event of type ``event_type``; ``relay_call_ids``
        gives the call ids of relay tools seen so far (asked only for a
        ``function_call_output``). A ``session.update`` or ``response.create`` carrying a
        ``tools`` list without relay tools is rewritten with the relay's declarations
        appended; anything else allowed is forwarded as ``None`` (the shell forwards the
        original bytes).
        """
        event_id = event.get("event_id")
        event_id = event_id if isinstance(event_id, str) else None
        if event_type == CONVERSATION_ITEM_CREATE:
            problem = self._item_problem(event.get("item"), relay_call_ids)
            return _refuse(problem, event_id) if problem else ClientVerdict(forward=None)
        if event_type not in (SESSION_UPDATE, RESPONSE_CREATE):
            return ClientVerdict(forward=None)
        key = "session" if event_type == SESSION_UPDATE else "response"
        body = event.get(key)
        if not isinstance(body, Mapping):
            return ClientVerdict(forward=None)
        problem = self._tool_choice_problem(body.get("tool_choice"))
        if problem is None and event_type == RESPONSE_CREATE:
            input_items = body.get("input")
            for item in input_items if isinstance(input_items, list) else []:
                problem = self._item_problem(item, relay_call_ids)
                if problem:
                    break
        if problem is None and "tools" in body:
            problem = self._tools_problem(body.get("tools"))
        if problem:
            return _refuse(problem, event_id)
        tools = body.get("tools")
        if not isinstance(tools, list) or not self._declarations:
            return ClientVerdict(forward=None)
        rewritten = {**event, key: {**body, "tools": [*tools, *self._declarations]}}
        return ClientVerdict(
            forward=json.dumps(rewritten, separators=(",", ":"), ensure_ascii=False).encode()
        )

    def _item_problem(
        self, item: object, relay_call_ids: Callable[[], Collection[str]]
    ) -> str | None:
        if not isinstance(item, Mapping):
            return None
        kind = item.get("type")
        if kind == "function_call" and self._owned(item.get("name")):
            return f"a client may not create a call of the relay's tool {item.get('name')!r}"
        if kind == "function_call_output":
            call_id = item.get("call_id")
            if isinstance(call_id, str) and call_id in relay_call_ids():
                return f"call {call_id!r} belongs to a relay tool; the relay sends its output"
        return None

    def _tool_choice_problem(self, choice: object) -> str | None:
        if isinstance(choice, Mapping) and self._owned(choice.get("name")):
            return f"a client may not force the relay's tool {choice.get('name')!r}"
        return None

    def _tools_problem(self, tools: object) -> str | None:
        if not isinstance(tools, list):
            return None
        for tool in tools:
            if isinstance(tool, Mapping) and self._owned(tool.get("name")):
                return (
                    f"a client may not declare or redefine the relay's tool {tool.get('name')!r}; "
                    "the relay adds its own tools to the client's list"
                )
        return None

    def _owned(self, name: object) -> bool:
        """A relay tool's name (a client's value may be anything, even a dict)."""
        return isinstance(name, str) and name in self._names


def _refuse(message: str, event_id: str | None) -> ClientVerdict:
    return ClientVerdict(
        forward=None, refusal=error_event(message, code=REFUSED_CODE, event_id=event_id)
    )
