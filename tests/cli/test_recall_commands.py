"""`voicebot bot create` / `bot leave` against a fake Recall API on loopback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from relay import tokens
from tests.cli.conftest import RECALL_KEY, TOKEN_SECRET, run_cli
from tests.cli.fake_recall import Answer, FakeRecall

MEETING = "https://meet.google.com/abc-defg-hij"
PAGE = "https://agent.example.com/"


def create_args(*extra: str) -> list[str]:
    return ["bot", "create", "--meeting-url", MEETING, "--page-url", PAGE, "--no-record", *extra]


def test_create_sends_agent_page_with_token_bound_to_session(fake_recall, recall_env):
    """The bot's camera is the agent page carrying a token whose subject is the bot's session."""
    result = run_cli(create_args("--name", "Ada", "--json"), recall_env)

    assert result.exit_code == 0, result.output
    [request] = fake_recall.requests
    assert (request.method, request.path) == ("POST", "/us-west-2/api/v1/bot/")
    assert request.headers["authorization"] == RECALL_KEY  # no "Bearer"
    body = request.body
    assert body["meeting_url"] == MEETING
    assert body["bot_name"] == "Ada"
    assert body["variant"] == {
        "zoom": "web_4_core",
        "google_meet": "web_4_core",
        "microsoft_teams": "web_4_core",
        "webex": "web_4_core",
    }
    camera = body["output_media"]["camera"]
    assert camera["kind"] == "webpage"
    page = urlsplit(camera["config"]["url"])
    assert f"{page.scheme}://{page.netloc}{page.path}" == PAGE
    [token] = parse_qs(page.fragment)["token"]
    claims = tokens.verify(token, TOKEN_SECRET)
    assert claims.sub == body["metadata"]["session_id"]
    assert 3 * 3600 - 60 <= claims.exp - claims.iat <= 3 * 3600

    printed = json.loads(result.stdout)
    assert printed["bot_id"] == fake_recall.created_ids[0]
    assert printed["session_id"] == claims.sub
    assert printed["page_url"] == PAGE
    assert token not in result.output


def test_create_prints_bot_id_and_page_without_token(fake_recall, recall_env):
    """Human output names the bot and the page URL, and never shows the token."""
    result = run_cli(create_args(), recall_env)

    assert result.exit_code == 0, result.output
    bot_id = fake_recall.created_ids[0]
    assert bot_id in result.stdout
    assert PAGE in result.stdout
    assert "token" not in result.stdout
    assert "eyJ" not in result.output  # no JWT anywhere


def test_token_covers_the_wait_until_join_at(fake_recall, recall_env):
    """A scheduled bot's token lasts the wait until --join-at plus --token-ttl."""
    join_at = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    result = run_cli(create_args("--join-at", join_at, "--token-ttl", "3600"), recall_env)

    assert result.exit_code == 0, result.output
    body = fake_recall.requests[0].body
    assert body["join_at"].endswith("Z")
    [token] = parse_qs(urlsplit(body["output_media"]["camera"]["config"]["url"]).fragment)["token"]
    claims = tokens.verify(token, TOKEN_SECRET)
    assert 3 * 3600 - 60 <= claims.exp - claims.iat <= 3 * 3600 + 60


@pytest.mark.parametrize(
    ("flag", "env_region", "expected"),
    [
        ([], None, "us-west-2"),
        ([], "eu-central-1", "eu-central-1"),
        (["--region", "ap-northeast-1"], "eu-central-1", "ap-northeast-1"),
        (["--region", "us-east-1"], None, "us-east-1"),
    ],
    ids=["default-us-west-2", "env-region", "flag-beats-env", "us-east-1"],
)
def test_create_goes_to_the_chosen_region(fake_recall, recall_env, flag, env_region, expected):
    """The bot is created in the region given by --region, else RECALL_REGION, else us-west-2."""
    env = {**recall_env, "RECALL_REGION": env_region} if env_region else recall_env
    result = run_cli(create_args(*flag), env)

    assert result.exit_code == 0, result.output
    assert fake_recall.requests[0].path == f"/{expected}/api/v1/bot/"


def test_retries_honour_retry_after(fake_recall: FakeRecall, recall_env):
    """429 and 507 are retried after Retry-After, with progress shown, until Recall creates."""
    fake_recall.script(
        Answer(429, {"detail": "Rate limited"}, {"Retry-After": "1"}),
        Answer(507, {"detail": "No ad-hoc bots available"}, {"Retry-After": "0"}),
    )
    result = run_cli(create_args(), recall_env)

    assert result.exit_code == 0, result.output
    assert len(fake_recall.requests) == 3
    first, second, _ = fake_recall.requests
    assert second.at - first.at >= 0.9  # waited for Retry-After: 1 (a lower bound only)
    assert "Recall answered 429; retrying" in result.stderr
    assert "Recall answered 507; retrying" in result.stderr
    assert fake_recall.created_ids[0] in result.stdout


def test_retries_server_errors_with_backoff(fake_recall, recall_env):
    """A 503 without Retry-After is retried after a backoff."""
    fake_recall.script(Answer(503, "<html>busy</html>"))
    result = run_cli(create_args(), recall_env)

    assert result.exit_code == 0, result.output
    assert len(fake_recall.requests) == 2


