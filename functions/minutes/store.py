"""The minutes job's only DynamoDB code: read a meeting back, claim, store, mark delivered.

Keys and shapes come from ``storage.schema`` and ``storage.minutes``; every write is
conditional (see ``storage.minutes`` for the job's states). Reads are queries on one
partition, never scans, bounded by :data:`MAX_ITEMS`. Failures propagate as boto3's
exceptions: the queue retries the message, and after its last attempt it lands in the
dead-letter queue (which alarms).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, cast

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from functions.minutes.summarizer import Line
from storage import leaving, minutes, schema
from storage.items import plain

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: Most items read from one collection (turns of a session, notes of a bot).
MAX_ITEMS: Final = 5000
#: Recall's history items the minutes read (``functions.webhooks`` writes them).
TRANSCRIPT_EVENT: Final = "transcript.data"
CHAT_EVENT: Final = "participant_events.chat_message"
#: A "speaker" longer than this is not a name (the summary had no speaker prefix).
MAX_SPEAKER_CHARS: Final = 100

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def serialize(values: Mapping[str, Any]) -> dict[str, Any]:
    """Plain Python values as DynamoDB attribute values."""
    return {name: _serializer.serialize(value) for name, value in values.items()}


def deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    """A low-level item as plain Python (numbers as ``int``/``float``)."""
    return cast("dict[str, Any]", plain({k: _deserializer.deserialize(v) for k, v in item.items()}))


def _is_condition_failure(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code")
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = exc.response.get("CancellationReasons") or []
        return any(r.get("Code") == "ConditionalCheckFailed" for r in reasons)
    return False


class MinutesStore:
    """The job's reads and conditional writes on the application table."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        """Work on ``table_name`` through ``client`` (low-level)."""
        self._client = client
        self._table = table_name

    # Reads

    def get(self, key: Mapping[str, str]) -> dict[str, Any] | None:
        """One item by key (strongly consistent), as plain Python."""
        answer = self._client.get_item(
            TableName=self._table, Key=serialize(key), ConsistentRead=True
        )
        item = answer.get("Item")
        return deserialize(item) if item else None

    def job(self, bot_id: str) -> minutes.MinutesJob | None:
        """The bot's ``MINUTES`` item."""
        return cast("minutes.MinutesJob | None", self.get(minutes.minutes_key(bot_id)))

    def session_bot(self, session_id: str) -> minutes.SessionBot | None:
        """The bot a relay session serves, if the session was created for one."""
        return cast("minutes.SessionBot | None", self.get(minutes.session_bot_key(session_id)))

    def bot_state(self, bot_id: str) -> dict[str, Any] | None:
        """The bot's ``STATE`` item."""
        return self.get(
            {schema.PARTITION_KEY: schema.bot_pk(bot_id), schema.SORT_KEY: schema.STATE_SK}
        )

    def connections(self, session_id: str) -> list[dict[str, Any]]:
        """Every relay connection of a session."""
        return list(self._query(schema.session_pk(session_id), schema.CONNECTION_PREFIX))

    def lines(self, bot_id: str, session_id: str | None) -> list[Line]:
        """The meeting as the summarizer reads it, in time order, speakers named where known.

        Recall's final transcripts (``transcript.data`` history items, ``Name: words``) name
        who spoke; when the bot has them they stand for the meeting's side, and the relay's
        own turns add only what the agent said. Without them the relay's ``user`` turns
        are the meeting's side, named by the speaker the relay attributed from Recall's
        real-time events (``participant`` where it had none). Chat messages (webhook
        ``participant_events.chat_message`` events, and the relay's ``via: chat`` turns)
        and the agent's notes are added.
        """
        found: list[tuple[str, int, Line]] = []
        named = False
        for i, event in enumerate(self._query(schema.bot_pk(bot_id), schema.EVENT_PREFIX)):
            summary, kind = event.get("summary"), event.get("event")
            at = str(event.get("updated_at", ""))
            if not isinstance(summary, str) or not summary.strip():
                continue
            if kind == TRANSCRIPT_EVENT:
                named = True
                speaker, _, words = summary.partition(": ")
                if not words or len(speaker) > MAX_SPEAKER_CHARS:
                    speaker, words = "participant", summary
                found.append((at, i, Line(speaker, words, at)))
            elif kind == CHAT_EVENT:
                speaker, _, words = summary.partition(": ")
                if words:
                    found.append((at, i, Line(f"{speaker[:MAX_SPEAKER_CHARS]} (chat)", words, at)))
        if session_id:
            turns = self._query(schema.session_pk(session_id), schema.TURN_PREFIX)
            for i, turn in enumerate(turns, MAX_ITEMS):
                text, at = turn.get("text"), str(turn.get("at", ""))
                if not isinstance(text, str) or not text.strip():
                    continue
                said_by = turn.get("speaker")
                name = said_by[:MAX_SPEAKER_CHARS] if isinstance(said_by, str) and said_by else None
                if turn.get("role") == "assistant":
                    found.append((at, i, Line("agent", text, at)))
                elif turn.get("via") == "chat":
                    found.append((at, i, Line(f"{name or 'participant'} (chat)", text, at)))
                elif not named:
                    found.append((at, i, Line(name or "participant", text, at)))
        for i, note in enumerate(self._query(schema.bot_pk(bot_id), minutes.NOTE_PREFIX)):
            text, at = note.get("text"), note.get("at", "")
            if isinstance(text, str) and text.strip():
                found.append((str(at), 2 * MAX_ITEMS + i, Line("note", text, str(at))))
        found.sort(key=lambda entry: (entry[0], entry[1]))
        return [line for _, _, line in found]

    def memory(self, memory_key: str, limit: int) -> list[minutes.MemoryEntry]:
        """The newest ``limit`` minutes filed under ``memory_key``, newest first."""
        query = minutes.memory_query(memory_key, limit)
        query["ExpressionAttributeValues"] = serialize(query["ExpressionAttributeValues"])
        answer = self._client.query(TableName=self._table, **query)
        return [cast("minutes.MemoryEntry", deserialize(i)) for i in answer.get("Items", [])]

    # Writes

    def put_session_bot(self, item: minutes.SessionBot) -> None:
        """Write a session's bot pointer (idempotent: same session, same bot)."""
        self._client.put_item(TableName=self._table, Item=serialize(item))

    def claim(
        self, *, bot_id: str, claim_id: str, trigger: str, now: datetime, lease_seconds: int
    ) -> bool:
        """Claim the bot's job; ``False`` if it is built, delivered, or held by a live lease."""
        request = minutes.claim_update(
            bot_id=bot_id, claim_id=claim_id, trigger=trigger, now=now, lease_seconds=lease_seconds
        )
        return self._conditional(request)

    def release(self, *, bot_id: str, claim_id: str) -> None:
        """Give a claim up after a failure, so the retry need not wait out the lease."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=serialize(minutes.minutes_key(bot_id)),
                UpdateExpression="SET #lease = :zero",
                ConditionExpression="#state = :building AND #claim = :claim",
                ExpressionAttributeNames={
                    "#lease": "lease_until",
                    "#state": "job_state",
                    "#claim": "claim_id",
                },
                ExpressionAttributeValues=serialize(
                    {":zero": 0, ":building": minutes.BUILDING, ":claim": claim_id}
                ),
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise

    def store_built(
        self,
        *,
        bot_id: str,
        claim_id: str,
        minutes_json: str,
        generated_by: str,
        built_at: datetime,
        memory_key: str | None,
    ) -> bool:
        """Store the minutes (and file them under the memory key), atomically, if still ours.

        Returns:
            ``False`` if the claim was taken over meanwhile (nothing written).
        """
        request = minutes.built_update(
            bot_id=bot_id,
            claim_id=claim_id,
            minutes_json=minutes_json,
            generated_by=generated_by,
            built_at=built_at,
            memory_key=memory_key,
        )
        writes: list[dict[str, Any]] = [{"Update": self._update_params(request)}]
        if memory_key is not None:
            entry = minutes.memory_entry(
                memory_key=memory_key, bot_id=bot_id, built_at=built_at, minutes_json=minutes_json
            )
            writes.append({"Put": {"TableName": self._table, "Item": serialize(entry)}})
        try:
            self._client.transact_write_items(TransactItems=writes)  # type: ignore[arg-type]
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True

    def mark_delivered(self, *, bot_id: str, at: datetime, status: int) -> None:
        """Record the endpoint's answer to the delivery."""
        try:
            self._update(minutes.delivered_update(bot_id=bot_id, at=at, status=status))
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise

    def refused(self, *, bot_id: str, at: datetime, status: int) -> None:
        """Record that the endpoint refused the minutes for good."""
        try:
            self._update(minutes.refused_update(bot_id=bot_id, at=at, status=status))
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise

    def claim_leave(self, *, bot_id: str, now: datetime, by: str) -> bool:
        """Claim a requested leave; ``False`` if none was requested or it is claimed."""
        return self._conditional(leaving.leave_claim_update(bot_id=bot_id, now=now, by=by))

    def release_leave(self, *, bot_id: str) -> None:
        """Give a leave claim back (its ``leave_call`` failed)."""
        self._conditional(leaving.leave_release_update(bot_id=bot_id))

    def leave_done(self, *, bot_id: str, chat_messages: int) -> None:
        """Record how many chat messages preceded the leave."""
        self._conditional(leaving.leave_done_update(bot_id=bot_id, chat_messages=chat_messages))

    # Private

    def _conditional(self, request: minutes.UpdateParams) -> bool:
        try:
            self._update(request)
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True

    def _update_params(self, request: minutes.UpdateParams) -> dict[str, Any]:
        params = {
            "TableName": self._table,
            "Key": serialize(request["Key"]),
            "UpdateExpression": request["UpdateExpression"],
            "ConditionExpression": request["ConditionExpression"],
            "ExpressionAttributeNames": request["ExpressionAttributeNames"],
        }
        if request["ExpressionAttributeValues"]:  # DynamoDB refuses an empty map
            params["ExpressionAttributeValues"] = serialize(request["ExpressionAttributeValues"])
        return params

    def _update(self, request: minutes.UpdateParams) -> None:
        self._client.update_item(**self._update_params(request))

    def _query(self, pk: str, prefix: str) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
            "ExpressionAttributeNames": {"#pk": schema.PARTITION_KEY, "#sk": schema.SORT_KEY},
            "ExpressionAttributeValues": serialize({":pk": pk, ":prefix": prefix}),
            "ConsistentRead": True,
        }
        count = 0
        while count < MAX_ITEMS:
            answer = self._client.query(**kwargs)
            for item in answer.get("Items", []):
                count += 1
                yield deserialize(item)
            if "LastEvaluatedKey" not in answer:
                return
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
