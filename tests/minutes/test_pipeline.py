"""A finished meeting makes minutes exactly once: webhook over HTTP → stream → queue → job."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from functions.minutes.job import MinutesJobRunner, Outcome
from functions.minutes.summarizer import Minutes
from functions.minutes.trigger import BotJob, SessionCheck
from functions.webhooks.app import create_app
from functions.webhooks.settings import Settings
from storage import items
from tests.minutes.conftest import Endpoint, Pipeline, json_of, seed_meeting
from tests.webhooks.conftest import Receiver, Table, new_secret, payload, serve_in_thread, store_at


@pytest.fixture
def receiver(dynamodb_endpoint: str, pipeline: Pipeline) -> Iterator[Receiver]:
    """The real webhook receiver, writing into the pipeline's streamed table."""
    settings = Settings(table_name=pipeline.table, webhook_secrets=(new_secret(),))
    app = create_app(settings, store=store_at(dynamodb_endpoint, pipeline.table))
    with serve_in_thread(app) as url:
        yield Receiver(url, Table(dynamodb_endpoint, pipeline.table), settings.webhook_secrets)


def bot_done(receiver: Receiver, bot_id: str, session_id: str, at: str, **sign: str) -> None:
    event = payload("bot.done", bot_id=bot_id, session_id=session_id, updated_at=at)
    answer = receiver.deliver(event, **sign)
    assert answer.status_code == 200, answer.text


def end_connection(pipeline: Pipeline, session_id: str, ended_at: datetime) -> None:
    """What the relay writes when the page's connection closes."""
    from functions.minutes.store import serialize

    started = "2026-05-28T20:00:00.000000Z"
    update = items.connection_update(
        {
            "session_id": session_id,
            "connection_id": "c1",
            "started_at": started,
            "model": "gpt-realtime",
            "expires_at": 2_000_000_000,
            "ended_at": ended_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "close_code": 1000,
        }
    )
    request = update.request()
    pipeline.dynamodb.update_item(
        TableName=pipeline.table,
        Key=serialize(request["Key"]),
        UpdateExpression=request["UpdateExpression"],
        ExpressionAttributeNames=request["ExpressionAttributeNames"],
        ExpressionAttributeValues=serialize(request["ExpressionAttributeValues"]),
    )


def ids() -> tuple[str, str]:
    return str(uuid.uuid4()), str(uuid.uuid4())


def test_bot_done_produces_minutes_delivered_once(
    pipeline: Pipeline, receiver: Receiver, endpoint: Endpoint
) -> None:
    """bot.done over HTTP: minutes built from turns and notes, stored, delivered signed."""
    bot_id, session_id = ids()
    seed_meeting(pipeline.store, bot_id=bot_id, session_id=session_id, memory_key="team-a")
    bot_done(receiver, bot_id, session_id, "2026-05-28T21:00:00.000000Z")

    assert pipeline.pump_stream() > 0
    assert pipeline.pump_queue() == []

    job = pipeline.job(bot_id)
    assert job is not None
    assert job["job_state"] == "delivered"
    assert job["trigger"] == "bot.done"
    built = Minutes.model_validate_json(job["minutes"])
    assert "ship the beta on Friday" in " ".join(built.decisions)
    owners = {a.owner for a in built.action_items}
    assert {"agent", "Dana"} <= owners
    assert any("migration" in q for q in built.open_questions)
    assert "1 notes taken" in built.summary
    assert endpoint.accepted_ids() == [f"minutes_{bot_id}"]
    delivered = endpoint.received[0]["payload"]
    assert delivered["type"] == "minutes.ready"
    assert delivered["data"]["minutes"] == built.model_dump()
    assert delivered["data"]["memory_key"] == "team-a"
    [entry] = pipeline.memory("team-a")
    assert json_of(entry) == built.model_dump()


