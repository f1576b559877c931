"""A requested leave: the minutes in the chat first, then leave_call; bounded; made once.

Over real sockets: moto's server is DynamoDB (with its stream) and SQS, the fake Recall
API answers the minutes function's chat and leave calls, and the leave is requested
by the same function ``voicebot bot leave`` and the control API use
(``cli.meeting_exit.leave_meeting``). ``bot.done`` arriving later goes through the real
webhook receiver over HTTP.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import boto3
import pytest

from cli.meeting_exit import Exit, leave_meeting
from cli.recall_api import RecallClient, RetryPolicy
from functions.minutes.handler import handle_queue
from functions.minutes.leave import MeetingExit
from functions.minutes.recall_bot import RecallBots
from functions.minutes.store import serialize
from functions.minutes.summarizer import Line, Minutes, SimulatedSummarizer
from functions.minutes.trigger import BotJob, LeaveDeadline, message_body
from functions.webhooks.app import create_app
from functions.webhooks.settings import Settings
from storage import leaving, minutes
from tests.cli.fake_recall import Answer, FakeRecall
from tests.minutes.conftest import Pipeline, seed_meeting
from tests.minutes.test_pipeline import bot_done
from tests.webhooks.conftest import Receiver, Table, new_secret, serve_in_thread, store_at

RECALL_KEY = "test-recall-key"


@pytest.fixture
def recall(fake_recall: FakeRecall) -> FakeRecall:
    return fake_recall


@pytest.fixture
def leaving_pipeline(pipeline: Pipeline, recall: FakeRecall) -> Pipeline:
    """The pipeline with chat enabled for the stack and a Recall key; 2 s leave bound."""
    bots = RecallBots(RECALL_KEY, base_override=f"{recall.url}/{{region}}", sleep=lambda _: None)
    exit_ = MeetingExit(store=pipeline.store, recall=bots, chat_enabled=True)
    pipeline.runner = replace(pipeline.runner, meeting_exit=exit_, leave_bound_seconds=2.0)
    return pipeline


@pytest.fixture
def receiver(dynamodb_endpoint: str, pipeline: Pipeline) -> Iterator[Receiver]:
    settings = Settings(table_name=pipeline.table, webhook_secrets=(new_secret(),))
    app = create_app(settings, store=store_at(dynamodb_endpoint, pipeline.table))
    with serve_in_thread(app) as url:
        yield Receiver(url, Table(dynamodb_endpoint, pipeline.table), settings.webhook_secrets)


def meeting(
    pipeline: Pipeline, *, to_chat: bool = True, url: str = "https://meet.google.com/abc-defg-hij"
) -> tuple[str, str]:
    """A recorded bot in a meeting where things were said; created with --minutes-to-chat."""
    bot_id, session_id = str(uuid.uuid4()), str(uuid.uuid4())
    seed_meeting(pipeline.store, bot_id=bot_id, session_id=session_id, memory_key="team-l")
    pipeline.store.put_session_bot(
        minutes.session_bot_item(session_id, bot_id, "team-l", minutes_to_chat=to_chat)
    )
    if url != "https://meet.google.com/abc-defg-hij":
        pipeline.dynamodb.update_item(
            TableName=pipeline.table,
            Key=serialize({"pk": f"BOT#{bot_id}", "sk": "STATE"}),
            UpdateExpression="SET meeting_url = :u",
            ExpressionAttributeValues=serialize({":u": url}),
        )
    return bot_id, session_id


def request_leave(pipeline: Pipeline, recall: FakeRecall, bot_id: str, reason: str = "cli") -> Exit:
    """What `voicebot bot leave` and the control API's leave do."""
    table = boto3.resource(
        "dynamodb", endpoint_url=pipeline.endpoint, region_name="us-east-1"
    ).Table(pipeline.table)
    state = table.get_item(Key={"pk": f"BOT#{bot_id}", "sk": "STATE"}).get("Item")
    with RecallClient(
        api_key=RECALL_KEY,
        region="us-west-2",
        base=f"{recall.url}/us-west-2",
        policy=RetryPolicy(max_attempts=1),
    ) as client:
        return leave_meeting(client, bot_id, table=table, state=dict(state or {}), reason=reason)


