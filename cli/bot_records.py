"""The CLI's view of the table: records a bot it created, reads bots, events and sessions back.

Owns every DynamoDB call the CLI makes, through ``storage.schema`` keys and
``storage.items`` shapes. The one write (``record_created``) is
``storage.items.bot_created_update``: it touches only the fields the CLI knows, with
``if_not_exists`` on creation time and index keys, because the webhook store may already
have written status to the same ``BOT#<id>/STATE`` item, which must never be clobbered.
Reads are queries (state + ``EVT#`` history, ``SESSION#`` connections and turns, the
``by_day`` index for recent bots), never scans.

The one difference from the other writers' style: the CLI is handed a boto3 ``Table``
(resource layer), whose client serializes plain values itself, so the request rendered
by ``storage.updates`` goes out as is instead of through ``TypeSerializer``; the request
is the same. (Its ``meta.client`` cannot be used low-level: the resource layer hooks it
to serialize again.)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, cast

from boto3.dynamodb.conditions import Key

from cli.errors import AwsError
from cli.stack import AWS_FAILURES, describe_aws_error
from storage import items, minutes, schema, times
from storage.items import plain

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

#: How far back ``bots`` looks, in day buckets of the by_day index.
DEFAULT_LOOKBACK_DAYS: Final = 30
#: Bound on items read for one bot's history, connections or turns.
MAX_ITEMS_PER_COLLECTION: Final = 2000


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
    """One bot as ``bot show`` presents it, in the shapes of ``storage.items``.

    The shapes say which attributes to expect; items come from a table any version of any
    writer may have written, so readers still ``.get()`` what is optional.
    """

    state: items.BotState
    events: list[items.BotEvent] = field(default_factory=list)
    connections: list[items.Connection] = field(default_factory=list)
    turns: list[items.Turn] = field(default_factory=list)
    #: Notes the agent took (``take_note``), oldest first.
    notes: list[items.Note] = field(default_factory=list)


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
        update = items.bot_created_update(
            {
                "bot_id": bot.bot_id,
                "session_id": bot.session_id,
                "region": bot.region,
                "meeting_url": bot.meeting_url,
                "bot_name": bot.bot_name,
            },
            bot.created_at,
        )
        try:
            self._table.update_item(**cast("dict[str, Any]", update.request()))
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
            "created_at": times.key_time(bot.created_at),
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

    def record_session(
        self,
        session_id: str,
        bot_id: str,
        memory_key: str | None,
        *,
        minutes_to_chat: bool = False,
        minutes_url: str | None = None,
    ) -> None:
        """Point the bot's relay session at it (the minutes job's way from a session's end
        back to its bot, and where the relay finds the bot's memory key), with the bot's
        minutes options (chat before leaving, its own endpoint)."""
        item = minutes.session_bot_item(
            session_id,
            bot_id,
            memory_key,
            minutes_to_chat=minutes_to_chat,
            minutes_url=minutes_url,
        )
        try:
            self._table.put_item(Item=cast("dict[str, Any]", item))
        except AWS_FAILURES as exc:
            raise AwsError(f"cannot record bot {bot_id} ({describe_aws_error(exc)})") from None

    def minutes(self, bot_id: str) -> minutes.MinutesJob | None:
        """The bot's minutes job (``minutes`` still JSON text), or ``None`` if none started."""
        try:
            answer = self._table.get_item(Key=minutes.minutes_key(bot_id), ConsistentRead=True)
        except AWS_FAILURES as exc:
            raise AwsError(f"cannot read bot {bot_id} ({describe_aws_error(exc)})") from None
        item = answer.get("Item")
        return cast("minutes.MinutesJob", plain(item)) if item else None

    def notes(self, bot_id: str) -> list[dict[str, Any]]:
        """What the agent noted in the bot's meeting (``NOTE#`` items), in order."""
        return list(self._query_prefix(schema.bot_pk(bot_id), minutes.NOTE_PREFIX))

    def state(self, bot_id: str) -> items.BotState | None:
        """The bot's ``STATE`` item, or ``None`` if we never saw it."""
        try:
            answer = self._table.get_item(
                Key={schema.PARTITION_KEY: schema.bot_pk(bot_id), schema.SORT_KEY: schema.STATE_SK}
            )
        except AWS_FAILURES as exc:
            raise AwsError(f"cannot read bot {bot_id} ({describe_aws_error(exc)})") from None
        item = answer.get("Item")
        return cast("items.BotState", plain(item)) if item else None

    def details(self, bot_id: str) -> BotDetails | None:
        """State, event history, relay connections and transcript of one bot."""
        state = self.state(bot_id)
        if state is None:
            return None
        events = cast(
            "list[items.BotEvent]",
            list(self._query_prefix(schema.bot_pk(bot_id), schema.EVENT_PREFIX)),
        )
        notes = cast(
            "list[items.Note]",
            list(self._query_prefix(schema.bot_pk(bot_id), schema.NOTE_PREFIX)),
        )
        connections: list[items.Connection] = []
        turns: list[items.Turn] = []
        session_id = state.get("session_id")
        if isinstance(session_id, str) and session_id:
            pk = schema.session_pk(session_id)
            connections = cast(
                "list[items.Connection]", list(self._query_prefix(pk, schema.CONNECTION_PREFIX))
            )
            turns = cast("list[items.Turn]", list(self._query_prefix(pk, schema.TURN_PREFIX)))
        return BotDetails(
            state=state, events=events, connections=connections, turns=turns, notes=notes
        )

    def recent(
        self, limit: int, now: datetime, lookback_days: int = DEFAULT_LOOKBACK_DAYS
    ) -> list[items.BotState]:
        """Up to ``limit`` bots, newest first, from the ``by_day`` index (no scan)."""
        found: list[items.BotState] = []
        today = now.astimezone(UTC).date()
        for offset in range(lookback_days + 1):
            if len(found) >= limit:
                break
            day: date = today - timedelta(days=offset)
            found.extend(self._day(day.isoformat(), limit - len(found)))
        return found

    # Private

    def _day(self, day: str, limit: int) -> list[items.BotState]:
        found: list[items.BotState] = []
        kwargs: dict[str, Any] = {
            "IndexName": schema.BY_DAY_INDEX,
            "KeyConditionExpression": Key(schema.BY_DAY_PARTITION_KEY).eq(schema.by_day_pk(day)),
            "ScanIndexForward": False,
        }
        try:
            while len(found) < limit:
                answer = self._table.query(Limit=limit - len(found), **kwargs)
                found.extend(cast("items.BotState", plain(i)) for i in answer.get("Items", []))
                if "LastEvaluatedKey" not in answer:
                    break
                kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        except AWS_FAILURES as exc:
            raise AwsError(f"cannot list bots ({describe_aws_error(exc)})") from None
        return found

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
