"""The minutes as meeting-chat messages: a short form, split to the platform's limit.

Recall's ``send_chat_message`` takes plain text, and each platform caps a message
(docs/minutes.md, "Minutes in the meeting chat"): Google Meet 500 characters, Zoom and
Teams 4096, Webex has no chat at all. :func:`chat_limit` reads the platform from the
meeting URL; :func:`chat_messages` writes the short form (summary, decisions, action items
with owners, open questions), one item a line, and splits it at line ends into messages
within the limit, at most :data:`MAX_MESSAGES` of them (the rest is cut with a pointer to
the full minutes). A line longer than a message is cut, never split mid-word across two
messages. Pure: no I/O.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from functions.minutes.summarizer import Minutes

#: Recall's limits per platform; a host we do not know gets the smallest.
MEET_LIMIT: Final = 500
ZOOM_TEAMS_LIMIT: Final = 4096
#: More messages than this floods the chat; the full minutes are one command away.
MAX_MESSAGES: Final = 4
MORE: Final = "\n(the full minutes: voicebot bot minutes, or the control API)"
HEADER: Final = "Meeting minutes"


def chat_limit(meeting_url: str) -> int | None:
    """Longest chat message on the meeting's platform; ``None``: the platform has no chat."""
    host = (urlsplit(meeting_url).hostname or "").lower()

    def on(domain: str) -> bool:
        return host == domain or host.endswith("." + domain)

    if on("webex.com"):
        return None
    if on("zoom.us") or on("zoomgov.com") or on("teams.microsoft.com") or on("teams.live.com"):
        return ZOOM_TEAMS_LIMIT
    return MEET_LIMIT


def short_form(minutes: Minutes) -> list[str]:
    """The minutes as chat lines, most important first."""
    lines = [HEADER, minutes.summary.strip() or "Nothing was said."]
    if minutes.decisions:
        lines.append("Decisions:")
        lines.extend(f"- {_one_line(d)}" for d in minutes.decisions)
    if minutes.action_items:
        lines.append("Action items:")
        for item in minutes.action_items:
            due = f" (due {_one_line(item.due)})" if item.due else ""
            lines.append(f"- {_one_line(item.owner)}: {_one_line(item.task)}{due}")
    if minutes.open_questions:
        lines.append("Open questions:")
        lines.extend(f"- {_one_line(q)}" for q in minutes.open_questions)
    return [_one_line(line) for line in lines]


def chat_messages(minutes: Minutes, limit: int) -> list[str]:
    """The short form in messages of at most ``limit`` characters, at most MAX_MESSAGES."""
    messages: list[str] = []
    current = ""
    lines = short_form(minutes)
    for index, line in enumerate(lines):
        line = _cut(line, limit)
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) <= limit:
            current = candidate
            continue
        messages.append(current)
        current = line
        if len(messages) == MAX_MESSAGES - 1 and index < len(lines) - 1:
            # The last message: fill it, and say where the rest is if it does not fit.
            rest = "\n".join([current, *(_cut(x, limit) for x in lines[index + 1 :])])
            current = rest if len(rest) <= limit else _cut(rest, limit - len(MORE) - 1) + MORE
            break
    if current:
        messages.append(current)
    return messages[:MAX_MESSAGES]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut + "…"
