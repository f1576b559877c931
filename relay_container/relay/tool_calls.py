"""ToolCallTracker: which model function calls the relay runs, and what it sends back.

Sans-I/O: parsed events in, decisions and exact bytes out; no asyncio, no socket, no clock.
The session shell feeds it the few upstream events that matter for tools and the client
events that could reach a relay tool, and does the I/O it asks for.

The GA sequence for one function call (openai-python ``types/realtime``;
``docs/tools.md``)::

    response.output_item.added  {response_id, item:{type:"function_call", id, call_id, name}}
    response.function_call_arguments.delta ×N / .done {response_id, item_id, call_id, name,
                                                       arguments}
    response.done {response:{id, status, output:[{type:"function_call", call_id, name,
                                                  arguments, status}, …]}}
    → relay: conversation.item.create {item:{type:"function_call_output", call_id, output}}
    → relay: response.create            (so the model speaks the result)

``…arguments.done`` also fires when a response is cancelled (barge-in), incomplete or
failed, so nothing runs before ``response.done`` says ``completed``: a tool with side
effects (leave the meeting, post in the chat) must never run for an answer the
participants interrupted. Only names the relay owns run; every other function call is the
client's and passes through untouched. A ``call_id`` runs at most once, across resumes too
(``executed`` seeds the ids known from the session's records).

When one response asks for several relay tools, their outputs go up as each finishes and
one ``response.create`` follows the last. When it also holds a client-owned call, the
relay sends its outputs but leaves ``response.create`` to the client (which must send its
own output first); otherwise the model would answer before the client's result exists.
A ``response.create`` is never sent while a response is in progress (the model refuses it
with ``conversation_already_has_active_response``): it waits for that ``response.done``.

The client guard (a client may neither invoke nor change a relay tool) is
:class:`relay.tool_guard.ToolGuard`; :meth:`ToolCallTracker.check_client_event` asks it
with the relay call ids this tracker knows.

What it refuses to do: decide how a tool runs (``relay.tools``), parse audio events, or
keep unbounded state (call ids remembered: :data:`MAX_REMEMBERED_CALLS`).
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeGuard

from relay.events import (
    ARGUMENTS_DONE,
    OUTPUT_ITEM_ADDED,
    RESPONSE_CREATE,
    RESPONSE_CREATED,
    RESPONSE_DONE,
)
from relay.events import CONVERSATION_ITEM_CREATE as ITEM_CREATE
from relay.tool_guard import ClientVerdict, ToolGuard

#: Upstream event types to hand to :meth:`ToolCallTracker.on_upstream_event`; the rest
#: (audio above all) never need to be parsed for tools.
UPSTREAM_EVENT_TYPES: Final[frozenset[str]] = frozenset(
    {OUTPUT_ITEM_ADDED, ARGUMENTS_DONE, RESPONSE_CREATED, RESPONSE_DONE}
)

#: Call ids remembered (executed or seen); the oldest are forgotten beyond this.
MAX_REMEMBERED_CALLS: Final = 4096
#: Bounds on what a model's call may carry before the relay declines to run it.
MAX_CALL_ID_CHARS: Final = 128
MAX_NAME_CHARS: Final = 64
MAX_ARGUMENTS_CHARS: Final = 64 * 1024
#: Responses tracked as in progress; the model runs one (plus the odd out-of-band one).
MAX_ACTIVE_RESPONSES: Final = 16
#: Prefix of the ``event_id`` of every event the relay sends for tools, so the shell can
#: recognise the model's answers (``error.event_id``) to the relay's own events.
EVENT_ID_PREFIX: Final = "event_relay_tool_"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call the model made and the relay must run."""

    call_id: str
    name: str
    #: The JSON text the model wrote; the executor parses and validates it.
    arguments: str
    response_id: str


@dataclass(slots=True)
class _Batch:
    """The relay calls of one response, until their outputs are all sent."""

    pending: set[str]
    client_calls: bool
    respond: bool = False


@dataclass(slots=True)
class _Seen:
    name: str
    arguments: str | None = None
    response_id: str | None = None


@dataclass(slots=True)
class _State:
    seen: OrderedDict[str, _Seen] = field(default_factory=OrderedDict)
    executed: OrderedDict[str, None] = field(default_factory=OrderedDict)
    batches: dict[str, _Batch] = field(default_factory=dict)
    #: call_id → response id of its batch, for calls dispatched and not yet finished.
    running: dict[str, str] = field(default_factory=dict)
    #: Responses in progress (out-of-band ones can overlap an in-band one).
    active: set[str] = field(default_factory=set)
    #: A response.create owed to the model once the active response is done.
    deferred_create: bool = False


