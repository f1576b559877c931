"""Pure pieces of the CLI: Retry-After parsing, backoff bounds, meeting URLs, time rendering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cli.bot_request import InvalidInput, meeting_platform, with_token, without_token
from cli.recall_api import RetryPolicy, base_url, retry_after_seconds
from cli.render import duration, relative, table

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("30", 30.0),
        (" 0 ", 0.0),
        ("Sun, 29 Nov 2026 12:00:45 GMT", 45.0),
        ("Sun, 29 Nov 2026 11:59:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("-5", None),
        ("soon", None),
        ("1.5", None),
    ],
    ids=[
        "seconds",
        "zero",
        "http-date",
        "http-date-past",
        "absent",
        "empty",
        "negative",
        "garbage",
        "fraction",
    ],
)
def test_retry_after_is_seconds_or_http_date(header, expected):
    """Retry-After in seconds or as an HTTP date becomes a wait; anything else means backoff."""
    assert retry_after_seconds(header, NOW) == expected


def test_backoff_grows_with_jitter_and_is_capped():
    """Backoff doubles per retry from 0.5 s, with jitter, never beyond 8 s."""
    policy = RetryPolicy()
    assert policy.backoff(1, rand=lambda: 0.0) == 0.25
    assert policy.backoff(1, rand=lambda: 1.0) == 0.5
    assert policy.backoff(3, rand=lambda: 1.0) == 2.0
    assert policy.backoff(20, rand=lambda: 1.0) == 8.0


@pytest.mark.parametrize(
    ("region", "override", "expected"),
    [
        ("us-west-2", None, "https://us-west-2.recall.ai"),
        ("us-east-1", None, "https://us-east-1.recall.ai"),
        ("eu-central-1", None, "https://eu-central-1.recall.ai"),
        ("ap-northeast-1", None, "https://ap-northeast-1.recall.ai"),
        ("eu-central-1", "http://127.0.0.1:9/{region}/", "http://127.0.0.1:9/eu-central-1"),
    ],
    ids=["us-west-2", "us-east-1", "eu", "tokyo", "override-with-region"],
)
def test_region_base_urls(region, override, expected):
    """Each Recall region has its own base URL; RECALL_API_BASE overrides it."""
    assert base_url(region, override) == expected


@pytest.mark.parametrize(
    ("url", "platform"),
    [
        ("https://us02web.zoom.us/j/8812345678?pwd=abc", "zoom"),
        ("https://meet.google.com/abc-defg-hij", "google_meet"),
        ("https://teams.microsoft.com/l/meetup-join/19%3a", "microsoft_teams"),
        ("https://teams.live.com/meet/9311", "microsoft_teams"),
        ("https://acme.webex.com/meet/ann", "webex"),
    ],
    ids=["zoom", "meet", "teams", "teams-live", "webex"],
)
def test_meeting_platforms(url, platform):
    """Meeting URLs of the four Output Media platforms are recognised."""
    assert meeting_platform(url) == platform


@pytest.mark.parametrize(
    "url",
    [
        "meet.google.com/abc-defg-hij",
        "http://meet.google.com/abc",
        "https://evilzoom.us/j/1",
        "https://zoom.us.evil.com/j/1",
        "https://slack.com/huddle/1",
        "javascript:alert(1)",
        "",
    ],
    ids=["no-scheme", "http", "lookalike-suffix", "lookalike-prefix", "slack", "js", "empty"],
)
def test_hostile_meeting_urls_are_refused(url):
    """Look-alike hosts and non-https URLs are refused."""
    with pytest.raises(InvalidInput):
        meeting_platform(url)


def test_token_travels_in_the_fragment_and_is_removed_keeping_other_parameters():
    """The token rides in the fragment (never sent to a server); the printed URL loses it."""
    page = with_token("https://page.example/?lang=en", "abc")
    assert page == "https://page.example/?lang=en#token=abc"
    assert without_token(page) == "https://page.example/?lang=en"
    assert without_token("https://page.example/?token=old&lang=en") == (
        "https://page.example/?lang=en"
    )


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(seconds=2), "just now"),
        (timedelta(seconds=42), "42s ago"),
        (timedelta(minutes=3, seconds=59), "3m ago"),
        (timedelta(hours=5), "5h ago"),
        (timedelta(days=2, hours=3), "2d ago"),
        (timedelta(minutes=-10), "in 10m"),
    ],
    ids=["now", "seconds", "minutes", "hours", "days", "future"],
)
def test_relative_times(delta, expected):
    """Times read as people say them."""
    assert relative((NOW - delta).isoformat().replace("+00:00", "Z"), NOW) == expected


def test_unknown_times_render_as_dash():
    """Missing or malformed times show '-', never an exception."""
    assert relative(None, NOW) == "-"
    assert relative("yesterday", NOW) == "-"
    assert duration("2026-11-29T12:00:00Z", None) == "-"
    assert duration("2026-11-29T12:00:00Z", "2026-11-29T13:02:05Z") == "1h 2m"


def test_tables_align_columns_and_keep_cells_on_one_line():
    """Columns line up; a newline or a very long value cannot break the layout."""
    text = table(["A", "LONG HEADER", "C"], [["x", "multi\nline", "end"], ["yyyy", "z" * 200, ""]])
    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[1].index("multi line") == lines[0].index("LONG HEADER")
    assert lines[2].endswith("-")
    assert "…" in lines[2]
