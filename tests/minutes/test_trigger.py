"""Which table changes start a minutes job, and which queue messages are job requests."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.minutes.handler import Runtime, handle_queue, handle_stream
from functions.minutes.settings import ConfigError, Settings
from functions.minutes.trigger import (
    BadMessageError,
    BotJob,
    SessionCheck,
    from_stream_record,
    message_body,
    parse_message,
)
from storage.minutes import stream_filter_patterns


def image(**values: str) -> dict[str, Any]:
    return {k: {"S": v} for k, v in values.items()}


def record(
    new: dict[str, Any], old: dict[str, Any] | None = None, name: str = "MODIFY"
) -> dict[str, Any]:
    change: dict[str, Any] = {"NewImage": new}
    if old is not None:
        change["OldImage"] = old
    return {"eventSource": "aws:dynamodb", "eventName": name, "dynamodb": change}


DONE = image(pk="BOT#b1", sk="STATE", bot_id="b1", status="done")
ENDED = image(pk="SESSION#s1", sk="CONN#2026#c1", session_id="s1", ended_at="2026-01-01T00:00Z")


def test_bot_done_asks_for_the_bots_job() -> None:
    """A bot's state becoming done (or fatal) starts its job at once."""
    assert from_stream_record(record(DONE, image(status="in_call_recording"))) == BotJob(
        bot_id="b1", trigger="bot.done"
    )
    fatal = image(pk="BOT#b1", sk="STATE", bot_id="b1", status="fatal")
    assert from_stream_record(record(fatal, name="INSERT")) == BotJob(
        bot_id="b1", trigger="bot.fatal"
    )


def test_connection_end_asks_for_a_session_check() -> None:
    """A connection gaining ended_at asks whether the session is over."""
    assert from_stream_record(record(ENDED, image(sk="CONN#2026#c1"))) == SessionCheck(
        session_id="s1"
    )


@pytest.mark.parametrize(
    "change",
    [
        record(DONE, DONE),  # a later write to a done bot (e.g. a duplicate) is not a new end
        record(ENDED, ENDED),  # a usage rewrite after the end
        record(DONE, name="REMOVE"),
        record(image(pk="BOT#b1", sk="STATE", status="in_call_recording")),
        record(image(pk="SESSION#s1", sk="TURN#1#1", text="done")),
        record(image(pk="BOT#b1", sk="EVT#x", status="done")),
        record(image(pk="BOT#\u202eevil", sk="STATE", status="done")),  # not a valid id
        record({"pk": {"N": "1"}, "sk": {"S": "STATE"}, "status": {"S": "done"}}),
        {"eventName": "MODIFY", "dynamodb": "nonsense"},
        {"eventName": "MODIFY"},
        {},
    ],
    ids=[
        "already-done",
        "already-ended",
        "remove",
        "not-final",
        "turn",
        "history",
        "bidi-id",
        "mistyped-key",
        "no-images",
        "no-change",
        "empty",
    ],
)
def test_other_changes_start_nothing(change: dict[str, Any]) -> None:
    """Turns, history, repeats and malformed records ask for nothing."""
    assert from_stream_record(change) is None


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.text() | st.integers(),
        lambda c: st.dictionaries(st.text(), c) | st.lists(c),
        max_leaves=30,
    )
)
def test_any_record_is_handled_without_raising(garbage: Any) -> None:
    """Any shape of record is either a request or nothing."""
    if isinstance(garbage, dict):
        from_stream_record(garbage)
        from_stream_record({"eventName": "MODIFY", "dynamodb": {"NewImage": garbage}})


@pytest.mark.parametrize(
    "body",
    [
        "",
        "null",
        "[]",
        '{"kind":"bot"}',
        '{"kind":"bot","bot_id":"b","trigger":"whenever"}',
        '{"kind":"bot","bot_id":"","trigger":"bot.done"}',
        '{"kind":"bot","bot_id":"a b","trigger":"bot.done"}',
        '{"kind":"bot","bot_id":"b","trigger":"bot.done","extra":1}',
        '{"kind":"session","session_id":' + json.dumps("x" * 300) + "}",
        '{"kind":"drop_table"}',
        "{" * 10_000,
    ],
    ids=[
        "empty",
        "null",
        "list",
        "no-id",
        "bad-trigger",
        "empty-id",
        "space-in-id",
        "extra",
        "long-id",
        "unknown-kind",
        "huge",
    ],
)
def test_queue_messages_that_are_not_requests_are_refused(body: str) -> None:
    """A message that is not exactly a job request is refused, never guessed at."""
    with pytest.raises(BadMessageError):
        parse_message(body)


def test_requests_round_trip_through_the_queue() -> None:
    """What the stream handler sends is what the job handler reads."""
    for request in (BotJob(bot_id="b", trigger="session_ended"), SessionCheck(session_id="s")):
        assert parse_message(message_body(request)) == request


def test_filter_patterns_name_the_same_signals() -> None:
    """The event-source filters pass final states and connection ends, by the same names."""
    patterns = [json.loads(p) for p in stream_filter_patterns()]
    assert patterns[0]["dynamodb"]["NewImage"]["status"] == {"S": ["done", "fatal"]}
    assert patterns[1]["dynamodb"]["NewImage"]["sk"] == {"S": [{"prefix": "CONN#"}]}


class Recording:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, int]] = []
        self.fail = fail

    def send(self, body: str, delay: int) -> None:
        if self.fail:
            raise RuntimeError("SQS is down")
        self.sent.append((body, delay))