class ToolCallTracker:
    """Follows function calls in one upstream conversation; see the module docstring."""

    def __init__(
        self,
        relay_tools: Collection[str],
        declarations: Sequence[Mapping[str, Any]] = (),
        *,
        executed: Iterable[str] = (),
    ) -> None:
        """Track calls of ``relay_tools``.

        Args:
            relay_tools: names of the functions the relay runs.
            declarations: their GA ``session.tools`` entries, merged into a client's tools.
            executed: call ids already run in this conversation (from records, on resume
                or rollover); they never run again.
        """
        self._names = frozenset(relay_tools)
        self._guard = ToolGuard(self._names, declarations)
        self._state = _State()
        for call_id in executed:
            self._remember(self._state.executed, call_id, None)

    # Upstream

    def on_upstream_event(self, event_type: str, event: Mapping[str, Any]) -> list[ToolCall]:
        """Take one parsed upstream event; return the relay calls to run now (often none).

        Events of other types, and malformed ones, are ignored.
        """
        if event_type == RESPONSE_CREATED:
            response = event.get("response")
            rid = response.get("id") if isinstance(response, Mapping) else None
            if len(self._state.active) < MAX_ACTIVE_RESPONSES:
                self._state.active.add(rid if isinstance(rid, str) else "")
            return []
        if event_type == OUTPUT_ITEM_ADDED:
            self._note_item(event.get("item"), event.get("response_id"))
            return []
        if event_type == ARGUMENTS_DONE:
            call_id, name = event.get("call_id"), event.get("name")
            arguments = event.get("arguments")
            if _is_call_id(call_id) and isinstance(arguments, str):
                seen = self._state.seen.get(call_id)
                if seen is None and _is_name(name):
                    seen = _Seen(name=name)
                    self._remember(self._state.seen, call_id, seen)
                if seen is not None and len(arguments) <= MAX_ARGUMENTS_CHARS:
                    seen.arguments = arguments  # held only until its response.done
            return []
        if event_type == RESPONSE_DONE:
            response = event.get("response")
            rid = response.get("id") if isinstance(response, Mapping) else None
            if isinstance(rid, str) and rid in self._state.active:
                self._state.active.discard(rid)
            else:  # an unknown id: do not wait forever for a response we cannot name
                self._state.active.clear()
            if not isinstance(response, Mapping):
                return []
            return self._on_response_done(response)
        return []

    def tool_finished(self, call_id: str, output: str, *, respond: bool = True) -> list[bytes]:
        """The events to send upstream, in order, now that ``call_id`` has its ``output``.

        Args:
            call_id: a call returned by :meth:`on_upstream_event`.
            output: the ``function_call_output`` text (the executor's JSON payload).
            respond: False when the tool asks the model to stay silent
                (``end_turn_silently``): no ``response.create`` on its behalf.

        Returns:
            ``conversation.item.create`` with the output, then ``response.create`` when this
            was the last relay call of its response, no client call shares it and no
            response is in progress (else the ``response.create`` waits for
            :meth:`on_upstream_event` to see that ``response.done``, and
            :meth:`pending_response_create` hands it over). Unknown ids give ``[]``.
        """
        state = self._state
        rid = state.running.pop(call_id, None)
        if rid is None:
            return []
        out = [
            _dump(
                {
                    "type": ITEM_CREATE,
                    "event_id": _event_id(),
                    "item": {"type": "function_call_output", "call_id": call_id, "output": output},
                }
            )
        ]
        batch = state.batches.get(rid)
        if batch is None:
            return out
        batch.pending.discard(call_id)
        batch.respond = batch.respond or respond
        if batch.pending:
            return out
        del state.batches[rid]
        if not batch.respond or batch.client_calls:
            return out
        if state.active:
            state.deferred_create = True
            return out
        out.append(_response_create())
        return out

    def pending_response_create(self) -> bytes | None:
        """A ``response.create`` that waited for the model to finish a response, once free."""
        if self._state.deferred_create and not self._state.active:
            self._state.deferred_create = False
            return _response_create()
        return None

    def slow_tool_response(self, call_id: str, instructions: str) -> bytes | None:
        """An out-of-band ``response.create`` that speaks while ``call_id`` still runs.

        ``conversation: "none"`` keeps the filler out of the conversation, and
        ``tool_choice: "none"`` stops it from calling tools; it is an ordinary response,
        so a participant's speech still interrupts it. ``None`` when the call is no longer
        running or a response is in progress (the meeting is not silent then).
        """
        if call_id not in self._state.running or self._state.active:
            return None
        return _dump(
            {
                "type": RESPONSE_CREATE,
                "event_id": _event_id(),
                "response": {
                    "conversation": "none",
                    "instructions": instructions,
                    "tool_choice": "none",
                    "output_modalities": ["audio"],
                    "metadata": {"relay": "slow_tool"},
                },
            }
        )

    @property
    def running(self) -> frozenset[str]:
        """Call ids dispatched and not yet finished."""
        return frozenset(self._state.running)

    def was_executed(self, call_id: str) -> bool:
        """True for a call the relay ran (or was told about on resume)."""
        return call_id in self._state.executed

    def check_client_event(self, event_type: str, event: Mapping[str, Any]) -> ClientVerdict:
        """The :class:`~relay.tool_guard.ToolGuard`'s verdict on a parsed client event."""
        return self._guard.check(event_type, event, self._relay_call_ids)

    # Private

    def _note_item(self, item: object, response_id: object) -> None:
        if not isinstance(item, Mapping) or item.get("type") != "function_call":
            return
        call_id, name = item.get("call_id"), item.get("name")
        if _is_call_id(call_id) and _is_name(name) and call_id not in self._state.seen:
            rid = response_id if isinstance(response_id, str) else None
            self._remember(self._state.seen, call_id, _Seen(name=name, response_id=rid))

    def _on_response_done(self, response: Mapping[str, Any]) -> list[ToolCall]:
        state = self._state
        try:
            return self._calls_to_run(response)
        finally:
            # Arguments are needed only until their response is done: free them.
            for item in _as_list(response.get("output")):
                call_id = item.get("call_id") if isinstance(item, Mapping) else None
                if isinstance(call_id, str) and (seen := state.seen.get(call_id)):
                    seen.arguments = None

    def _calls_to_run(self, response: Mapping[str, Any]) -> list[ToolCall]:
        state = self._state
        rid = response.get("id")
        rid = rid if isinstance(rid, str) else ""
        if response.get("status") != "completed":
            # Cancelled, incomplete or failed: its calls never run (their arguments.done
            # came anyway). A relay call left without output would leave the model waiting
            # for nothing, so it is forgotten; the model sees the interruption.
            return []
        calls: list[ToolCall] = []
        client_calls = False
        for item in _as_list(response.get("output")):
            if not isinstance(item, Mapping) or item.get("type") != "function_call":
                continue
            call_id, name = item.get("call_id"), item.get("name")
            if not (_is_call_id(call_id) and _is_name(name)):
                continue
            if name not in self._names:
                client_calls = True
                continue
            if call_id in state.executed or call_id in state.running:
                continue  # already run (resume, rollover) or running: never twice
            arguments = item.get("arguments")
            if not isinstance(arguments, str):
                seen = state.seen.get(call_id)
                arguments = seen.arguments if seen and seen.arguments is not None else ""
            if len(arguments) > MAX_ARGUMENTS_CHARS:
                arguments = ""  # the executor answers "invalid arguments"; nothing huge kept
            self._remember(state.executed, call_id, None)
            state.running[call_id] = rid
            calls.append(ToolCall(call_id=call_id, name=name, arguments=arguments, response_id=rid))
        if calls:
            state.batches[rid] = _Batch(
                pending={c.call_id for c in calls}, client_calls=client_calls
            )
        return calls

    def _relay_call_ids(self) -> set[str]:
        return {cid for cid, seen in self._state.seen.items() if seen.name in self._names} | set(
            self._state.executed
        )

    @staticmethod
    def _remember(store: OrderedDict[str, Any], key: str, value: Any) -> None:
        store[key] = value
        store.move_to_end(key)
        while len(store) > MAX_REMEMBERED_CALLS:
            store.popitem(last=False)


def seed_events(call_id: str, name: str, arguments: str, output: str) -> list[bytes]:
    """The ``conversation.item.create`` events that replay one finished call into a new
    model session (resume, rollover): the call, then its output, so the model knows what
    it already did. Pass the call id in ``executed`` too, so it is never run again.
    """
    call = {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}
    result = {"type": "function_call_output", "call_id": call_id, "output": output}
    return [
        _dump({"type": ITEM_CREATE, "event_id": _event_id(), "item": call}),
        _dump({"type": ITEM_CREATE, "event_id": _event_id(), "item": result}),
    ]


def parse_upstream(raw: str | bytes) -> dict[str, Any] | None:
    """Decode an upstream event for the tracker; ``None`` when it is not a JSON object."""
    try:
        event = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return event if isinstance(event, dict) else None


def _is_call_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= MAX_CALL_ID_CHARS


def _is_name(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_CHARS


def _as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _event_id() -> str:
    return f"{EVENT_ID_PREFIX}{uuid.uuid4().hex[:16]}"


def _response_create() -> bytes:
    return _dump({"type": RESPONSE_CREATE, "event_id": _event_id()})


def _dump(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
