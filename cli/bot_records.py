"""The CLI's view of the table: records a bot it created, reads bots, events and sessions back.

Owns every DynamoDB call the CLI makes, through ``storage.schema`` keys and
``storage.items`` shapes. The one write (``record_created``) touches only the fields the
CLI knows, with ``if_not_exists`` on creation time and index keys: the webhook store may
already have written status to the same ``BOT#<id>/STATE`` item, and must never be clobbered.
Reads are queries (state + ``EVT#`` history, ``SESSION#`` connections and turns, the
``by_day`` index for recent bots), never scans.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from boto3.dynamodb.conditions import Key

from cli.errors import AwsError
from cli.stack import AWS_FAILURES, describe_aws_error
from storage import schema
from storage.items import plain

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

#: How far back ``bots`` looks, in day buckets of the by_day index.
DEFAULT_LOOKBACK_DAYS: Final = 30
#: Bound on items read for one bot's history, connections or turns.
MAX_ITEMS_PER_COLLECTION: Final = 2000


def iso_now(now: datetime) -> str:
    """Fixed-width ISO 8601 UTC with milliseconds, so lexical order is time order."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class CreatedBot:
    """What the CLI knows about a bot right after Recall created it."""

    bot_id: str
    session_id: str
    region: str
    meeting_url: str
    bot_name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BotDetails:
    """One bot as ``bot show`` presents it; items are plain dicts (numbers as int/float)."""

    state: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    connections: list[dict[str, Any]] = field(default_factory=list)
    turns: list[dict[str, Any]] = field(default_factory=list)
    #: Notes the agent took (``take_note``), oldest first.
    notes: list[dict[str, Any]] = field(default_factory=list)