def actions(recall: FakeRecall, bot_id: str) -> list[str]:
    """The bot's Recall calls, in order: "chat" or "leave"."""
    found = []
    for request in recall.requests:
        if f"/api/v1/bot/{bot_id}/send_chat_message/" in request.path:
            found.append("chat")
        elif f"/api/v1/bot/{bot_id}/leave_call/" in request.path:
            found.append("leave")
    return found


def chats(recall: FakeRecall, bot_id: str) -> list[str]:
    return [
        str(r.body["message"])
        for r in recall.requests
        if f"/api/v1/bot/{bot_id}/send_chat_message/" in r.path
    ]


def leave_item(pipeline: Pipeline, bot_id: str) -> dict[str, Any] | None:
    return pipeline.store.get(leaving.leave_key(bot_id))


def test_minutes_are_posted_then_the_bot_leaves_and_bot_done_adds_nothing(
    leaving_pipeline: Pipeline, recall: FakeRecall, receiver: Receiver
) -> None:
    """Leave requested → minutes built once, posted in ≤ 500-char messages, then leave_call;
    bot.done over HTTP afterwards builds nothing again and does not leave again."""
    pipeline = leaving_pipeline
    bot_id, session_id = meeting(pipeline)

    assert request_leave(pipeline, recall, bot_id) is Exit.AFTER_MINUTES
    assert recall.requests == []  # the requester did not call Recall itself
    pipeline.pump_stream()
    kinds = sorted(body.split('"kind":"')[1].split('"')[0] for body, _ in pipeline.sent)
    assert kinds == ["bot", "leave_deadline"]
    assert pipeline.pump_queue() == []

    calls = actions(recall, bot_id)
    assert calls[-1] == "leave"
    assert calls.count("leave") == 1
    assert calls[:-1]
    assert set(calls[:-1]) == {"chat"}
    posted = chats(recall, bot_id)
    assert all(len(m) <= 500 for m in posted)
    assert "Dana: Dana will update the pricing page" in "\n".join(posted)
    assert all(r.headers["authorization"] == RECALL_KEY for r in recall.requests)
    job = pipeline.job(bot_id)
    assert job is not None
    assert job["trigger"] == "leave_requested"
    assert job["attempts"] == 1
    left = leave_item(pipeline, bot_id)
    assert left is not None
    assert left["leaving_by"] in {"job", "deadline"}
    assert left["chat_messages"] == len(posted)

    # The deadline message waits in the queue (delayed); when it comes it finds the leave
    # claimed. Recall now says the bot is done; that must not make the minutes or leave again.
    bot_done(receiver, bot_id, session_id, "2026-05-28T21:00:00.000000Z")
    pipeline.pump_stream()
    assert pipeline.pump_queue() == []
    again = pipeline.job(bot_id)
    assert again is not None
    assert again["attempts"] == 1
    assert again["built_at"] == job["built_at"]
    assert actions(recall, bot_id).count("leave") == 1
    assert len(pipeline.memory("team-l")) == 1

    # A second leave request is the same request: nothing new is queued or called.
    assert request_leave(pipeline, recall, bot_id) is Exit.AFTER_MINUTES
    sent = len(pipeline.sent)
    pipeline.pump_stream()
    assert len(pipeline.sent) == sent


class Failing:
    """A summarizer whose model is down."""

    name = "failing"

    def summarize(self, lines: Sequence[Line]) -> Minutes:
        raise RuntimeError("model unavailable")


class Slow:
    """A summarizer that answers after the leave bound (released by the test)."""

    name = "slow"

    def __init__(self) -> None:
        self.release = threading.Event()

    def summarize(self, lines: Sequence[Line]) -> Minutes:
        self.release.wait(10)
        return SimulatedSummarizer().summarize(lines)