def test_duplicate_and_out_of_order_signals_build_once(
    pipeline: Pipeline, receiver: Receiver, endpoint: Endpoint
) -> None:
    """bot.done twice, a newer one, an older status, the session's end: one build, one delivery."""
    bot_id, session_id = ids()
    seed_meeting(pipeline.store, bot_id=bot_id, session_id=session_id, memory_key="team-b")
    bot_done(receiver, bot_id, session_id, "2026-05-28T21:00:00.000000Z", webhook_id="msg_same")
    bot_done(receiver, bot_id, session_id, "2026-05-28T21:00:00.000000Z", webhook_id="msg_same")
    late = payload(
        "bot.call_ended",
        bot_id=bot_id,
        session_id=session_id,
        updated_at="2026-05-28T20:59:00.000000Z",
    )
    assert receiver.deliver(late).status_code == 200
    bot_done(receiver, bot_id, session_id, "2026-05-28T21:00:05.000000Z")
    end_connection(pipeline, session_id, datetime.now(UTC) - timedelta(minutes=5))
    pipeline.pump_stream()
    # The job is asked for by bot.done and by the session's end, and both ran.
    kinds = sorted(body.split('"kind":"')[1].split('"')[0] for body, _ in pipeline.sent)
    assert kinds == ["bot", "session"]
    # Deliver the same requests again, as a queue may.
    for body, delay in list(pipeline.sent):
        pipeline.runtime().send(body, delay)
    assert pipeline.pump_queue() == []

    job = pipeline.job(bot_id)
    assert job is not None
    assert job["job_state"] == "delivered"
    assert job["attempts"] == 1
    assert len(pipeline.memory("team-b")) == 1
    assert endpoint.accepted_ids() == [f"minutes_{bot_id}"]


def test_session_end_first_then_bot_done(
    pipeline: Pipeline, receiver: Receiver, endpoint: Endpoint
) -> None:
    """The last connection's end comes first: it builds the minutes; bot.done later adds nothing."""
    bot_id, session_id = ids()
    seed_meeting(pipeline.store, bot_id=bot_id, session_id=session_id)
    # bot create recorded the session on STATE (bot.done would add it otherwise).
    receiver.deliver(
        payload(
            "bot.in_call_recording",
            bot_id=bot_id,
            session_id=session_id,
            updated_at="2026-05-28T20:00:00.000000Z",
        )
    )
    end_connection(pipeline, session_id, datetime.now(UTC) - timedelta(minutes=5))
    pipeline.pump_stream()
    assert pipeline.pump_queue() == []
    job = pipeline.job(bot_id)
    assert job is not None
    assert job["trigger"] == "session_ended"
    assert job["job_state"] == "delivered"
    assert "ship the beta" in job["minutes"]

    bot_done(receiver, bot_id, session_id, "2026-05-28T21:00:00.000000Z")
    pipeline.pump_stream()
    assert pipeline.pump_queue() == []
    assert pipeline.job(bot_id)["attempts"] == 1  # type: ignore[index]
    assert endpoint.accepted_ids() == [f"minutes_{bot_id}"]


def test_session_with_open_connection_waits(pipeline: Pipeline) -> None:
    """A connection that ended while another is open (or within the grace period) builds nothing."""
    bot_id, session_id = ids()
    seed_meeting(pipeline.store, bot_id=bot_id, session_id=session_id)
    graceful = MinutesJobRunner(
        store=pipeline.store, summarizer=pipeline.runner.summarizer, grace_seconds=120
    )
    end_connection(pipeline, session_id, datetime.now(UTC))
    assert graceful.run(SessionCheck(session_id=session_id)) is Outcome.NOT_ENDED
    assert pipeline.job(bot_id) is None
    assert graceful.run(SessionCheck(session_id=str(uuid.uuid4()))) is Outcome.NO_BOT


class Crash(BaseException):
    """The process dies mid-job (a BaseException: nothing in the job may catch it)."""


class CrashingSummarizer:
    name = "crashing"

    def summarize(self, lines: object) -> Minutes:
        raise Crash


class FailingSummarizer:
    name = "failing"

    def summarize(self, lines: object) -> Minutes:
        raise RuntimeError("the model is down")


