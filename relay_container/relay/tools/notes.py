"""NoteStore: the notes the agent takes, stored in DynamoDB under the bot.

Keys and item shape come from ``storage`` (``BOT#<bot_id>`` / ``NOTE#<at_ms>#<note_id>``,
``storage.items.Note``), so ``voicebot bot show`` reads them back. boto3 runs in a worker
thread with short timeouts, so a slow table delays only the tool that asked, never the
audio. It refuses unbounded input: a note is at most :data:`MAX_NOTE_CHARS` characters and
a listing at most :data:`MAX_LISTED_NOTES` notes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, cast

import boto3
from boto3.dynamodb.conditions import Key
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from relay.tools.errors import ToolFailure
from storage import items, schema

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

MAX_NOTE_CHARS: Final = 2000
MAX_LISTED_NOTES: Final = 50
_BOTO_CONFIG: Final = Config(
    connect_timeout=2, read_timeout=3, retries={"max_attempts": 2, "mode": "standard"}
)


class NoteStore:
    """Add and list a bot's notes on one table."""

    def __init__(
        self,
        table_name: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        retention_days: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Use ``table_name``; ``endpoint_url`` ``None`` lets boto3 honour the environment."""
        resource = boto3.resource(
            "dynamodb", region_name=region, endpoint_url=endpoint_url, config=_BOTO_CONFIG
        )
        self._table: Table = resource.Table(table_name)
        self._retention_seconds = retention_days * 86400
        self._clock = clock

    async def add(self, bot_id: str, text: str, *, session_id: str | None = None) -> items.Note:
        """Store one note; returns it as stored.

        Raises:
            ToolFailure: empty or too long, or the table could not be written.
        """
        text = " ".join(text.split())
        if not text:
            raise ToolFailure("the note is empty")
        if len(text) > MAX_NOTE_CHARS:
            raise ToolFailure(f"the note is longer than {MAX_NOTE_CHARS} characters")
        now = self._clock()
        at_ms = int(now * 1000)
        note_id = uuid.uuid4().hex[:12]
        item: items.Note = {
            "pk": schema.bot_pk(bot_id),
            "sk": schema.note_sk(at_ms, note_id),
            "bot_id": bot_id,
            "note_id": note_id,
            "text": text,
            "at": _iso_ms(at_ms),
            "expires_at": int(now) + self._retention_seconds,
        }
        if session_id:
            item["session_id"] = session_id
        stored = cast(dict[str, Any], item)
        await self._call(lambda: self._table.put_item(Item=stored))
        return item

    async def recent(self, bot_id: str, limit: int = MAX_LISTED_NOTES) -> list[items.Note]:
        """The bot's newest notes, oldest first (at most ``limit``)."""
        limit = max(1, min(limit, MAX_LISTED_NOTES))
        answer: dict[str, Any] = await self._call(
            lambda: self._table.query(
                KeyConditionExpression=Key(schema.PARTITION_KEY).eq(schema.bot_pk(bot_id))
                & Key(schema.SORT_KEY).begins_with(schema.NOTE_PREFIX),
                ScanIndexForward=False,
                Limit=limit,
            )
        )
        found = [items.plain(i) for i in answer.get("Items", [])]
        return list(reversed(found))

    # Private

    async def _call(self, call: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(call)
        except (BotoCoreError, ClientError) as exc:
            raise ToolFailure(f"the notes could not be reached ({type(exc).__name__})") from None


def _iso_ms(epoch_ms: int) -> str:
    """Fixed-width ISO 8601 UTC with milliseconds (the table's time format)."""
    stamp = datetime.fromtimestamp(epoch_ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{epoch_ms % 1000:03d}Z"