def test_a_failing_summarizer_still_leaves_and_the_minutes_come_later(
    leaving_pipeline: Pipeline, recall: FakeRecall
) -> None:
    """The model fails: no chat, the bot leaves anyway; the retried job builds the minutes
    (once) without leaving a second time."""
    pipeline = leaving_pipeline
    bot_id, _ = meeting(pipeline)
    request_leave(pipeline, recall, bot_id)
    pipeline.pump_stream()
    failing = replace(pipeline.runner, summarizer=Failing())
    retried = pipeline.pump_queue(failing)
    assert len(retried) == 1  # the job is retried by the queue
    assert actions(recall, bot_id) == ["leave"]
    job = pipeline.job(bot_id)
    assert job is not None
    assert "minutes" not in job

    assert pipeline.pump_queue() == []  # the retry, with the model back
    job = pipeline.job(bot_id)
    assert job is not None
    assert job["job_state"] == "delivered"
    assert actions(recall, bot_id) == ["leave"]


def test_a_slow_summarizer_leaves_after_the_bound(
    leaving_pipeline: Pipeline, recall: FakeRecall
) -> None:
    """The model hangs past the bound: the bot leaves without chat; the late build is kept."""
    pipeline = leaving_pipeline
    bot_id, _ = meeting(pipeline)
    request_leave(pipeline, recall, bot_id)
    pipeline.pump_stream()
    slow = Slow()
    runner = replace(pipeline.runner, summarizer=slow, leave_bound_seconds=0.5)
    body = message_body(BotJob(bot_id=bot_id, trigger="leave_requested"))
    runtime = pipeline.runtime(runner)
    started = time.monotonic()
    failed = handle_queue([{"messageId": "m1", "body": body}], runtime)
    assert time.monotonic() - started < 5  # bounded: did not wait for the model
    assert failed == ["m1"]  # retried later, when the build has finished
    assert actions(recall, bot_id) == ["leave"]
    slow.release.set()
    deadline = time.monotonic() + 10
    while (pipeline.job(bot_id) or {}).get("job_state") != "built":
        assert time.monotonic() < deadline, "the late build never stored its minutes"
        time.sleep(0.05)
    # The retry delivers what the late build stored; no second build, no second leave.
    assert handle_queue([{"messageId": "m2", "body": body}], pipeline.runtime()) == []
    job = pipeline.job(bot_id)
    assert job is not None
    assert job["job_state"] == "delivered"
    assert job["attempts"] == 1
    assert actions(recall, bot_id) == ["leave"]


def test_chat_failure_still_leaves(leaving_pipeline: Pipeline, recall: FakeRecall) -> None:
    """Recall refuses the chat message (Teams without chat access): the bot leaves anyway."""
    pipeline = leaving_pipeline
    bot_id, _ = meeting(pipeline)
    request_leave(pipeline, recall, bot_id)
    pipeline.pump_stream()
    recall.script(Answer(400, {"detail": "chat not allowed"}))
    assert pipeline.pump_queue() == []
    assert actions(recall, bot_id) == ["chat", "leave"]
    left = leave_item(pipeline, bot_id)
    assert left is not None
    assert left["chat_messages"] == 0


def test_failed_leave_call_is_retried_once_more(
    leaving_pipeline: Pipeline, recall: FakeRecall
) -> None:
    """leave_call refused: the claim is given back and the retry leaves; chat is not resent
    (the minutes were posted once, before the first attempt)."""
    pipeline = leaving_pipeline
    bot_id, _ = meeting(pipeline, url="https://us02web.zoom.us/j/123")
    request_leave(pipeline, recall, bot_id)
    pipeline.pump_stream()
    recall.script(Answer(200, {}), Answer(404, {"detail": "no"}))  # chat ok, leave refused
    retried = pipeline.pump_queue()
    assert len(retried) == 1
    assert actions(recall, bot_id) == ["chat", "leave"]
    assert pipeline.pump_queue() == []
    calls = actions(recall, bot_id)
    assert calls[-1] == "leave"
    assert calls.count("leave") == 2
    assert len(chats(recall, bot_id)[0]) <= 4096


