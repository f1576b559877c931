"""BotBinding: which Recall bot a relay session serves, and the persona it was created with.

``voicebot bot create`` writes ``SESSION#<session_id>`` / ``AGENT`` (``storage.items
.SessionAgent``) with the bot id and the overlay it validated; the relay reads it once at
session start with :func:`load_overlay`, keyed by the token's subject (the session id the
CLI minted the token for), so a client can neither choose nor change its bot. One
``GetItem`` in a worker thread, with short timeouts; a missing item means "no bot" (an SDK
client, ``make dev``'s page), and a table that cannot be read raises, so the shell decides
whether to run without a bot or refuse the session.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from relay.errors import UpstreamError
from storage import items, minutes, schema

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

_BOTO_CONFIG: Final = Config(
    connect_timeout=2, read_timeout=3, retries={"max_attempts": 2, "mode": "standard"}
)


@dataclass(frozen=True, slots=True)
class BotBinding:
    """A session's bot and stored overlay (the fields it overrides; maybe empty)."""

    session_id: str
    bot_id: str
    overlay: dict[str, Any] = field(default_factory=dict)


class BindingStore:
    """Reads session bindings from one table."""

    def __init__(
        self, table_name: str, *, region: str | None = None, endpoint_url: str | None = None
    ) -> None:
        """Use ``table_name``; ``endpoint_url`` ``None`` lets boto3 honour the environment."""
        resource = boto3.resource(
            "dynamodb", region_name=region, endpoint_url=endpoint_url, config=_BOTO_CONFIG
        )
        self._table: Table = resource.Table(table_name)

    async def load_overlay(self, session_id: str) -> BotBinding | None:
        """The binding ``bot create`` recorded for ``session_id``, or ``None``.

        Raises:
            UpstreamError: the table could not be read (an infrastructure fault).
        """
        key = {
            schema.PARTITION_KEY: schema.session_pk(session_id),
            schema.SORT_KEY: schema.SESSION_AGENT_SK,
        }
        try:
            # Consistent: the page may connect moments after `bot create` wrote the item.
            answer = await asyncio.to_thread(
                lambda: self._table.get_item(Key=key, ConsistentRead=True)
            )
        except (BotoCoreError, ClientError) as exc:
            raise UpstreamError(f"cannot read the session's bot ({type(exc).__name__})") from None
        item = answer.get("Item")
        return binding_from_item(items.plain(item)) if item else None

    async def memory_key(self, session_id: str) -> str | None:
        """The memory key ``bot create --memory`` recorded for the session's bot, if any.

        Raises:
            UpstreamError: the table could not be read.
        """
        try:
            answer = await asyncio.to_thread(
                lambda: self._table.get_item(
                    Key=minutes.session_bot_key(session_id), ConsistentRead=True
                )
            )
        except (BotoCoreError, ClientError) as exc:
            raise UpstreamError(
                f"cannot read the session's memory ({type(exc).__name__})"
            ) from None
        key = (answer.get("Item") or {}).get("memory_key")
        return key if isinstance(key, str) and minutes.is_valid_memory_key(key) else None

    async def memories(self, memory_key: str, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` minutes filed under ``memory_key`` (``MemoryEntry`` items).

        Raises:
            UpstreamError: the table could not be read.
        """
        query = minutes.memory_query(memory_key, limit)
        try:
            answer = await asyncio.to_thread(lambda: self._table.query(**query))
        except (BotoCoreError, ClientError) as exc:
            raise UpstreamError(
                f"cannot read the meetings' memory ({type(exc).__name__})"
            ) from None
        return [items.plain(item) for item in answer.get("Items", [])]


def binding_from_item(item: dict[str, Any]) -> BotBinding | None:
    """A :class:`BotBinding` from a stored ``SessionAgent`` item; ``None`` when malformed."""
    session_id, bot_id = item.get("session_id"), item.get("bot_id")
    if not isinstance(session_id, str) or not isinstance(bot_id, str) or not bot_id:
        return None
    overlay = item.get("overlay")
    return BotBinding(
        session_id=session_id, bot_id=bot_id, overlay=overlay if isinstance(overlay, dict) else {}
    )
