"""RolloverLegs: the upstream legs a rollover adds beside the current one, and when.

A session core asks it (``relay.core``); it owns what happens on legs that are not the
current one: when a rollover starts (``rollover_seconds`` after the current leg opened),
the standby being dialled and seeded (:class:`~relay.rollover.Rollover`), the switch to it
between turns or, after waiting ``ROLLOVER_MAX_WAIT_SECONDS`` at most, at once (the client's
latest audio replayed to it), and the replaced leg retiring
(:class:`~relay.rollover.RetiringLeg`). Sans I/O: it writes its effects and deadlines into
the core's own (shared at construction) and is told the time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from relay import wire
from relay.effects import (
    CLIENT,
    Abort,
    Close,
    Deadlines,
    Dial,
    Effect,
    Happened,
    Promote,
    Reading,
    Write,
)
from relay.rollover import RetiringLeg, Rollover
from relay.upstream_leg import UpstreamLeg

if TYPE_CHECKING:  # the core reads the settings it is given; it never loads them
    from relay.config import RelayConfig

#: A rollover waits at most this long for a pause between turns, then switches anyway.
ROLLOVER_MAX_WAIT_SECONDS: Final = 120.0
#: The deadlines it sets (the core hands them back to :meth:`RolloverLegs.due`).
DEADLINES: Final = frozenset({"replay", "rollover", "rollover_force"})
#: What :meth:`RolloverLegs.switch` did (plain ints: the core runs compiled).
NO_SWITCH: Final = 0
SWITCHED: Final = 1
FORCED: Final = 2


class RolloverLegs:
    """The standby and the retiring legs of one session (see the module docstring)."""

    def __init__(
        self, config: RelayConfig, up: UpstreamLeg, fx: list[Effect], deadlines: Deadlines
    ) -> None:
        """Work on the core's current leg ``up``, effects ``fx`` and ``deadlines``."""
        self.config = config
        self.standby = Rollover(replay_seconds=config.rollover_replay_seconds)
        self.retiring: dict[int, RetiringLeg] = {}
        #: Client appends are kept for the replay; the switch is being forced; truncates of
        #: the replaced session's items are dropped until the fresh one answers.
        self.replaying = False
        self.forced = False
        self.drop_truncates = False
        self._up = up
        self._fx = fx
        self._deadlines = deadlines
        self._next_leg = 2
        #: Switches done.
        self.rollovers = 0

    @property
    def wait(self) -> float:
        """How long a prepared rollover waits for a pause between turns."""
        return min(ROLLOVER_MAX_WAIT_SECONDS, self.config.rollover_seconds / 4)

    def is_standby(self, leg: int) -> bool:
        """``leg`` is the standby being prepared."""
        return leg == self.standby.leg and self.standby.active

    def arm(self, now: float) -> None:
        """The next rollover, and the start of its audio replay ``replay_seconds`` before."""
        if self.config.rollover_seconds <= 0:
            return
        at = now + self.config.rollover_seconds
        self._deadlines.set("rollover", at)
        if self.config.rollover_replay_seconds > 0:
            self._deadlines.set("replay", max(now, at - self.config.rollover_replay_seconds))

    def due(self, name: str, now: float, *, leaving: bool) -> bool:
        """One of :data:`DEADLINES` fired: True when the core should try to switch now."""
        if name == "replay":
            self.replaying = True
            self.standby.start_keeping()
        elif name == "rollover":
            self._start(now, leaving)
        elif name == "rollover_force":
            self.forced = True
            return True
        return False

    def _start(self, now: float, leaving: bool) -> None:
        """Time for a fresh upstream: dial it; the switch waits for a pause between turns."""
        if not self._up.is_open or self.standby.active or leaving:
            return
        leg, self._next_leg = self._next_leg, self._next_leg + 1
        self.standby.begin(leg, now)
        self.forced = False
        self._deadlines.set("rollover_force", now + self.wait + self.config.open_timeout)
        self._fx.append(Dial(leg))

    def opened(self, agent_update: bytes, seeds: list[str]) -> None:
        """The standby finished its handshake: send it the set-up, the conversation seeded."""
        setup = self.standby.setup(agent_update, seeds, self._up.max_size)
        self._fx.append(Write(self.standby.leg, setup))
        self._fx.append(
            Happened("rollover: fresh upstream connected", {"seeded_turns": len(seeds)})
        )

    def client_update(self, payload: bytes, now: float) -> None:
        """A client ``session.update``: replayed to every standby; one being prepared
        without it is prepared again."""
        if self.standby.note_client_update(payload):
            self.drop()
            self._deadlines.set("rollover", now)

    def leg_data(self, leg: int, data: bytes, now: float) -> bool:
        """Bytes from a leg that is not current: True when a ready standby may be switched to."""
        if self.is_standby(leg):
            replies, lost = self.standby.standby_data(data)
            if replies:
                self._fx.append(Write(leg, replies))
            if lost is not None:
                self.lost(lost, now)
                return False
            return self.standby.ready
        retiring = self.retiring.get(leg)
        if retiring is not None:
            replies, done = retiring.feed(data)
            if replies:
                self._fx.append(Write(leg, replies))
            if done:
                self._fx.append(Close(leg))
        return False

    def leg_lost(self, leg: int, now: float) -> None:
        """A leg that is not current ended."""
        if self.is_standby(leg):
            self.lost("lost the connection to the fresh session", now)
        elif self.retiring.pop(leg, None) is not None:
            self._deadlines.clear(f"abort:{leg}")

    def lost(self, reason: str, now: float) -> None:
        """The fresh session failed: keep the current one, try again a little later."""
        self._fx.append(Happened("rollover failed", {"error": reason}))
        self.drop()
        self._deadlines.set("rollover", now + self.wait)

    def drop(self) -> None:
        """Abandon the standby, if any."""
        if self.standby.active:
            self._fx.append(Abort(self.standby.leg))
            self.standby.reset()
        self._deadlines.clear("rollover_force")

    def switch(self, now: float, *, between_turns: bool, resume_client: bool) -> int:
        """Switch to a ready standby when the conversation allows (or the wait is over).

        ``resume_client``: the client's reads were paused for the old leg, and resume with
        the switch. Returns ``NO_SWITCH``, ``SWITCHED``, or ``FORCED`` (switched mid-turn).
        """
        standby, up = self.standby, self._up
        if not standby.ready or not (self.forced or between_turns):
            return NO_SWITCH
        if not up.is_open:
            self.drop()
            return NO_SWITCH
        # The old session is retired with what its reader holds; the fresh one takes over.
        old, new = up.leg, standby.leg
        self.retiring[old] = RetiringLeg(up.reader)
        close = wire.close_payload(1000, "session rolled over")
        self._fx.append(Write(old, wire.encode(wire.CLOSE, close, mask=True)))
        self._deadlines.set(f"abort:{old}", now + self.config.close_timeout)
        assert standby.reader is not None
        up.promote(new, standby.reader)
        self._fx.append(Promote(new))
        replay = standby.replay(now)
        if replay:
            self._fx.append(Write(new, replay))
        if up.reads_paused:
            self._fx.append(Reading(new, False))
        if resume_client:
            self._fx.append(Reading(CLIENT, True))
        self.drop_truncates = True
        self.rollovers += 1
        fields = {
            "forced": self.forced,
            "waited_ms": round((now - standby.started_at) * 1000),
            "refused_setup_events": standby.refusals,
            "replayed_bytes": len(replay),
        }
        self._fx.append(Happened("rollover: switched to the fresh upstream", fields))
        switched = FORCED if self.forced else SWITCHED
        standby.reset()
        self.replaying = self.forced = False
        self._deadlines.clear("rollover_force")
        self.arm(now)
        return switched

    def finish(self) -> None:
        """The session is over: every leg but the current one is aborted."""
        if self.standby.active:
            self._fx.append(Abort(self.standby.leg))
            self.standby.reset()
        for leg in self.retiring:
            self._fx.append(Abort(leg))
        self.retiring.clear()
