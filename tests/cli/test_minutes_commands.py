"""`voicebot bot create --memory KEY` and `voicebot bot minutes <id>`: moto and a fake Recall."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import boto3
import pytest

from functions.minutes.job import MinutesJobRunner
from functions.minutes.store import MinutesStore
from functions.minutes.summarizer import SimulatedSummarizer
from functions.minutes.trigger import BotJob
from storage import minutes
from tests.cli.conftest import run_cli
from tests.minutes.conftest import seed_meeting

MEETING = "https://meet.google.com/abc-defg-hij"
PAGE = "https://agent.example.com/"


def table_env(endpoint: str, recall_env: dict[str, str] | None = None) -> dict[str, str]:
    return {**(recall_env or {}), "AWS_ENDPOINT_URL_DYNAMODB": endpoint}


def store(endpoint: str, table_name: str) -> MinutesStore:
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    return MinutesStore(client, table_name)


def test_create_with_memory_points_the_session_at_the_bot(
    fake_recall, recall_env, dynamodb_endpoint, table_name
):
    """The session's pointer names the bot and its memory key (how minutes find both)."""
    result = run_cli(
        ["bot", "create", "--meeting-url", MEETING, "--page-url", PAGE, "--table", table_name,
         "--memory", "team-atlas", "--json"],
        table_env(dynamodb_endpoint, recall_env),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    pointer = store(dynamodb_endpoint, table_name).session_bot(created["session_id"])
    assert pointer is not None
    assert pointer["bot_id"] == created["bot_id"]
    assert pointer["memory_key"] == "team-atlas"


@pytest.mark.parametrize(
    "key",
    ["", "has space", "x" * 129, "bidi\u202e", "tab\tkey"],
    ids=["empty", "space", "too-long", "bidi", "tab"],
)
def test_create_refuses_a_bad_memory_key_before_recall(fake_recall, recall_env, key):
    """A memory key that cannot be a table key is a usage error; Recall is not called."""
    result = run_cli(
        ["bot", "create", "--meeting-url", MEETING, "--page-url", PAGE, "--memory", key],
        recall_env,
    )
    assert result.exit_code == 2
    assert "--memory" in result.output
    assert fake_recall.requests == []


def test_memory_needs_a_recorded_bot(fake_recall, recall_env):
    """--memory with --no-record is refused (the key lives in the table)."""
    result = run_cli(
        ["bot", "create", "--meeting-url", MEETING, "--page-url", PAGE, "--no-record",
         "--memory", "k"],
        recall_env,
    )  # fmt: skip
    assert result.exit_code == 2
    assert fake_recall.requests == []


def test_minutes_shows_summary_decisions_owners_and_questions(dynamodb_endpoint, table_name):
    """Once built, `bot minutes` prints them; --json gives the same minutes as data."""
    bot_id, session_id = str(uuid.uuid4()), str(uuid.uuid4())
    minutes_store = store(dynamodb_endpoint, table_name)
    seed_meeting(minutes_store, bot_id=bot_id, session_id=session_id, memory_key="team-a")
    runner = MinutesJobRunner(store=minutes_store, summarizer=SimulatedSummarizer())
    runner.run(BotJob(bot_id=bot_id, trigger="bot.done"))

    shown = run_cli(["bot", "minutes", bot_id, "--table", table_name], table_env(dynamodb_endpoint))
    assert shown.exit_code == 0, shown.output
    assert "ship the beta on Friday" in shown.stdout
    assert "Dana: Dana will update the pricing page." in shown.stdout
    assert "Who owns the migration?" in shown.stdout
    assert "simulated" in shown.stdout
    assert "team-a" in shown.stdout

    as_json = run_cli(
        ["bot", "minutes", bot_id, "--table", table_name, "--json"], table_env(dynamodb_endpoint)
    )
    data = json.loads(as_json.stdout)
    job = minutes_store.job(bot_id)
    assert job is not None
    assert data["minutes"] == json.loads(job["minutes"])
    assert "claim_id" not in data
    assert "pk" not in data


def test_minutes_of_a_meeting_not_ended_says_so(dynamodb_endpoint, table_name):
    """No minutes yet: one error line, exit 1."""
    result = run_cli(
        ["bot", "minutes", "no-such-bot", "--table", table_name], table_env(dynamodb_endpoint)
    )
    assert result.exit_code == 1
    assert "no minutes for bot no-such-bot" in result.output
    assert "has not ended" in result.output
    minutes_store = store(dynamodb_endpoint, table_name)
    minutes_store.claim(
        bot_id="b2", claim_id="c", trigger="bot.done", now=datetime.now(UTC), lease_seconds=60
    )
    building = run_cli(
        ["bot", "minutes", "b2", "--table", table_name], table_env(dynamodb_endpoint)
    )
    assert "(job building)" in building.output


def test_minutes_text_from_the_meeting_cannot_drive_the_terminal(dynamodb_endpoint, table_name):
    """Escape sequences said in the meeting are shown escaped."""
    minutes_store = store(dynamodb_endpoint, table_name)
    now = datetime.now(UTC)
    assert minutes_store.claim(
        bot_id="b3", claim_id="c", trigger="bot.done", now=now, lease_seconds=60
    )
    hostile = {
        "summary": "hi\x1b]0;pwned\x07",
        "decisions": ["\u202eevil"],
        "action_items": [{"task": "\x1b[2J", "owner": "x", "due": None}],
        "open_questions": [],
    }
    minutes_store.store_built(
        bot_id="b3", claim_id="c", minutes_json=json.dumps(hostile), generated_by="m",
        built_at=now, memory_key=None,
    )  # fmt: skip
    shown = run_cli(["bot", "minutes", "b3", "--table", table_name], table_env(dynamodb_endpoint))
    assert "\x1b" not in shown.stdout
    assert "\u202e" not in shown.stdout
    assert "\\x1b]0;pwned\\x07" in shown.stdout
    assert minutes.MINUTES_SK == "MINUTES"


def test_create_with_minutes_options_stores_them_and_leave_waits_for_the_minutes(
    fake_recall, recall_env, dynamodb_endpoint, table_name
):
    """--minutes-to-chat and --minutes-url on the session pointer; `bot leave` then writes
    the leave request instead of calling leave_call."""
    env = table_env(dynamodb_endpoint, recall_env)
    result = run_cli(
        ["bot", "create", "--meeting-url", MEETING, "--page-url", PAGE, "--table", table_name,
         "--minutes-to-chat", "--minutes-url", "https://hooks.example.com/m?token=t", "--json"],
        env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    pointer = store(dynamodb_endpoint, table_name).session_bot(created["session_id"])
    assert pointer is not None
    assert pointer["minutes_to_chat"] is True
    assert pointer["minutes_url"] == "https://hooks.example.com/m?token=t"
    left = run_cli(["bot", "leave", created["bot_id"], "--table", table_name], env)
    assert left.exit_code == 0, left.output
    assert "posts its minutes in the chat, then leaves" in left.output
    assert not any(r.path.endswith("/leave_call/") for r in fake_recall.requests)
    request = store(dynamodb_endpoint, table_name).get(
        {"pk": f"BOT#{created['bot_id']}", "sk": "LEAVE"}
    )
    assert request is not None
    assert request["reason"] == "cli"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--minutes-url", "http://hooks.example.com/m"], "https"),
        (["--minutes-url", "https://u:p@hooks.example.com/m"], "credentials"),
        (["--minutes-url", "https://127.0.0.1/m"], "public host"),
        (["--minutes-to-chat", "--no-record"], "need the bot recorded"),
        (["--minutes-url", "https://hooks.example.com/m", "--no-record"], "need the bot recorded"),
    ],
    ids=["http", "credentials", "loopback", "chat-no-record", "url-no-record"],
)
def test_bad_minutes_options_are_usage_errors_before_recall(fake_recall, recall_env, args, message):
    result = run_cli(
        ["bot", "create", "--meeting-url", MEETING, "--page-url", PAGE, *args], recall_env
    )
    assert result.exit_code == 2
    assert message in result.output
    assert fake_recall.requests == []
