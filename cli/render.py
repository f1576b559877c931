"""How the CLI shows things: aligned tables and relative times for people, stable JSON for scripts.

Pure functions from plain values to text; no I/O, no clock (``now`` is an argument).
The JSON forms drop the table's key attributes (``pk``, ``sk``, index keys) so scripts
see the same fields whatever the key design; keys are sorted, so output is stable.

Everything shown comes from the table, and most of it from outside (chat messages,
participant names, transcripts, Recall's codes): a terminal must never interpret it.
Every value a human form prints passes through :func:`safe`, which shows control,
format (bidi overrides and isolates, zero-width characters), surrogate and line-separator
characters as visible escapes (``\x1b``, ``\u202e``), so no escape sequence can retitle
the terminal, clear the screen, move the cursor or reorder what is read. The JSON forms
are safe as they are: ``json.dumps`` escapes every non-ASCII and control character.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from storage import schema, times

KEY_ATTRIBUTES: Final = frozenset(
    {schema.PARTITION_KEY, schema.SORT_KEY, schema.BY_DAY_PARTITION_KEY, schema.BY_DAY_SORT_KEY}
)
MAX_CELL_CHARS: Final = 60
#: Unicode categories shown escaped: controls, format characters (bidi, zero-width),
#: surrogates, private use, and the line and paragraph separators.
ESCAPED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
#: Format characters kept as they are: the zero-width (non-)joiners build emoji and
#: scripts, and move neither the cursor nor the reading order.
KEPT_FORMAT_CHARACTERS: Final = frozenset({"\u200c", "\u200d"})


def safe(text: str) -> str:
    """``text`` with every character a terminal could act on shown as its escape.

    ``"hi\x1b]0;pwned\x07"`` becomes ``"hi\\x1b]0;pwned\\x07"``; printable text,
    including non-Latin scripts and emoji, is unchanged.
    """
    if text.isascii() and text.isprintable():
        return text
    return "".join(
        ascii(c)[1:-1]
        if unicodedata.category(c) in ESCAPED_CATEGORIES and c not in KEPT_FORMAT_CHARACTERS
        else c
        for c in text
    )


def one_line(value: object) -> str:
    """``value`` as text on one line: whitespace runs become one space, then :func:`safe`."""
    return safe(" ".join(str(value).split()))


def parse_time(value: object) -> datetime | None:
    """A stored time (any width the table ever held; naive means UTC) as an aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    return times.parse_time(value)


