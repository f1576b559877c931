"""What moves a session: a client re-attaching, a rollover to a fresh model session, leaving.

``MovingCore`` adds to ``LegCore`` (the legs' states, closing, keepalive) the three ways a
session outlives one of its connections, each asking its collaborator:

- re-attach: a vanished client *detaches*; the model's frames are held (``HoldBuffer``)
  for a grace period, and a new client socket gets them first;
- rollover: before OpenAI's session cap a standby upstream is prepared and switched to
  between turns (or at a deadline), the client's latest audio replayed to it, and the old
  leg retires (``RolloverLegs``; this core only says when a switch may happen);
- leaving: the task is going away; the session is handed over at its next turn boundary
  (``Handover``: the page reconnects and resumes elsewhere), or at a deadline.

Sans I/O like the rest of the core.
"""

from __future__ import annotations

from typing import Final

from websockets.frames import CloseCode

from relay.client_leg import C_CLOSED, C_DETACHED, C_OPEN
from relay.conversation import TurnTaking
from relay.core_legs import LegCore
from relay.effects import CLIENT, Effect, Handover, Reading
from relay.errors import TransitionError
from relay.rollover_legs import FORCED, NO_SWITCH

#: The reason of a 1001 that tells the page to reconnect at once (drain or handover).
DRAIN_REASON: Final = "relay draining: reconnect"


class MovingCore(LegCore):
    """Re-attach, rollover and leaving (see the module docstring)."""

    # Re-attach

    def reattach(self, now: float) -> list[Effect]:
        """A new client socket for this detached session: held frames first, then live."""
        self._now = now
        if self.client.state is not C_DETACHED or self.finished:
            raise TransitionError(f"re-attach while the client is {self.client.state.value}")
        detached_ms = round((now - self.detached_at) * 1000)
        self.client.reconnected()
        self.reattached += 1
        self._deadlines.clear("hold")
        if self._deadlines.get("ping_client") is None:
            self._deadlines.set("ping_client", now + self.config.ping_interval)
        self.close_code, self.close_reason = None, ""
        if self.client.reads_paused:
            self._fx.append(Reading(CLIENT, False))
        old = self.record
        self.record = self._new_record(old.conversation.turns())
        self.record.turn_taking = old.turn_taking
        held = self._hold.release()
        if held:
            self._to_client(b"".join(held))
            self.frames_down += len(held)
        self._note("client reattached", buffered_frames=len(held), detached_ms=detached_ms)
        return self._take()

    def _detach(self) -> None:
        """The client vanished without a close frame: keep the model for the grace period."""
        self.detached_at = self._now
        self._hold.start(mid_message=self.client.in_fragment)
        self.client.detached()
        self.record.connection_ended(close_code=self.close_code, close_reason=self.close_reason)
        self._deadlines.set("hold", self._now + self.config.reattach_seconds)
        if self.up.reads_paused and not self.up.is_closed:
            self.up.reads_paused = False
            self._fx.append(Reading(self.up.leg, True))
        self._note("client detached", reattach_seconds=self.config.reattach_seconds)

    def _hold_expired(self, reason: str) -> None:
        if self.client.state is not C_DETACHED:
            return
        self._note("detached session ended", reason=reason)
        self.holdable = False
        self.client.state = C_CLOSED
        self._hold.clear()
        self._deadlines.clear("hold")
        self._close_upstream(CloseCode.NORMAL_CLOSURE, "client session ended")
        self._maybe_finish()

    # Rollover (``RolloverLegs``)

    def _maybe_switch(self) -> None:
        """Switch to a ready standby at a pause between turns, never inside a message."""
        if self.client.in_fragment:
            return
        resume_client = self.client.reads_paused and self.client.state is C_OPEN
        switched = self._moves.switch(
            self._now,
            between_turns=self.record.turn_taking.between_turns,
            resume_client=resume_client,
        )
        if switched == NO_SWITCH:
            return
        if resume_client:
            self.client.reads_paused = False  # it was the old session that was slow
        if switched == FORCED:
            self.record.turn_taking = TurnTaking()  # what was in progress ended with it

    # Leaving

    def _maybe_hand_over(self) -> None:
        if self.leaving and not self.client.in_fragment and self.record.turn_taking.between_turns:
            self._hand_over()

    def _hand_over(self) -> None:
        """Ask the shell to close the client with "reconnect" once the records are out."""
        if not self.leaving or self.client.state is not C_OPEN:
            return
        self.leaving = False  # once
        self._deadlines.clear("leave")
        self._fx.append(Handover(CloseCode.GOING_AWAY, DRAIN_REASON))
