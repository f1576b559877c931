"""Admission: how many sessions may be live, per process and per token subject.

``Admission.admit(sub)`` returns a ``Ticket`` or raises CapacityError (process full: 503,
so the load balancer sends the client elsewhere) or SubjectLimitError (429: the same
token subject already holds its share, e.g. a replayed token). Releasing a ticket is
idempotent. Synchronous and loop-free: the event loop is the only caller.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Self

from relay.errors import CapacityError, SubjectLimitError


class Ticket:
    """One admitted session; ``release()`` (or leaving ``with``) frees its places."""

    __slots__ = ("_admission", "_released", "sub")

    def __init__(self, admission: Admission, sub: str) -> None:
        self._admission = admission
        self._released = False
        self.sub = sub

    def release(self) -> None:
        """Give the places back; later calls do nothing."""
        if not self._released:
            self._released = True
            self._admission._release(self.sub)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class Admission:
    """Per-process and per-subject session limits; 0 means unlimited.

    Args:
        on_change: called with the new live count after every admit and release
            (scale-in protection, the ActiveSessions gauge).
    """

    def __init__(
        self,
        max_sessions: int,
        max_per_subject: int,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        self.max_sessions = max_sessions
        self.max_per_subject = max_per_subject
        self._on_change = on_change
        self._by_subject: dict[str, int] = {}
        self.active = 0

    def admit(self, sub: str) -> Ticket:
        """Reserve a place for a session of ``sub``.

        Raises:
            CapacityError: the process is full.
            SubjectLimitError: ``sub`` holds its maximum already.
        """
        if self.max_sessions and self.active >= self.max_sessions:
            raise CapacityError(f"relay is full ({self.max_sessions} sessions): try again")
        held = self._by_subject.get(sub, 0)
        if self.max_per_subject and held >= self.max_per_subject:
            raise SubjectLimitError(
                f"this token's subject already has {held} live session(s), "
                f"the limit is {self.max_per_subject}"
            )
        self._by_subject[sub] = held + 1
        self.active += 1
        if self._on_change is not None:
            self._on_change(self.active)
        return Ticket(self, sub)

    def held_by(self, sub: str) -> int:
        """Live sessions of one subject."""
        return self._by_subject.get(sub, 0)

    def _release(self, sub: str) -> None:
        left = self._by_subject[sub] - 1
        if left:
            self._by_subject[sub] = left
        else:
            del self._by_subject[sub]
        self.active -= 1
        if self._on_change is not None:
            self._on_change(self.active)
