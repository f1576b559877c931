"""SessionPolicy: what a client may change about its session, and how a refusal looks.

The operator locks fields in ``agent.yaml`` (by default instructions, tools and model).
Locking a field means the client cannot change what the model is told by any route of
the GA protocol; these are every client event and field that can carry it:

============================  =================================================================
locked                        also covers
============================  =================================================================
``instructions``              ``session.instructions``, ``response.instructions``, the stored
                              prompt reference ``session.prompt`` / ``response.prompt``, a
                              ``system`` (or ``developer``) message in ``conversation.item.create``
                              and in ``response.input``
``tools``                     ``session.tools``, ``response.tools``, ``tool_choice`` in both,
                              and the prompt reference (a stored prompt carries tools)
``model``                     ``session.model`` (the URL fixes the model; GA cannot change it)
any dotted path               that path inside ``session`` and ``response``
============================  =================================================================

A client's value for a locked field is kept when it equals the operator's (a framework
that sends the relay's own model, or ``tools: []`` when the agent has none, changes
nothing) and otherwise removed; the rest of the event applies. A system message cannot
be half-applied: its event is dropped whole. By default this is silent toward the client
(frameworks such as Pipecat treat any ``error`` event as fatal) and logged and counted
here; ``locked_fields_error: true`` in agent.yaml adds an ``error`` event
(``relay_locked_fields``) for clients that want to know.

Edits are byte-exact (``relay.json_edit``): what the client sent besides the removed
field reaches the model as written. An event with nothing to remove passes as the same
bytes. Only the event types in ``events.FILTERED_TYPES`` are decoded, and
``conversation.item.create`` only when it could name a system role.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from relay import json_edit
from relay.events import (
    CONVERSATION_ITEM_CREATE,
    RESPONSE_CREATE,
    SESSION_UPDATE,
    error_event,
    loads_strict,
)

_CONTAINER: Final = {SESSION_UPDATE: "session", RESPONSE_CREATE: "response"}
#: Message roles whose text instructs the model (GA has ``system``; ``developer`` is the
#: Responses API's name for it, refused here too in case a model accepts it).
INSTRUCTING_ROLES: Final = frozenset({"system", "developer"})
#: Other fields a locked field implies (see the table above).
_IMPLIED: Final = {
    "instructions": ("prompt",),
    "tools": ("tool_choice", "prompt"),
}
LOCKED_CODE: Final = "relay_locked_fields"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one client event."""

    #: The bytes to send to the model, or None to drop the event.
    forward: bytes | None
    #: What was removed (dotted names inside the event's container, ``item``, ``input[i]``).
    removed: tuple[str, ...] = ()
    #: An ``error`` event for the client, or None.
    reply: bytes | None = None


