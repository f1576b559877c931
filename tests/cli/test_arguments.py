"""Bad command lines and missing settings give one clear error, before anything is sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.cli.conftest import RECALL_KEY, TOKEN_SECRET, run_cli

MEETING = "https://meet.google.com/abc-defg-hij"
PAGE = "https://agent.example.com/"
PAST = (datetime.now(UTC) - timedelta(hours=1)).isoformat()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["bot", "create", "--meeting-url", "http://meet.google.com/abc-defg-hij"],
            {},
            "is not an https meeting URL",
        ),
        (["bot", "create", "--meeting-url", "not a url"], {}, "is not an https meeting URL"),
        (
            ["bot", "create", "--meeting-url", "https://example.com/meeting"],
            {},
            "example.com is not a supported meeting host",
        ),
        (
            ["bot", "create", "--meeting-url", MEETING, "--region", "mars-1"],
            {},
            "'mars-1' is not one of",
        ),
        (
            ["bot", "create", "--meeting-url", MEETING, "--token-ttl", "-5"],
            {},
            "-5 is not in the range x>=60",
        ),
        (
            ["bot", "create", "--meeting-url", MEETING, "--join-at", "tomorrow"],
            {},
            "'tomorrow' is not an ISO 8601 time",
        ),
        (
            ["bot", "create", "--meeting-url", MEETING, "--join-at", PAST],
            {},
            "is in the past",
        ),
        (["bot", "create"], {}, "Missing option '--meeting-url'"),
        (["token", "mint", "--sub", "s1", "--ttl", "-1"], {}, "-1 is not in the range x>=1"),
        (["token", "mint", "--ttl", "60"], {}, "Missing option '--sub'"),
        (["bots", "--limit", "0"], {}, "0 is not in the range"),
        (["bot", "leave", "b1", "--region", "moon"], {}, "'moon' is not one of"),
        (["dev", "--relay-port", "70000"], {}, "70000 is not in the range"),
    ],
    ids=[
        "http-meeting-url",
        "garbage-meeting-url",
        "unsupported-host",
        "unknown-region",
        "negative-token-ttl",
        "unparseable-join-at",
        "join-at-in-past",
        "missing-meeting-url",
        "negative-mint-ttl",
        "mint-without-sub",
        "zero-limit",
        "leave-unknown-region",
        "port-out-of-range",
    ],
)
def test_bad_arguments_are_usage_errors(fake_recall, args, env, message):
    """A bad argument exits 2 with a message naming the problem, and Recall is not called."""
    full_env = {
        "RECALL_API_KEY": RECALL_KEY,
        "RECALL_API_BASE": fake_recall.url,
        "RELAY_TOKEN_SECRET": TOKEN_SECRET,
        **env,
    }
    result = run_cli(args, full_env)

    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert fake_recall.requests == []


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["bot", "create", "--meeting-url", MEETING, "--page-url", PAGE, "--no-record"],
            {"RELAY_TOKEN_SECRET": TOKEN_SECRET},
            "error: no Recall API key: set RECALL_API_KEY or pass --recall-key-secret-arn",
        ),
        (
            ["bot", "create", "--meeting-url", MEETING, "--page-url", PAGE, "--no-record"],
            {"RECALL_API_KEY": RECALL_KEY, "RELAY_TOKEN_SECRET": "short"},
            "error: the token secret must be at least 32 bytes",
        ),
        (
            ["bot", "create", "--meeting-url", MEETING, "--page-url", PAGE, "--no-record"],
            {
                "RECALL_API_KEY": RECALL_KEY,
                "RELAY_TOKEN_SECRET": TOKEN_SECRET,
                "RECALL_REGION": "atlantis",
            },
            "error: unknown Recall region 'atlantis'; use one of: us-west-2",
        ),
        (
            ["bot", "leave", "b1"],
            {},
            "error: no Recall API key: set RECALL_API_KEY or pass --recall-key-secret-arn",
        ),
        (
            ["token", "mint", "--sub", "s1"],
            {"RELAY_TOKEN_SECRET": "too-short"},
            "error: the token secret must be at least 32 bytes",
        ),
        (
            ["webhook", "send-sample", "http://127.0.0.1:9/webhooks/recall", "--secret", "abc"],
            {},
            "error: the webhook secret must look like whsec_<base64>",
        ),
        (
            ["webhook", "send-sample", "ftp://example.com/x", "--secret", "whsec_AAAA"],
            {},
            "'ftp://example.com/x' is not an http(s) URL",
        ),
    ],
    ids=[
        "missing-recall-key",
        "short-token-secret",
        "unknown-env-region",
        "leave-missing-key",
        "mint-short-secret",
        "webhook-secret-not-whsec",
        "webhook-url-not-http",
    ],
)
def test_missing_or_invalid_settings_are_one_line(fake_recall, args, env, message):
    """A missing key or an invalid secret or region is one error line, and Recall is not called."""
    result = run_cli(args, {"RECALL_API_BASE": fake_recall.url, **env})

    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert fake_recall.requests == []


def test_without_stack_or_flags_the_error_says_what_to_pass(fake_recall):
    """Without a deployed stack, bot create says which flag stands in for the missing output."""
    env = {
        "RECALL_API_KEY": RECALL_KEY,
        "RELAY_TOKEN_SECRET": TOKEN_SECRET,
        "RECALL_API_BASE": fake_recall.url,
        # (run_cli points AWS at a closed port: CloudFormation fails fast, like no stack.)
    }
    result = run_cli(["bot", "create", "--meeting-url", MEETING, "--no-record"], env)

    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot read stack 'RecallVoiceAgent'")
    assert "pass the values as flags" in line
    assert fake_recall.requests == []


def test_every_command_has_help():
    """`--help` works on every command and group."""
    for args in (
        [],
        ["bot"],
        ["bot", "create"],
        ["bot", "leave"],
        ["bot", "show"],
        ["bots"],
        ["transcript"],
        ["outputs"],
        ["token", "mint"],
        ["webhook", "send-sample"],
        ["dev"],
    ):
        result = run_cli([*args, "--help"])
        assert result.exit_code == 0, args
        assert "Usage: " in result.output


def test_help_names_the_variable_each_option_reads():
    """`bot create --help` names RECALL_API_KEY_SECRET_ARN for --recall-key-secret-arn."""
    result = run_cli(["bot", "create", "--help"])
    text = " ".join(result.output.split())
    option = text.index("--recall-key-secret-arn TEXT")
    assert "RECALL_API_KEY_SECRET_ARN" in text[option : option + 200]