def test_webex_has_no_chat_and_the_deadline_leaves_a_forgotten_bot(
    leaving_pipeline: Pipeline, recall: FakeRecall
) -> None:
    """A Webex bot whose job never ran: the deadline message makes it leave, no chat."""
    pipeline = leaving_pipeline
    bot_id, _ = meeting(pipeline, url="https://acme.webex.com/meet/x")
    request_leave(pipeline, recall, bot_id)
    body = message_body(LeaveDeadline(bot_id=bot_id))
    assert handle_queue([{"messageId": "d", "body": body}], pipeline.runtime()) == []
    assert actions(recall, bot_id) == ["leave"]
    assert (leave_item(pipeline, bot_id) or {})["leaving_by"] == "deadline"


def test_a_bot_without_chat_minutes_leaves_at_once(
    leaving_pipeline: Pipeline, recall: FakeRecall
) -> None:
    """No --minutes-to-chat: leave_call straight away, no request item, nothing queued."""
    pipeline = leaving_pipeline
    bot_id, _ = meeting(pipeline, to_chat=False)
    assert request_leave(pipeline, recall, bot_id) is Exit.LEFT
    assert actions(recall, bot_id) == ["leave"]
    assert leave_item(pipeline, bot_id) is None


def test_stack_without_chat_still_leaves_after_minutes(
    leaving_pipeline: Pipeline, recall: FakeRecall
) -> None:
    """MINUTES_TO_CHAT off for the stack: the bot's request is honoured as a plain leave."""
    pipeline = leaving_pipeline
    assert pipeline.runner.meeting_exit is not None
    pipeline.runner = replace(
        pipeline.runner, meeting_exit=replace(pipeline.runner.meeting_exit, chat_enabled=False)
    )
    bot_id, _ = meeting(pipeline)
    request_leave(pipeline, recall, bot_id)
    pipeline.pump_stream()
    assert pipeline.pump_queue() == []
    assert actions(recall, bot_id) == ["leave"]


def test_a_leave_request_item_is_written_once() -> None:
    """The request's shape: conditional on none existing; a claim only once."""
    from datetime import UTC, datetime

    put = leaving.leave_request_put(bot_id="b1", reason="tool", now=datetime.now(UTC))
    assert put["ConditionExpression"] == "attribute_not_exists(#pk)"
    assert put["Item"]["sk"] == "LEAVE"
    with pytest.raises(ValueError, match="reason"):
        leaving.leave_request_put(bot_id="b1", reason="whatever", now=datetime.now(UTC))
    claim = leaving.leave_claim_update(bot_id="b1", now=datetime.now(UTC), by="job")
    assert "attribute_not_exists(#at)" in claim["ConditionExpression"]


def test_a_stack_without_a_recall_key_fails_loudly_then_leaves_on_redrive(
    leaving_pipeline: Pipeline, recall: FakeRecall
) -> None:
    """The Recall key secret is still a placeholder: the minutes are still built and
    delivered, the message fails (retried, then dead-lettered: the alarm), nothing is
    claimed; with the key in place, the retry makes the bot leave."""
    pipeline = leaving_pipeline
    with_key = pipeline.runner
    assert with_key.meeting_exit is not None
    no_key = replace(with_key, meeting_exit=replace(with_key.meeting_exit, recall=None))
    bot_id, _ = meeting(pipeline)
    request_leave(pipeline, recall, bot_id)
    pipeline.pump_stream()
    assert len(pipeline.pump_queue(no_key)) == 1
    job = pipeline.job(bot_id)
    assert job is not None
    assert job["job_state"] == "delivered"
    assert "leaving_at" not in (leave_item(pipeline, bot_id) or {})
    assert recall.requests == []
    assert pipeline.pump_queue(with_key) == []
    assert actions(recall, bot_id)[-1] == "leave"