def test_stream_batch_delays_session_checks_and_reports_failures() -> None:
    """Session checks wait the grace period; a failed send is the batch's failure point."""
    sink = Recording()
    runtime = Runtime(runner=None, send=sink.send)  # type: ignore[arg-type]
    batch = [record(DONE, image(status="x")), record(ENDED, image(sk="CONN#2026#c1"))]
    assert handle_stream(batch, runtime, grace=120) == []
    assert [delay for _, delay in sink.sent] == [0, 120]

    failing = Runtime(runner=None, send=Recording(fail=True).send)  # type: ignore[arg-type]
    batch[0]["dynamodb"]["SequenceNumber"] = "42"
    assert handle_stream(batch, failing, grace=120) == ["42"]


def test_queue_batch_drops_garbage_and_retries_only_failures() -> None:
    """A garbage message is dropped; a failing job is reported for retry; others go on."""

    class Runner:
        def run(self, request: Any) -> Any:
            if isinstance(request, BotJob) and request.bot_id == "boom":
                raise RuntimeError("DynamoDB is down")
            from functions.minutes.job import Outcome

            return Outcome.BUILT

    runtime = Runtime(runner=Runner(), send=Recording().send)  # type: ignore[arg-type]
    batch = [
        {"messageId": "1", "body": "garbage"},
        {"messageId": "2", "body": message_body(BotJob(bot_id="boom", trigger="bot.done"))},
        {"messageId": "3", "body": message_body(BotJob(bot_id="fine", trigger="bot.done"))},
    ]
    assert handle_queue(batch, runtime) == ["2"]


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({}, "TABLE_NAME is not set"),
        ({"TABLE_NAME": "t", "SESSION_END_GRACE_SECONDS": "soon"}, "SESSION_END_GRACE_SECONDS"),
        ({"TABLE_NAME": "t", "JOB_LEASE_SECONDS": "5"}, "JOB_LEASE_SECONDS"),
        ({"TABLE_NAME": "t", "MINUTES_WEBHOOK_URL": "ftp://x"}, "http(s) URL"),
        ({"TABLE_NAME": "t", "MINUTES_WEBHOOK_URL": "https://x"}, "needs MINUTES_WEBHOOK_SECRET"),
        ({"TABLE_NAME": "t", "LOG_LEVEL": "loud"}, "LOG_LEVEL"),
    ],
    ids=["no-table", "grace-text", "lease-short", "url-scheme", "url-unsigned", "log-level"],
)
def test_settings_report_bad_configuration(environ: dict[str, str], problem: str) -> None:
    """Every bad variable is named; no secret value is echoed."""
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(environ)


def test_settings_defaults() -> None:
    """Only the table is required; no key means the simulated summarizer."""
    parsed = Settings.from_env({"TABLE_NAME": "t", "OPENAI_API_KEY": " "})
    assert parsed.openai_api_key is None
    assert parsed.grace_seconds == 120
    assert "sk-" not in repr(Settings(table_name="t", openai_api_key="sk-secret"))


LEAVE = image(pk="BOT#b1", sk="LEAVE", bot_id="b1", reason="tool")


def test_a_new_leave_request_asks_for_minutes_then_a_deadline() -> None:
    """An inserted LEAVE item: the job at once and a deadline after the bound; a rewrite of
    the item (the leave being claimed) starts nothing."""
    from functions.minutes.trigger import LeaveDeadline, planned

    request = from_stream_record(record(LEAVE, name="INSERT"))
    assert request == BotJob(bot_id="b1", trigger="leave_requested")
    assert planned(request, grace=120, leave_deadline=90) == [
        (request, 0),
        (LeaveDeadline(bot_id="b1"), 90),
    ]
    claimed = image(pk="BOT#b1", sk="LEAVE", bot_id="b1", leaving_at="2026-01-01T00:00Z")
    assert from_stream_record(record(claimed, LEAVE)) is None
    bad = image(pk="BOT#b 1", sk="LEAVE")
    assert from_stream_record(record(bad, name="INSERT")) is None


def test_the_filter_passes_new_leave_requests() -> None:
    patterns = [json.loads(p) for p in stream_filter_patterns()]
    assert patterns[2] == {
        "eventName": ["INSERT"],
        "dynamodb": {"NewImage": {"sk": {"S": ["LEAVE"]}}},
    }


@pytest.mark.parametrize(
    "body",
    [
        '{"kind":"leave_deadline"}',
        '{"kind":"leave_deadline","bot_id":"a b"}',
        '{"kind":"leave_deadline","bot_id":"b","extra":1}',
        '{"kind":"bot","bot_id":"b","trigger":"leave_now"}',
    ],
)
def test_malformed_leave_messages_are_refused(body: str) -> None:
    with pytest.raises(BadMessageError):
        parse_message(body)


def test_leave_settings_are_bounded() -> None:
    """MINUTES_TO_CHAT on/off only; the leave bound stays under the function's timeout."""
    with pytest.raises(ConfigError, match="MINUTES_TO_CHAT"):
        Settings.from_env({"TABLE_NAME": "t", "MINUTES_TO_CHAT": "maybe"})
    with pytest.raises(ConfigError, match="LEAVE_BOUND_SECONDS"):
        Settings.from_env({"TABLE_NAME": "t", "LEAVE_BOUND_SECONDS": "600"})
    parsed = Settings.from_env({"TABLE_NAME": "t", "MINUTES_TO_CHAT": "ON"})
    assert parsed.minutes_to_chat is True
    assert parsed.leave_deadline_seconds == parsed.leave_bound_seconds + 30
