"""SessionPolicy: what a client may change about its session.

A client's ``session.update`` (and ``response.create``, which can carry its own
instructions and tools) passes, except for locked fields (by default instructions,
tools and model), which are removed. An event with nothing locked passes byte for byte.
Only these two event types are ever decoded; they are rare and small.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from relay.events import RESPONSE_CREATE, SESSION_UPDATE, loads_strict

_CONTAINER = {SESSION_UPDATE: "session", RESPONSE_CREATE: "response"}


class SessionPolicy:
    """Locked dotted paths (``instructions``, ``audio.output.voice``) inside the event body."""

    def __init__(self, locked_fields: Iterable[str]) -> None:
        self.locked = tuple(tuple(field.split(".")) for field in locked_fields if field)

    def apply(self, event_type: str, raw: bytes) -> tuple[bytes, list[str], str | None]:
        """Remove locked fields from a client event.

        Raises:
            ValueError: ``raw`` is not JSON or has duplicate keys.

        Returns:
            The bytes to forward (``raw`` itself when nothing was removed), the dotted
            names of the removed fields, and the event's ``event_id`` if it had one.
        """
        container_key = _CONTAINER.get(event_type)
        if container_key is None or not self.locked:
            return raw, [], None
        # Duplicate keys were refused by peek_type already; decode the same strict way so
        # what is checked here is what any parser upstream will see.
        event = loads_strict(raw)
        body = event.get(container_key) if isinstance(event, dict) else None
        if not isinstance(body, dict):
            return raw, [], None
        removed = [".".join(path) for path in self.locked if _remove(body, path)]
        event_id = event.get("event_id")
        event_id = event_id if isinstance(event_id, str) else None
        if not removed:
            return raw, [], event_id
        return json.dumps(event, separators=(",", ":")).encode(), removed, event_id


def _remove(body: dict[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = body
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            return False
    if isinstance(node, dict) and path[-1] in node:
        del node[path[-1]]
        return True
    return False