class SessionPolicy:
    """Locked fields, the operator's values for them, and whether refusals are errors.

    Args:
        locked_fields: dotted paths inside ``session`` / ``response`` (``instructions``,
            ``audio.output.voice``).
        operator: the operator's session (``AgentConfig.locked_values()``); a client value
            equal to the operator's is kept. ``model`` is compared with the session's model.
        error_events: send the client an ``error`` event for each refusal.
        on_drop: called with the removed names, the event type and the session id of each
            refused event (the server logs and counts it; the policy does no I/O).
    """

    def __init__(
        self,
        locked_fields: Iterable[str],
        *,
        operator: Mapping[str, Any] | None = None,
        error_events: bool = False,
        on_drop: Callable[[Sequence[str], str, str | None], None] | None = None,
    ) -> None:
        locked = [tuple(field.split(".")) for field in locked_fields if field]
        names = {path[0] for path in locked if len(path) == 1}
        for name in sorted(names):
            for implied in _IMPLIED.get(name, ()):
                if (implied,) not in locked:
                    locked.append((implied,))
        self.locked: tuple[tuple[str, ...], ...] = tuple(locked)
        self.instructions_locked = "instructions" in names
        self.operator: Mapping[str, Any] = operator or {}
        self.error_events = error_events
        self._on_drop = on_drop

    def apply(
        self,
        event_type: str,
        raw: bytes,
        *,
        model: str | None = None,
        session_id: str | None = None,
    ) -> Verdict:
        """Enforce the locked fields on one client event.

        Args:
            event_type: the event's ``type`` (already read by ``events.peek_type``).
            raw: the event as the client sent it (UTF-8 JSON).
            model: the session's model, the operator's value for ``model``.
            session_id: for the log line of a refusal.

        Returns:
            A Verdict: ``forward`` is ``raw`` itself when nothing was removed; an event that
            is not strict JSON is dropped with an ``invalid_json`` error reply.
        """
        if not self.locked:
            return Verdict(raw)
        if event_type == CONVERSATION_ITEM_CREATE:
            return self._item_create(raw, session_id)
        container = _CONTAINER.get(event_type)
        if container is None:
            return Verdict(raw)
        try:
            event = loads_strict(raw)
        except ValueError as exc:
            return _invalid(exc)
        body = event.get(container) if isinstance(event, dict) else None
        if not isinstance(body, dict):
            return Verdict(raw)
        removals = [path for path in self.locked if self._refused(body, path, model)]
        system_inputs = (
            _instructing_indexes(body.get("input"))
            if container == "response" and self.instructions_locked
            else []
        )
        if not removals and not system_inputs:
            return Verdict(raw)
        removed = tuple(
            [".".join(path) for path in removals] + [f"input[{i}]" for i in system_inputs]
        )
        edited = json_edit.strip_value(raw)
        for path in removals:
            smaller = json_edit.remove_member(edited, (container, *path))
            if smaller is None:
                # The decoded event has the field, so its bytes do too; should they ever
                # disagree, the event is refused rather than forwarded with the field.
                return self._refusal(None, removed, event, session_id, event_type)
            edited = smaller
        if system_inputs:
            edited = json_edit.replace_member_value(
                edited,
                container,
                lambda body_raw: json_edit.replace_member_value(
                    body_raw, "input", lambda items: json_edit.remove_elements(items, system_inputs)
                ),
            )
        return self._refusal(edited, removed, event, session_id, event_type)

    # Private

    def _refused(self, body: Mapping[str, Any], path: tuple[str, ...], model: str | None) -> bool:
        """Whether ``body`` sets ``path`` to something other than the operator's value."""
        found, value = _lookup(body, path)
        if not found:
            return False
        if path == ("model",):
            return model is None or value != model
        known, operator_value = _lookup(self.operator, path)
        return not (known and value == operator_value)

    def _item_create(self, raw: bytes, session_id: str | None) -> Verdict:
        if not self.instructions_locked:
            return Verdict(raw)
        # Without an escape, a role can only be spelled literally: most items (audio,
        # images, function outputs) are forwarded without being decoded.
        if b"\\" not in raw and not any(f'"{role}"'.encode() in raw for role in INSTRUCTING_ROLES):
            return Verdict(raw)
        try:
            event = loads_strict(raw)
        except ValueError as exc:
            return _invalid(exc)
        item = event.get("item") if isinstance(event, dict) else None
        if not (isinstance(item, dict) and _instructing(item.get("role"))):
            return Verdict(raw)
        return self._refusal(None, ("item",), event, session_id, CONVERSATION_ITEM_CREATE)

    def _refusal(
        self,
        forward: bytes | None,
        removed: tuple[str, ...],
        event: Mapping[str, Any],
        session_id: str | None,
        event_type: str,
    ) -> Verdict:
        if self._on_drop is not None:
            self._on_drop(removed, event_type, session_id)
        if not self.error_events:
            return Verdict(forward, removed)
        event_id = event.get("event_id")
        what = (
            "a system message (instructions are set by the server)"
            if removed == ("item",)
            else ", ".join(removed)
        )
        reply = error_event(
            f"the relay ignored session fields the server controls: {what}",
            code=LOCKED_CODE,
            param=removed[0],
            event_id=event_id if isinstance(event_id, str) else None,
        )
        return Verdict(forward, removed, reply)


def _lookup(body: Mapping[str, Any], path: Sequence[str]) -> tuple[bool, Any]:
    node: Any = body
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _instructing_indexes(items: object) -> list[int]:
    if not isinstance(items, list):
        return []
    return [
        index
        for index, item in enumerate(items)
        if isinstance(item, dict) and _instructing(item.get("role"))
    ]


def _invalid(exc: ValueError) -> Verdict:
    return Verdict(
        None,
        reply=error_event(f"the event is not valid JSON: {str(exc)[:200]}", code="invalid_json"),
    )


def _instructing(role: object) -> bool:
    """A role that instructs the model (a client's value may be anything, even a dict)."""
    return isinstance(role, str) and role in INSTRUCTING_ROLES
