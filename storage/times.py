"""The one time format of the table: fixed-width ISO 8601 UTC with microseconds.

Every time the table stores as text (in sort keys, in the ``by_day`` index, and in the
``updated_at`` that orders a bot's states) is written by :func:`key_time`, so lexical
order is time order for every writer: ``2026-11-29T18:45:09.500000Z``, always 27
characters. Years before 1000 are zero-padded (``0999-…``); a time whose UTC year falls
outside 1–9999 cannot be written at all (:func:`key_time` raises ``ValueError``), so no
stored string is ever shorter or longer.

Microseconds, not milliseconds: Recall's ``updated_at`` carries microseconds, and two
statuses of one bot in the same millisecond must still compare in order.

Items written before this module existed: the webhook store always wrote this format
(except for years before 1000, which Recall never sends); the CLI and the relay wrote
milliseconds (``…09.500Z``, 24 characters). Both parse the same (:func:`parse_time`), and
they sort correctly against each other except between two times in the same millisecond,
where ``…500Z`` sorts after ``…500123Z``. Nothing compares across the two widths in a
condition, so no stored item needs rewriting.

It refuses to read a clock: the caller passes the moment.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

#: Length of every string :func:`key_time` returns.
KEY_TIME_CHARS: Final = len("2026-11-29T18:45:09.500000Z")


def key_time(moment: datetime) -> str:
    """``moment`` as fixed-width ISO 8601 UTC with microseconds (a naive time is UTC).

    Raises:
        ValueError: the moment, in UTC, falls outside years 1-9999.
    """
    utc = as_utc(moment)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond:06d}Z"
    )


def key_time_from_epoch_ms(epoch_ms: int) -> str:
    """:func:`key_time` of a Unix time in milliseconds (what the relay stamps turns with).

    Raises:
        ValueError: the time falls outside years 1-9999.
    """
    try:
        moment = datetime.fromtimestamp(epoch_ms // 1000, UTC)
    except (OverflowError, OSError) as exc:
        raise ValueError(f"{epoch_ms} ms is not a representable time") from exc
    return key_time(moment.replace(microsecond=(epoch_ms % 1000) * 1000))


def key_day(moment: datetime) -> str:
    """The UTC day of ``moment`` as ``YYYY-MM-DD`` (the ``by_day`` index's bucket)."""
    return key_time(moment)[:10]


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive time is taken as UTC.

    Raises:
        ValueError: the conversion leaves years 1-9999 (``datetime`` raises
            ``OverflowError``, which validators would not treat as bad input).
    """
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("the time is outside years 1-9999 in UTC") from exc


def parse_time(text: str) -> datetime | None:
    """A stored time (this format, the older millisecond one, or any ISO 8601) as aware UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return as_utc(moment)
    except ValueError:
        return None