def test_gives_up_after_bounded_attempts(fake_recall, recall_env):
    """Recall staying out of bots ends in one error line after a bounded number of attempts."""
    fake_recall.script(*[Answer(507, {"detail": "No bots"}, {"Retry-After": "0"})] * 10)
    result = run_cli(create_args(), recall_env)

    assert result.exit_code == 1
    assert len(fake_recall.requests) == 4
    assert result.stderr.strip().splitlines()[-1] == (
        "error: Recall answered 507: No bots (gave up after 4 attempts)"
    )


def test_gives_up_when_retry_after_exceeds_total_wait(fake_recall, recall_env):
    """A Retry-After beyond the total wait budget is not slept through."""
    fake_recall.script(Answer(429, {"detail": "slow down"}, {"Retry-After": "600"}))
    result = run_cli(create_args(), recall_env)

    assert result.exit_code == 1
    assert len(fake_recall.requests) == 1
    assert "asked to wait 600 s" in result.stderr


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            Answer(400, {"meeting_url": ["Invalid meeting URL."]}),
            "error: Recall rejected the request (400): meeting_url: Invalid meeting URL.",
        ),
        (
            Answer(401, {"detail": "Invalid token."}),
            "error: Recall refused the API key (401): Invalid token. Check RECALL_API_KEY",
        ),
        (
            Answer(402, {"detail": "Insufficient credit."}),
            "error: Recall: insufficient credit (402): Insufficient credit.",
        ),
        (
            Answer(403, "<html><body>Request blocked</body></html>"),
            "error: Recall blocked the request (403): <html><body>Request blocked</body></html>",
        ),
    ],
    ids=["400-field-error", "401-bad-key", "402-credit", "403-waf-html"],
)
def test_client_errors_are_one_line_with_recalls_message(fake_recall, recall_env, answer, expected):
    """A 4xx is not retried and shows Recall's own message on one line, never the key."""
    fake_recall.script(answer)
    result = run_cli(create_args(), recall_env)

    assert result.exit_code == 1
    assert len(fake_recall.requests) == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(expected)
    assert RECALL_KEY not in result.output
    assert "Traceback" not in result.output


def test_leave_asks_the_bot_to_leave(fake_recall, recall_env):
    """`bot leave ID` posts leave_call for that bot in the configured region."""
    result = run_cli(["bot", "leave", "bot-123", "--region", "eu-central-1"], recall_env)

    assert result.exit_code == 0, result.output
    [request] = fake_recall.requests
    assert (request.method, request.path) == (
        "POST",
        "/eu-central-1/api/v1/bot/bot-123/leave_call/",
    )
    assert request.headers["authorization"] == RECALL_KEY
    assert "bot-123 is leaving" in result.stdout


def test_leave_of_unknown_bot_says_so(fake_recall, recall_env):
    """A 404 from Recall names the region the bot was looked for in."""
    fake_recall.script(Answer(404, {"detail": "Not found."}))
    result = run_cli(["bot", "leave", "nope"], recall_env)

    assert result.exit_code == 1
    assert "no such bot in region us-west-2 (404): Not found." in result.stderr


def test_unreachable_recall_is_one_line(recall_env):
    """Recall unreachable ends, after bounded retries, in one error line."""
    env = {**recall_env, "RECALL_API_BASE": "http://127.0.0.1:9"}
    result = run_cli(["bot", "leave", "x"], env)

    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: could not connect to Recall")


#: Recall's real-time websocket events, as its docs list them (docs/recall-realtime.md).
DOCUMENTED_WEBSOCKET_EVENTS = {
    *(
        f"participant_events.{kind}"
        for kind in (
            "join",
            "leave",
            "update",
            "speech_on",
            "speech_off",
            "webcam_on",
            "webcam_off",
            "screenshare_on",
            "screenshare_off",
            "chat_message",
        )
    ),
    "transcript.data",
    "transcript.partial_data",
    "transcript.provider_data",
    "audio_mixed_raw.data",
    "audio_separate_raw.data",
    "video_separate_png.data",
    "video_separate_h264.data",
}


def check_realtime_endpoints(body: dict[str, Any], page: str) -> None:
    """The create request subscribes the relay's events endpoint as Recall documents it:
    ``recording_config.realtime_endpoints[{type, url, events}]``, the URL on the page's host,
    a trailing "/" and no query (no token rides in it), and the events the relay reads."""
    [endpoint] = body["recording_config"]["realtime_endpoints"]
    assert set(endpoint) == {"type", "url", "events"}
    assert endpoint["type"] == "websocket"
    url = urlsplit(endpoint["url"])
    assert (url.scheme, url.netloc, url.path) == ("wss", urlsplit(page).netloc, "/recall/events/")
    assert not url.query
    assert not url.fragment
    assert set(endpoint["events"]) <= DOCUMENTED_WEBSOCKET_EVENTS
    assert {
        "participant_events.join",
        "participant_events.leave",
        "participant_events.speech_on",
        "participant_events.speech_off",
        "participant_events.chat_message",
    } <= set(endpoint["events"])
    # Every event names its session and the bot's name, which the relay needs.
    assert body["metadata"]["bot_name"] == body["bot_name"]
    assert body["metadata"]["session_id"]


def test_create_subscribes_the_meeting_events_at_the_relay(fake_recall, recall_env):
    result = run_cli(create_args("--name", "Ava"), recall_env)
    assert result.exit_code == 0, result.output
    check_realtime_endpoints(fake_recall.requests[0].body, PAGE)
