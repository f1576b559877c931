"""UsageMeter: a session's minutes, tokens and estimated cost against its bill, sans I/O.

The session core feeds it every ``response.done`` and its timer; it answers with a
:class:`Step`: an event for the model (a warning shortly before the minutes limit, or the
goodbye) and, once, the limit that makes the bot leave. States (:class:`MeterState`):

- ``METERING``: counting. Minutes run from the session's *first* start and usage starts
  from what earlier connections of the session stored (``prior``), so a re-attach, a
  rollover (same meter) and a handover to another task (a resume: ``relay.history.
  load_spent``) all stay within the same limits.
- ``WAITING``: a limit is reached while a response is in progress (or the model is not
  connected): the goodbye goes out when it ends.
- ``SAYING_GOODBYE``: the goodbye (a ``response.create`` with the bill's goodbye
  instructions, tools off) is out; its ``response.done`` is awaited.
- ``LINGERING``: the goodbye is generated; the page plays what it buffered.
- ``LEFT``: the leave was asked for (once). ``goodbye_timeout_seconds`` from the limit
  bounds the three states before it.

Malformed usage (not an object, negative, huge, a bool, not a number) is ignored and
counted in :attr:`UsageMeter.ignored`; nothing here raises on event content.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeGuard

from relay.bill import PRICED_FIELDS, Bill
from relay.response_usage import USAGE_FIELDS

#: A single response's token count above this is not believed (and not counted).
MAX_TOKENS_PER_RESPONSE: Final = 10**9
#: ``response.done`` events larger than this are not parsed (a real one is far smaller).
MAX_EVENT_BYTES: Final = 1024 * 1024
GOODBYE_MARK: Final = "goodbye"
#: Usage paths in ``response.usage`` → stored names: the stored fields
#: (``relay.response_usage.USAGE_FIELDS``) but the totals of what they break down, which would
#: be priced twice.
USAGE_PATHS: Final = tuple(
    field
    for field in USAGE_FIELDS
    if field[0] not in ("input_tokens", "output_tokens", "input_cached_tokens")
)


class MeterState(enum.Enum):
    METERING = "metering"
    WAITING = "waiting"
    SAYING_GOODBYE = "saying goodbye"
    LINGERING = "lingering"
    LEFT = "left"


class Limit(enum.StrEnum):
    """Which limit was reached (metrics and logs name it)."""

    MINUTES = "max_minutes"
    TOKENS = "max_tokens"
    COST = "max_cost_usd"


@dataclass(frozen=True, slots=True)
class Spent:
    """What a session used before this task took it over (a resume)."""

    seconds: float = 0.0
    usage: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Step:
    """What the core does next: ``send`` to the model; ``leave``: the bot leaves now."""

    send: bytes | None = None
    leave: Limit | None = None
    #: Set once when a limit is first reached (for a log line and a counter).
    reached: Limit | None = None


NOTHING: Final = Step()


class UsageMeter:
    """One session's meter (see the module docstring)."""

    __slots__ = (
        "_bill",
        "_ends_at",
        "_price",
        "_warn_at",
        "deadline",
        "ignored",
        "limit",
        "state",
        "usage",
    )

    def __init__(self, bill: Bill, model: str, *, spent: Spent, now: float) -> None:
        self._bill = bill
        self._price = bill.price_of(model)
        self.usage: dict[str, int] = {name: 0 for name, _ in USAGE_PATHS}
        for name, value in spent.usage.items():
            if name in self.usage and _is_count(value):
                self.usage[name] += value
        self.state = MeterState.METERING
        self.limit: Limit | None = None
        self.ignored = 0
        minutes = bill.max_minutes
        self._ends_at = math.inf if minutes is None else now + minutes * 60 - spent.seconds
        warn = bill.warn_minutes_before * 60
        self._warn_at = self._ends_at - warn if warn and self._ends_at - warn > now else math.inf
        #: When :meth:`tick` is next needed (``inf``: not until something happens).
        self.deadline = min(self._ends_at, self._warn_at)
        over = self._reached() or (Limit.MINUTES if self._ends_at <= now else None)
        if over is not None:  # a resume past a limit: the goodbye was said before, leave
            self.limit, self.state, self.deadline = over, MeterState.WAITING, now

    @property
    def cost_usd(self) -> float:
        """The estimated cost so far (0 without a price for the model)."""
        return self._price.cost(self.usage) if self._price is not None else 0.0

    def response_done(self, payload: bytes, now: float, *, busy: bool) -> Step:
        """A ``response.done`` (``busy``: another response is still in progress)."""
        response = _response(payload)
        if response is None:
            self.ignored += 1
            return NOTHING
        self._count(response.get("usage"))
        metadata = response.get("metadata")
        goodbye = isinstance(metadata, dict) and metadata.get("relay") == GOODBYE_MARK
        if self.state is MeterState.METERING:
            reached = self._reached()
            return self._limit_reached(reached, now, busy=busy) if reached else NOTHING
        if self.state is MeterState.WAITING and not busy and now < self.deadline:
            return self._say_goodbye()
        if self.state is MeterState.SAYING_GOODBYE and goodbye:
            self.state = MeterState.LINGERING
            self.deadline = min(self.deadline, now + self._bill.goodbye_linger_seconds)
        return NOTHING

    def tick(self, now: float, *, busy: bool) -> Step:
        """The meter's deadline passed (``busy``: a response is in progress, or the
        model is not connected)."""
        if now < self.deadline or self.state is MeterState.LEFT:
            return NOTHING
        if self.state is MeterState.METERING:
            if now >= self._ends_at:
                return self._limit_reached(Limit.MINUTES, now, busy=busy)
            self._warn_at = math.inf
            self.deadline = self._ends_at
            return Step(send=_system_note(self._bill.warn_minutes_before))
        return self._leave()  # the goodbye's bound, or its linger, is over

    def _count(self, usage: object) -> None:
        if not isinstance(usage, dict):
            self.ignored += usage is not None
            return
        for name, path in USAGE_PATHS:
            value = _dig(usage, path)
            if value is None:
                continue
            if _is_count(value) and value <= MAX_TOKENS_PER_RESPONSE:
                self.usage[name] += value
            else:
                self.ignored += 1

    def _reached(self) -> Limit | None:
        bill = self._bill
        if bill.max_tokens is not None and self.usage["total_tokens"] >= bill.max_tokens:
            return Limit.TOKENS
        if bill.max_cost_usd is not None and self.cost_usd >= bill.max_cost_usd:
            return Limit.COST
        return None

    def _limit_reached(self, limit: Limit, now: float, *, busy: bool) -> Step:
        self.limit = limit
        self.deadline = now + self._bill.goodbye_timeout_seconds
        self._warn_at = math.inf
        if busy:
            self.state = MeterState.WAITING
            return Step(reached=limit)
        step = self._say_goodbye()
        return Step(send=step.send, reached=limit)

    def _say_goodbye(self) -> Step:
        self.state = MeterState.SAYING_GOODBYE
        return Step(send=goodbye_response(self._bill.goodbye))

    def _leave(self) -> Step:
        self.state = MeterState.LEFT
        self.deadline = math.inf
        return Step(leave=self.limit or Limit.MINUTES)


