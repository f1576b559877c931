"""The simulator's conversation items: created by the client, deleted, truncated."""

from __future__ import annotations

from typing import TYPE_CHECKING

from relay.simulated_tools import declared_functions, requested_call
from relay.simulator.protocol import JsonObject, error_event, new_id

if TYPE_CHECKING:
    from relay.simulator.session import SimulatedSession


async def on_item_create(sim: SimulatedSession, event: JsonObject) -> None:
    """Add a client-made item to the conversation."""
    item = event.get("item")
    if not isinstance(item, dict):
        await sim.send(error_event("missing_required_parameter", "Missing 'item'."))
        return
    content = item.get("content")
    part = content[0] if isinstance(content, list) and content else {}
    sim.record.keep(
        sim.record.items_created,
        {
            "role": item.get("role"),
            "text": part.get("text") if isinstance(part, dict) else None,
        },
    )
    sim.requested_call = requested_call(item, declared_functions(sim.session)) or sim.requested_call
    item = {"object": "realtime.item", "status": "completed", **item}
    item.setdefault("id", new_id("item"))
    previous, sim.last_item_id = sim.last_item_id, item["id"]
    sim.items[item["id"]] = {"role": item.get("role"), "audio_ms": 0.0}
    await sim.send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
    await sim.send({"type": "conversation.item.done", "previous_item_id": previous, "item": item})


async def on_item_delete(sim: SimulatedSession, event: JsonObject) -> None:
    """Delete an item by id."""
    item_id = event.get("item_id")
    if sim.items.pop(str(item_id), None) is None:
        await _no_such_item(sim, item_id, event)
        return
    await sim.send({"type": "conversation.item.deleted", "item_id": item_id})


async def on_truncate(sim: SimulatedSession, event: JsonObject) -> None:
    """Truncate an assistant item's audio at what the client says it played."""
    item_id = event.get("item_id")
    audio_end_ms = event.get("audio_end_ms")
    content_index = event.get("content_index", 0)
    item = sim.items.get(str(item_id))
    if item is None:
        await _no_such_item(sim, item_id, event)
        return
    sent_ms = float(item["audio_ms"])
    sim.record.keep(
        sim.record.truncates,
        {
            "item_id": item_id,
            "content_index": content_index,
            "audio_end_ms": audio_end_ms,
            "audio_ms_sent": sent_ms,
        },
    )
    if item["role"] != "assistant" or not isinstance(audio_end_ms, int) or audio_end_ms < 0:
        await sim.send(
            error_event(
                "invalid_value",
                "Only assistant audio can be truncated, at a non-negative integer ms.",
                param="audio_end_ms",
                event_id=event.get("event_id"),
            )
        )
        return
    if audio_end_ms > sent_ms:
        await sim.send(
            error_event(
                "invalid_value",
                f"Audio content of {sent_ms:.0f}ms is already shorter than {audio_end_ms}ms",
                param="audio_end_ms",
                event_id=event.get("event_id"),
            )
        )
        return
    item["audio_ms"] = float(audio_end_ms)
    await sim.send(
        {
            "type": "conversation.item.truncated",
            "item_id": item_id,
            "content_index": content_index,
            "audio_end_ms": audio_end_ms,
        }
    )


async def _no_such_item(sim: SimulatedSession, item_id: object, event: JsonObject) -> None:
    await sim.send(
        error_event(
            "item_not_found",
            f"Item with item_id not found: {item_id}",
            param="item_id",
            event_id=event.get("event_id"),
        )
    )
