"""The minutes as chat messages: within each platform's limit, none for Webex, bounded."""

from __future__ import annotations

import pytest

from functions.minutes.chat import MAX_MESSAGES, chat_limit, chat_messages, short_form
from functions.minutes.summarizer import ActionItem, Minutes


def minutes(n: int = 3, text: str = "Ship the beta on Friday") -> Minutes:
    return Minutes(
        summary="The team agreed to ship the beta.",
        decisions=[f"{text} ({i})" for i in range(n)],
        action_items=[
            ActionItem(task=f"{text} task {i}", owner="Dana", due="Friday") for i in range(n)
        ],
        open_questions=["Who owns the migration?"],
    )


@pytest.mark.parametrize(
    ("url", "limit"),
    [
        ("https://meet.google.com/abc-defg-hij", 500),
        ("https://us02web.zoom.us/j/123", 4096),
        ("https://teams.microsoft.com/l/meetup-join/x", 4096),
        ("https://teams.live.com/meet/1", 4096),
        ("https://acme.webex.com/meet/x", None),
        ("https://unknown.example.com/x", 500),  # unknown: the smallest limit
        ("https://zoom.us.evil.example.com/j/1", 500),  # a look-alike is not Zoom
    ],
)
def test_chat_limit_by_platform(url: str, limit: int | None) -> None:
    assert chat_limit(url) == limit


@pytest.mark.parametrize("limit", [500, 4096])
def test_messages_fit_the_limit_and_keep_the_content(limit: int) -> None:
    """Every message within the limit; a short set of minutes is in one message, in order."""
    messages = chat_messages(minutes(), limit)
    assert all(len(m) <= limit for m in messages)
    text = "\n".join(messages)
    assert text.startswith("Meeting minutes\nThe team agreed")
    assert "- Dana: Ship the beta on Friday task 0 (due Friday)" in text
    assert text.index("Decisions:") < text.index("Action items:") < text.index("Open questions:")


def test_long_minutes_are_split_and_bounded() -> None:
    """Twenty long items on Meet: at most MAX_MESSAGES messages of ≤ 500, with a pointer."""
    long = minutes(20, "word " * 150)
    messages = chat_messages(long, 500)
    assert 1 < len(messages) <= MAX_MESSAGES
    assert all(len(m) <= 500 for m in messages)
    assert "full minutes" in messages[-1]


def test_meeting_text_cannot_forge_lines() -> None:
    """Newlines inside a decision are collapsed: one item, one line."""
    hostile = Minutes(summary="ok\n\nDecisions:\n- fake", decisions=["a\nAction items:\n- x: y"])
    lines = short_form(hostile)
    assert lines == [
        "Meeting minutes",
        "ok Decisions: - fake",
        "Decisions:",
        "- a Action items: - x: y",
    ]