def test_crash_after_claim_is_recovered_once_the_lease_runs_out(
    pipeline: Pipeline, endpoint: Endpoint
) -> None:
    """A worker dies holding the claim: retries wait for its lease, then one builds the minutes."""
    bot_id, session_id = ids()
    seed_meeting(pipeline.store, bot_id=bot_id, session_id=session_id)
    now = datetime.now(UTC)
    crashing = MinutesJobRunner(
        store=pipeline.store, summarizer=CrashingSummarizer(), lease_seconds=60, clock=lambda: now
    )
    with pytest.raises(Crash):
        crashing.run(BotJob(bot_id=bot_id, trigger="bot.done"))
    assert pipeline.job(bot_id)["job_state"] == "building"  # type: ignore[index]

    soon = MinutesJobRunner(
        store=pipeline.store,
        summarizer=pipeline.runner.summarizer,
        delivery=pipeline.runner.delivery,
        clock=lambda: now + timedelta(seconds=30),
    )
    assert soon.run(BotJob(bot_id=bot_id, trigger="bot.done")) is Outcome.IN_PROGRESS
    later = MinutesJobRunner(
        store=pipeline.store,
        summarizer=pipeline.runner.summarizer,
        delivery=pipeline.runner.delivery,
        clock=lambda: now + timedelta(seconds=61),
    )
    assert later.run(BotJob(bot_id=bot_id, trigger="bot.done")) is Outcome.BUILT
    assert later.run(BotJob(bot_id=bot_id, trigger="bot.done")) is Outcome.ALREADY_DONE
    job = pipeline.job(bot_id)
    assert job is not None
    assert job["attempts"] == 2
    assert job["job_state"] == "delivered"
    assert endpoint.accepted_ids() == [f"minutes_{bot_id}"]


def test_a_failed_build_is_retried_by_the_queue(pipeline: Pipeline, receiver: Receiver) -> None:
    """The summarizer fails: the message is retried (its claim released) and the next run builds."""
    bot_id, session_id = ids()
    seed_meeting(pipeline.store, bot_id=bot_id, session_id=session_id)
    bot_done(receiver, bot_id, session_id, "2026-05-28T21:00:00.000000Z")
    pipeline.pump_stream()
    failing = MinutesJobRunner(store=pipeline.store, summarizer=FailingSummarizer())
    assert len(pipeline.pump_queue(failing)) == 1
    assert pipeline.job(bot_id)["lease_until"] == 0  # type: ignore[index]
    assert pipeline.pump_queue() == []
    assert pipeline.job(bot_id)["job_state"] == "delivered"  # type: ignore[index]


def test_delivery_retries_with_backoff_then_succeeds(
    pipeline: Pipeline, endpoint: Endpoint
) -> None:
    """The endpoint answers 503 then 429: the same signed message id is retried until taken."""
    bot_id, session_id = ids()
    seed_meeting(pipeline.store, bot_id=bot_id, session_id=session_id)
    endpoint.script[:] = [503, 429]
    assert pipeline.runner.run(BotJob(bot_id=bot_id, trigger="bot.done")) is Outcome.BUILT
    assert [r["status"] for r in endpoint.received] == [503, 429, 204]
    assert {r["id"] for r in endpoint.received} == {f"minutes_{bot_id}"}
    assert endpoint.rejected == 0


def test_endpoint_down_is_retried_after_the_minutes_are_stored(
    pipeline: Pipeline, endpoint: Endpoint
) -> None:
    """Every attempt fails: the job raises (the queue retries); the retry delivers, no rebuild."""
    bot_id, session_id = ids()
    seed_meeting(pipeline.store, bot_id=bot_id, session_id=session_id)
    endpoint.script[:] = [500, 502, 503, 504]
    from functions.minutes.delivery import DeliveryFailedError

    with pytest.raises(DeliveryFailedError) as failure:
        pipeline.runner.run(BotJob(bot_id=bot_id, trigger="bot.done"))
    assert "token=" not in str(failure.value)  # the endpoint's query never reaches a log
    assert pipeline.job(bot_id)["job_state"] == "built"  # type: ignore[index]
    assert pipeline.runner.run(BotJob(bot_id=bot_id, trigger="bot.done")) is Outcome.DELIVERED
    assert pipeline.job(bot_id)["attempts"] == 1  # type: ignore[index]
    assert endpoint.accepted_ids() == [f"minutes_{bot_id}"]


