"""What the session core asks of its shell, and the deadlines it keeps: the core's outputs.

``relay.core.SessionCore`` does no I/O. Each of its inputs returns what to do, in order:
bytes to write on a *leg* (the client's socket, or one of the upstream connections, each
known by a number), a socket to close or abort, an upstream connection to dial, reads to
pause or resume, the one timer to arm, and what happened (for the shell to log and count).
The shell (``relay.session``) carries these out and nothing else.

The hot path is the exception: an input that only forwards bytes returns them as
``bytes`` (for the current upstream leg from ``client_data``, for the client from
``upstream_data``), so an audio frame costs no effect object at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

#: The client's leg; upstream legs are numbered from 1 in the order they are dialled.
CLIENT: Final = 0


@dataclass(frozen=True, slots=True)
class Write:
    """Write ``data`` on ``leg``."""

    leg: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Close ``leg``'s socket once what was written before is sent."""

    leg: int


@dataclass(frozen=True, slots=True)
class Abort:
    """Drop ``leg``'s socket at once."""

    leg: int


@dataclass(frozen=True, slots=True)
class Dial:
    """Open upstream leg ``leg``; ``load_history``: also load the stored conversation (resume)."""

    leg: int
    load_history: bool = False


@dataclass(frozen=True, slots=True)
class Reading:
    """Pause (``on=False``) or resume reading from ``leg``."""

    leg: int
    on: bool


@dataclass(frozen=True, slots=True)
class Promote:
    """Upstream leg ``leg`` is now the current one (a rollover switched to it)."""

    leg: int


@dataclass(frozen=True, slots=True)
class Timer:
    """Call ``tick`` at ``at`` (the shell's clock); ``inf`` means no timer is needed."""

    at: float


@dataclass(frozen=True, slots=True)
class Happened:
    """Something worth a log line or a counter; ``what`` is a short fixed phrase."""

    what: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Handover:
    """The session may move now (a turn boundary while leaving): close the client with
    ``code``/``reason`` once the records are flushed, so its next task resumes them."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ToolEvent:
    """An upstream event of a type the session's tool runner follows (``TOOL_EVENT_TYPES``)."""

    kind: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class LeaveCall:
    """A bill limit (``limit`` names it) is reached and the goodbye said: the bot leaves
    its meeting and the session ends."""

    limit: str


@dataclass(frozen=True, slots=True)
class Finished:
    """Both legs are closed: release the session's resources."""


Effect = (
    Write
    | Close
    | Abort
    | Dial
    | Reading
    | Promote
    | Timer
    | Happened
    | Handover
    | ToolEvent
    | LeaveCall
    | Finished
)


class Deadlines:
    """Named deadlines; the earliest one is what the shell's single timer is armed for."""

    __slots__ = ("_at", "armed")

    def __init__(self) -> None:
        self._at: dict[str, float] = {}
        #: The deadline the shell's timer was last armed for.
        self.armed = math.inf

    def set(self, name: str, at: float) -> None:
        """Set (or move) deadline ``name``."""
        self._at[name] = at

    def clear(self, name: str) -> None:
        """Forget deadline ``name`` (no-op when unset)."""
        self._at.pop(name, None)

    def get(self, name: str) -> float | None:
        """When ``name`` is due, or None."""
        return self._at.get(name)

    def pop_due(self, now: float) -> list[str]:
        """The names due at ``now``, earliest first, forgotten."""
        due = sorted((at, name) for name, at in self._at.items() if at <= now)
        for _, name in due:
            del self._at[name]
        return [name for _, name in due]

    def earliest(self) -> float:
        """The earliest deadline, or ``inf``."""
        return min(self._at.values(), default=math.inf)

    def clear_all(self) -> None:
        """Forget every deadline."""
        self._at.clear()
