"""One simulated Realtime session on one connection: its state and the event dispatch.

The handlers live by idea beside it (``input_audio``, ``items``, ``responses``); this
module owns what they share: the GA session object, the conversation's items, the VAD
state and the one response in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from relay.simulated_tools import RequestedCall
from relay.simulator import input_audio, items, responses
from relay.simulator.protocol import (
    BETA_CLOSE_CODE,
    BETA_MESSAGE,
    CLIENT_EVENTS,
    GA_SESSION_FIELDS,
    JsonObject,
    deep_merge,
    default_session,
    error_event,
    new_id,
)
from relay.simulator.records import MAX_RECORDED_ITEMS, SessionRecord, SimulatorOptions


class SimulatedSession:
    """One Realtime session on one connection: its state, its dispatch and the reply task."""

    def __init__(
        self, ws: ServerConnection, record: SessionRecord, options: SimulatorOptions
    ) -> None:
        self.ws = ws
        self.record = record
        self.options = options
        self.session = default_session(record.model or "gpt-realtime-2.1", options.voice)
        self.conversation_id = new_id("conv")
        # Items by id: role and, for assistant audio, how many ms were sent.
        self.items: dict[str, JsonObject] = {}
        self.last_item_id: str | None = None
        # Input audio buffer and VAD state.
        self.pending = b""
        #: Turns committed so far (which scripted transcript the next one gets).
        self.turns_heard = 0
        self.audio_ms = 0.0
        self.buffered_ms = 0.0
        self.loud_frames = 0
        self.quiet_ms = 0.0
        self.speech_item: str | None = None
        self.speech_start_ms = 0.0
        # After a turn cut at max_turn_ms, the same unbroken sound is not a new turn.
        self.cut_continues = False
        # The one response in flight, its cancel signal and its record.
        self.response_task: asyncio.Task[None] | None = None
        self.cancel_reason: str | None = None
        self.cancelled = asyncio.Event()
        # A function a participant's text asked for, called in the next answer.
        self.requested_call: RequestedCall | None = None
        # Events sent later (a delayed transcription); cancelled when the session ends.
        self.pending_tasks: set[asyncio.Task[None]] = set()

    # Lifecycle

    async def run(self) -> None:
        """Send session.created, then handle client events until the connection closes."""
        try:
            await self.send({"type": "session.created", "session": self.session})
            async for message in self.ws:
                await self.handle(message)
        except ConnectionClosed:
            pass
        finally:
            for task in self.pending_tasks:
                task.cancel()
            if self.response_task is not None:
                self.response_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await self.response_task

    async def send(self, event: JsonObject) -> None:
        """Send one server event, giving it an event id."""
        event.setdefault("event_id", new_id("event"))
        if event["type"] == "error" and len(self.record.errors_sent) < MAX_RECORDED_ITEMS:
            self.record.errors_sent.append(event["error"]["code"])
        await self.ws.send(json.dumps(event))

    async def handle(self, message: str | bytes) -> None:
        """Dispatch one client frame."""
        if isinstance(message, bytes):
            self.record.note_event("(binary)")
            await self.send(error_event("invalid_value", "Binary frames are not supported."))
            return
        try:
            event = json.loads(message)
        except ValueError:
            self.record.note_event("(invalid json)")
            await self.send(error_event("invalid_json", "The message is not valid JSON."))
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self.record.note_event("(no type)")
            await self.send(error_event("missing_required_parameter", "Missing 'type'."))
            return
        event_type = event["type"]
        self.record.note_event(event_type)
        client_event_id = event.get("event_id")
        handler = HANDLERS.get(event_type)
        if handler is None:
            await self.send(
                error_event(
                    "invalid_value",
                    f"Invalid value: '{event_type}'. Supported values are: "
                    + ", ".join(f"'{name}'" for name in CLIENT_EVENTS)
                    + ".",
                    param="type",
                    event_id=client_event_id,
                )
            )
            return
        await handler(self, event)

    # Session

    async def on_session_update(self, event: JsonObject) -> None:
        """Merge a GA session; the beta shape closes the connection like OpenAI's."""
        update = event.get("session")
        if not isinstance(update, dict) or update.get("type") != "realtime":
            await self.send(error_event("beta_api_shape_disabled", BETA_MESSAGE))
            await self.ws.close(BETA_CLOSE_CODE, "beta_api_shape_disabled")
            return
        self.record.keep(self.record.session_updates, update)
        unknown = sorted(set(update) - GA_SESSION_FIELDS)
        if unknown:
            await self.send(
                error_event(
                    "unknown_parameter",
                    f"Unknown parameter: 'session.{unknown[0]}'.",
                    param=f"session.{unknown[0]}",
                    event_id=event.get("event_id"),
                )
            )
            return
        if "model" in update and update["model"] != self.session["model"]:
            await self.send(
                error_event(
                    "invalid_value",
                    "The model of a session cannot be changed.",
                    param="session.model",
                    event_id=event.get("event_id"),
                )
            )
            return
        self.session = deep_merge(self.session, update)
        await self.send({"type": "session.updated", "session": self.session})

    def turn_detection(self) -> JsonObject | None:
        """The session's ``turn_detection`` object, or None when it is off."""
        value = self.session["audio"]["input"].get("turn_detection")
        return value if isinstance(value, dict) else None

    @property
    def response_active(self) -> bool:
        """Whether a response is being generated now."""
        return self.response_task is not None and not self.response_task.done()

    def start_response(self, metadata: JsonObject | None = None) -> None:
        """Start streaming a response (the caller checked none is active); its
        ``metadata`` is echoed in ``response.created`` and ``response.done``, as GA does."""
        self.cancel_reason = None
        self.cancelled = asyncio.Event()
        self.response_task = asyncio.create_task(
            responses.stream_response(self, metadata), name="simulated-response"
        )

    def later(self, events: Coroutine[Any, Any, None]) -> None:
        """Send ``events`` in the background, owned by this session (bounded: one a turn)."""
        task = asyncio.create_task(events, name="simulated-later")
        self.pending_tasks.add(task)
        task.add_done_callback(self.pending_tasks.discard)

    def cancel_response(self, reason: str) -> None:
        """Ask the response in flight to stop; it ends with response.done ``cancelled``."""
        self.cancel_reason = reason
        self.cancelled.set()


#: What each client event type is handled by.
HANDLERS: Final[dict[str, Callable[[SimulatedSession, JsonObject], Awaitable[None]]]] = {
    "session.update": SimulatedSession.on_session_update,
    "input_audio_buffer.append": input_audio.on_append,
    "input_audio_buffer.commit": input_audio.on_commit,
    "input_audio_buffer.clear": input_audio.on_clear,
    "conversation.item.create": items.on_item_create,
    "conversation.item.delete": items.on_item_delete,
    "conversation.item.truncate": items.on_truncate,
    "response.create": responses.on_response_create,
    "response.cancel": responses.on_response_cancel,
}