def test_endpoint_refusal_is_recorded_not_retried(pipeline: Pipeline, endpoint: Endpoint) -> None:
    """A 400 from the endpoint is final: recorded on the job, not sent again."""
    bot_id, session_id = ids()
    seed_meeting(pipeline.store, bot_id=bot_id, session_id=session_id)
    endpoint.script[:] = [400]
    assert pipeline.runner.run(BotJob(bot_id=bot_id, trigger="bot.done")) is Outcome.REFUSED
    assert pipeline.runner.run(BotJob(bot_id=bot_id, trigger="bot.done")) is Outcome.ALREADY_DONE
    job = pipeline.job(bot_id)
    assert job is not None
    assert job["delivery_status"] == 400
    assert len(endpoint.received) == 1


def test_stale_worker_cannot_overwrite_a_newer_claim(pipeline: Pipeline) -> None:
    """A worker whose lease was taken over stores nothing when it finally finishes."""
    bot_id, session_id = ids()
    seed_meeting(pipeline.store, bot_id=bot_id, session_id=session_id)
    now = datetime.now(UTC)
    store = pipeline.store
    assert store.claim(bot_id=bot_id, claim_id="old", trigger="bot.done", now=now, lease_seconds=30)
    later = now + timedelta(seconds=31)
    assert store.claim(
        bot_id=bot_id, claim_id="new", trigger="bot.done", now=later, lease_seconds=30
    )
    assert not store.store_built(
        bot_id=bot_id,
        claim_id="old",
        minutes_json="{}",
        generated_by="x",
        built_at=later,
        memory_key="k",
    )
    assert store.memory("k", 10) == []
    assert store.job(bot_id)["claim_id"] == "new"  # type: ignore[index]


def test_recall_transcripts_and_chat_name_the_speakers(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    """With Recall's transcripts over HTTP, lines carry names; the relay's user turns step back."""
    bot_id, session_id = ids()
    seed_meeting(pipeline.store, bot_id=bot_id, session_id=session_id)
    said = payload("transcript.data", bot_id=bot_id)
    said["data"]["data"]["words"] = [
        {"text": word, "start_timestamp": {"relative": 1.0, "absolute": "2026-05-28T20:26:40Z"}}
        for word in ["Kim", "will", "draft", "the", "contract."]
    ]
    assert receiver.deliver(said).status_code == 200
    chat = payload("participant_events.chat_message", bot_id=bot_id)
    chat["data"]["data"]["data"]["text"] = "Budget doc is shared?"
    assert receiver.deliver(chat).status_code == 200

    lines = pipeline.store.lines(bot_id, session_id)
    speakers = [line.speaker for line in lines]
    assert "Ann Example" in speakers
    assert "Bo Sample (chat)" in speakers
    assert "participant" not in speakers  # Recall's named transcript stands for the room
    assert "agent" in speakers  # what the agent said still comes from the relay
    built = pipeline.runner.summarizer.summarize(lines)
    assert ("Kim", "Kim will draft the contract.") in [
        (a.owner, a.task) for a in built.action_items
    ]
    assert "Budget doc is shared?" in built.open_questions


def test_the_relays_speaker_names_and_chat_turns_reach_the_minutes(pipeline: Pipeline) -> None:
    """Without Recall's transcripts, the relay's attributed turns name the speakers."""
    from functions.minutes.store import serialize
    from storage import items

    bot_id, session_id = ids()
    seed_meeting(pipeline.store, bot_id=bot_id, session_id=session_id)
    for seq, (speaker, via, text) in enumerate(
        [("Grace", None, "Ken owns the migration."), ("Ada", "chat", "Agenda is posted.")], 10
    ):
        item = items.turn_item(
            session_id=session_id,
            at_ms=1_780_000_010_000 + seq,
            seq=seq,
            role="user",
            text=text,
            expires_at=2_000_000_000,
            speaker=speaker,
            via=via,
        )
        pipeline.store._client.put_item(TableName=pipeline.store._table, Item=serialize(item))
    speakers = [(line.speaker, line.text) for line in pipeline.store.lines(bot_id, session_id)]
    assert ("Grace", "Ken owns the migration.") in speakers
    assert ("Ada (chat)", "Agenda is posted.") in speakers
    assert ("participant", "Dana will update the pricing page. Who owns the migration?") in speakers