def relative(value: object, now: datetime) -> str:
    """``"3m ago"``, ``"in 2h"``, ``"just now"``; ``"-"`` when there is no time."""
    when = parse_time(value)
    if when is None:
        return "-"
    seconds = (now - when).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 5:
        return "just now"
    unit, size = next(
        (u, n) for u, n in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)) if seconds >= n
    )
    amount = int(seconds // size)
    return f"in {amount}{unit}" if future else f"{amount}{unit} ago"


def duration(start: object, end: object) -> str:
    """``"1m 5s"`` between two ISO times; ``"-"`` if either is missing."""
    begin, finish = parse_time(start), parse_time(end)
    if begin is None or finish is None:
        return "-"
    seconds = max(0, int((finish - begin).total_seconds()))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {seconds}s"
    return f"{seconds}s"


def cell(value: object) -> str:
    """One table cell on one line, bounded in width."""
    text = "-" if value is None or value == "" else one_line(value)
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def speaker(turn: Mapping[str, Any]) -> str:
    """Who said a turn: the participant's name when the relay knew it (``(chat)`` for a chat
    message), else the role ("user" is someone in the meeting, "assistant" the agent)."""
    name = turn.get("speaker")
    if isinstance(name, str) and name:
        return f"{name} (chat)" if turn.get("via") == "chat" else name
    return str(turn.get("role", "?"))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns aligned on the widest cell; the last column is not padded."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = [v.ljust(w) for v, w in zip(values[:-1], widths[:-1], strict=True)]
        return "  ".join([*padded, values[-1]]).rstrip()

    return "\n".join([line(list(headers)), *(line(r) for r in cells)])


def fields(pairs: Sequence[tuple[str, object]]) -> str:
    """``name  value`` lines with the names aligned."""
    width = max(len(name) for name, _ in pairs)
    return "\n".join(f"{name.ljust(width)}  {cell(value)}" for name, value in pairs)


def public(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item without the table's key attributes, keys sorted."""
    return {k: item[k] for k in sorted(item) if k not in KEY_ATTRIBUTES}


def to_json(value: Any) -> str:
    """Stable, indented JSON (sorted keys)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def bots_table(bots: Sequence[Mapping[str, Any]], now: datetime) -> str:
    """``voicebot bots``: one line per bot, newest first."""
    rows = [
        [
            bot.get("bot_id"),
            bot.get("status") or "created",
            bot.get("sub_code"),
            bot.get("bot_name"),
            bot.get("region"),
            relative(bot.get("created_at"), now),
            relative(bot.get("updated_at"), now),
        ]
        for bot in bots
    ]
    return table(["BOT ID", "STATUS", "SUB CODE", "NAME", "REGION", "CREATED", "UPDATED"], rows)


def bot_report(
    state: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    connections: Sequence[Mapping[str, Any]],
    turns: Sequence[Mapping[str, Any]],
    now: datetime,
) -> str:
    """``voicebot bot show``: state, event timeline, relay sessions, transcript."""
    header = [
        ("bot", state.get("bot_id")),
        ("status", state.get("status") or "created (no webhook yet)"),
        ("sub code", state.get("sub_code")),
        ("last event", state.get("event")),
        ("updated", relative(state.get("updated_at"), now)),
        ("created", relative(state.get("created_at"), now)),
        ("name", state.get("bot_name")),
        ("region", state.get("region")),
        ("meeting", state.get("meeting_url")),
        ("session", state.get("session_id")),
    ]
    parts = [fields(header)]

    parts.append(f"\nEvents ({len(events)})")
    if events:
        parts.append(
            table(
                ["WHEN", "EVENT", "STATUS", "SUB CODE", "DETAIL"],
                [
                    [
                        relative(e.get("updated_at"), now),
                        e.get("event"),
                        e.get("status"),
                        e.get("sub_code"),
                        e.get("summary"),
                    ]
                    for e in events
                ],
            )
        )

    parts.append(f"\nRelay sessions ({len(connections)})")
    if connections:
        parts.append(
            table(
                ["STARTED", "DURATION", "CLOSE", "MODEL", "RESPONSES", "TOKENS", "CONNECTION"],
                [
                    [
                        relative(c.get("started_at"), now),
                        duration(c.get("started_at"), c.get("ended_at"))
                        if c.get("ended_at")
                        else "open",
                        c.get("close_code"),
                        c.get("model"),
                        c.get("responses"),
                        (c.get("usage") or {}).get("total_tokens"),
                        c.get("connection_id"),
                    ]
                    for c in connections
                ],
            )
        )

    parts.append(f"\nTranscript ({len(turns)})")
    for turn in turns:
        text = one_line(turn.get("text", ""))
        parts.append(f"{relative(turn.get('at'), now):>10}  {cell(speaker(turn)):<9}  {text}")
    return "\n".join(parts)


def transcript_text(turns: Sequence[Mapping[str, Any]]) -> str:
    """One line per turn: UTC time, who spoke, and everything they said (made safe to print:
    transcripts are untrusted text)."""
    lines = []
    for turn in turns:
        when = parse_time(turn.get("at"))
        stamp = when.strftime("%H:%M:%S") if when else "--:--:--"
        text = safe(" ".join(str(turn.get("text", "")).split()))
        role = safe(speaker(turn))
        lines.append(f"{stamp}  {role:<9}  {text}")
    return "\n".join(lines)


def notes_section(notes: Sequence[Mapping[str, Any]], now: datetime) -> str:
    """``voicebot bot show``: the notes the agent took, oldest first."""
    lines = [f"\nNotes ({len(notes)})"]
    for note in notes:
        text = " ".join(str(note.get("text", "")).split())
        lines.append(f"{relative(note.get('at'), now):>10}  {text}")
    return "\n".join(lines)


def now_utc() -> datetime:
    """The current time, aware (the command boundary's clock)."""
    return datetime.now(UTC)


def minutes_report(job: Mapping[str, Any]) -> str:
    """``voicebot bot minutes``: summary, decisions, action items with owners, open questions.

    ``job`` is the bot's ``MINUTES`` item (``storage.minutes.MinutesJob``) with its
    ``minutes`` JSON decoded into a dict.
    """
    minutes = job.get("minutes") or {}
    lines = [f"summary      {one_line(minutes.get('summary', ''))}"]
    for title, entries in (
        ("decisions", [one_line(d) for d in minutes.get("decisions", [])]),
        (
            "actions",
            [
                f"{one_line(a.get('owner', '?'))}: {one_line(a.get('task', ''))}"
                + (f" (due {one_line(a['due'])})" if a.get("due") else "")
                for a in minutes.get("action_items", [])
            ],
        ),
        ("open", [one_line(q) for q in minutes.get("open_questions", [])]),
    ):
        lines.append(f"{title:<12} {entries[0] if entries else '-'}")
        lines.extend(f"{'':<12} {entry}" for entry in entries[1:])
    footer = [
        ("built", job.get("built_at", "?")),
        ("by", job.get("generated_by", "?")),
        ("delivered", job.get("delivered_at") or ("refused" if job.get("refused_at") else "no")),
    ]
    if job.get("memory_key"):
        footer.append(("memory", job["memory_key"]))
    lines.extend(f"{name:<12} {cell(value)}" for name, value in footer)
    return "\n".join(lines)