class BotRecords:
    """Reads and the one write the CLI does on the application table."""

    def __init__(self, table: Table) -> None:
        """Work on ``table`` (a boto3 ``Table`` resource)."""
        self._table = table

    def check(self) -> None:
        """Fail now if the table cannot be reached (before Recall creates a bot to record)."""
        try:
            self._table.load()
        except AWS_FAILURES as exc:
            raise AwsError(
                f"cannot use table {self._table.name} ({describe_aws_error(exc)})"
            ) from None

    def record_created(self, bot: CreatedBot) -> None:
        """Write what we know about a new bot without touching the status the webhooks own."""
        created_at = iso_now(bot.created_at)
        day = bot.created_at.astimezone(UTC).date().isoformat()
        try:
            self._table.update_item(
                Key={
                    schema.PARTITION_KEY: schema.bot_pk(bot.bot_id),
                    schema.SORT_KEY: schema.STATE_SK,
                },
                UpdateExpression=(
                    "SET bot_id = :bot_id, session_id = :session_id, #region = :region, "
                    "meeting_url = :meeting_url, bot_name = :bot_name, "
                    "created_at = if_not_exists(created_at, :created_at), "
                    f"{schema.BY_DAY_PARTITION_KEY} = if_not_exists("
                    f"{schema.BY_DAY_PARTITION_KEY}, :gsi1pk), "
                    f"{schema.BY_DAY_SORT_KEY} = if_not_exists({schema.BY_DAY_SORT_KEY}, :gsi1sk)"
                ),
                # "region" is not reserved today; the name keeps the expression future-proof.
                ExpressionAttributeNames={"#region": "region"},
                ExpressionAttributeValues={
                    ":bot_id": bot.bot_id,
                    ":session_id": bot.session_id,
                    ":region": bot.region,
                    ":meeting_url": bot.meeting_url,
                    ":bot_name": bot.bot_name,
                    ":created_at": created_at,
                    ":gsi1pk": schema.by_day_pk(day),
                    ":gsi1sk": schema.by_day_sk(created_at, bot.bot_id),
                },
            )
        except AWS_FAILURES as exc:
            raise AwsError(f"cannot record bot {bot.bot_id} ({describe_aws_error(exc)})") from None

    def record_binding(self, bot: CreatedBot, overlay: dict[str, Any] | None = None) -> None:
        """Tell the relay which bot the session serves, with its persona (``SessionAgent``).

        The session id is fresh, so the item is written once and never overwritten.
        """
        item: dict[str, Any] = {
            schema.PARTITION_KEY: schema.session_pk(bot.session_id),
            schema.SORT_KEY: schema.SESSION_AGENT_SK,
            "session_id": bot.session_id,
            "bot_id": bot.bot_id,
            "created_at": iso_now(bot.created_at),
        }
        if overlay:
            item["overlay"] = overlay
        try:
            self._table.put_item(
                Item=item,
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": schema.PARTITION_KEY},
            )
        except AWS_FAILURES as exc:
            raise AwsError(
                f"cannot record the session of bot {bot.bot_id} ({describe_aws_error(exc)})"
            ) from None

    def state(self, bot_id: str) -> dict[str, Any] | None:
        """The bot's ``STATE`` item, or ``None`` if we never saw it."""
        try:
            answer = self._table.get_item(
                Key={schema.PARTITION_KEY: schema.bot_pk(bot_id), schema.SORT_KEY: schema.STATE_SK}
            )
        except AWS_FAILURES as exc:
            raise AwsError(f"cannot read bot {bot_id} ({describe_aws_error(exc)})") from None
        item = answer.get("Item")
        return plain(item) if item else None

    def details(self, bot_id: str) -> BotDetails | None:
        """State, event history, relay connections and transcript of one bot."""
        state = self.state(bot_id)
        if state is None:
            return None
        events = list(self._query_prefix(schema.bot_pk(bot_id), schema.EVENT_PREFIX))
        notes = list(self._query_prefix(schema.bot_pk(bot_id), schema.NOTE_PREFIX))
        connections: list[dict[str, Any]] = []
        turns: list[dict[str, Any]] = []
        session_id = state.get("session_id")
        if isinstance(session_id, str) and session_id:
            pk = schema.session_pk(session_id)
            connections = list(self._query_prefix(pk, schema.CONNECTION_PREFIX))
            turns = list(self._query_prefix(pk, schema.TURN_PREFIX))
        return BotDetails(
            state=state, events=events, connections=connections, turns=turns, notes=notes
        )

    def recent(
        self, limit: int, now: datetime, lookback_days: int = DEFAULT_LOOKBACK_DAYS
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` bots, newest first, from the ``by_day`` index (no scan)."""
        found: list[dict[str, Any]] = []
        today = now.astimezone(UTC).date()
        for offset in range(lookback_days + 1):
            if len(found) >= limit:
                break
            day: date = today - timedelta(days=offset)
            found.extend(self._day(day.isoformat(), limit - len(found)))
        return found

    # Private

    def _day(self, day: str, limit: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "IndexName": schema.BY_DAY_INDEX,
            "KeyConditionExpression": Key(schema.BY_DAY_PARTITION_KEY).eq(schema.by_day_pk(day)),
            "ScanIndexForward": False,
        }
        try:
            while len(items) < limit:
                answer = self._table.query(Limit=limit - len(items), **kwargs)
                items.extend(plain(i) for i in answer.get("Items", []))
                if "LastEvaluatedKey" not in answer:
                    break
                kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        except AWS_FAILURES as exc:
            raise AwsError(f"cannot list bots ({describe_aws_error(exc)})") from None
        return items

    def _query_prefix(self, pk: str, prefix: str) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key(schema.PARTITION_KEY).eq(pk)
            & Key(schema.SORT_KEY).begins_with(prefix),
        }
        count = 0
        try:
            while count < MAX_ITEMS_PER_COLLECTION:
                answer = self._table.query(**kwargs)
                for item in answer.get("Items", []):
                    count += 1
                    yield plain(item)
                if "LastEvaluatedKey" not in answer:
                    return
                kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        except AWS_FAILURES as exc:
            raise AwsError(f"cannot read {pk} ({describe_aws_error(exc)})") from None