def goodbye_response(instructions: str) -> bytes:
    """The ``response.create`` that has the model say goodbye (in the conversation, tools
    off, marked so its ``response.done`` is known)."""
    event = {
        "type": "response.create",
        "event_id": "event_relay_goodbye",
        "response": {
            "instructions": instructions,
            "tool_choice": "none",
            "metadata": {"relay": GOODBYE_MARK},
        },
    }
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def _system_note(minutes: float) -> bytes:
    text = (
        f"About {minutes:g} minute(s) remain before you must leave this meeting. If it fits, "
        "mention briefly that you will have to leave soon; otherwise carry on."
    )
    event = {
        "type": "conversation.item.create",
        "event_id": "event_relay_time_warning",
        "item": {
            "type": "message",
            "role": "system",
            "content": [{"type": "input_text", "text": text}],
        },
    }
    return json.dumps(event, separators=(",", ":")).encode()


def _response(payload: bytes) -> dict[str, Any] | None:
    if len(payload) > MAX_EVENT_BYTES:
        return None
    try:
        event = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    response = event.get("response") if isinstance(event, dict) else None
    return response if isinstance(response, dict) else None


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _dig(mapping: dict[str, Any], path: tuple[str, ...]) -> object:
    """The value at ``path``; None when absent; a non-object on the way is returned as is
    (malformed, so counted as ignored)."""
    value: object = mapping
    for key in path:
        if value is None or not isinstance(value, dict):
            return value
        value = value.get(key)
    return value


assert set(PRICED_FIELDS) <= {name for name, _ in USAGE_PATHS}
