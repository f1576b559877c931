"""Rollover: a fresh upstream session prepared beside the current one, and the old one retired.

A rollover replaces a long-lived upstream session with a fresh one before OpenAI's
maximum session length; the client's socket is untouched and sees none of it. The session
core (``relay.core``) owns the timing (when to start, when to give up waiting for a pause)
and the switch; this module owns the pieces it asks, all sans-I/O:

- :class:`Rollover`: the standby leg's state (``IDLE`` → ``DIALING`` → ``SEEDING`` →
  ``READY``). The standby is sent the set-up events (agent ``session.update``, the
  client's own updates, the conversation as seeds) and swallows everything it answers
  until every acknowledgement has arrived (``session.created``, one ``session.updated``
  per update, ``conversation.item.added`` and ``.done`` per seed, or an ``error`` in place
  of one), so the client never sees a second ``session.created``.
- The audio replay: from ``replay_seconds`` before a rollover is due until its switch, the
  client's most recent appends are kept (``replay_seconds`` of them), and replayed to the
  fresh session at the switch. A voice detector reports ``speech_started`` some hundreds
  of milliseconds after speech begins, so a switch "between turns" may fall just after
  someone started talking; the replay gives the fresh session those opening words instead
  of leaving them with the old session, which is then closed.
- :class:`RetiringLeg`: the replaced session, closed with 1000; what it still sends is
  dropped, its pings answered, its close handshake completed.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence

from relay import wire
from relay.events import ACK_TYPES, ERROR, SEED_ERROR_MARK, server_event_type

#: Client session.update events replayed on a rollover's standby upstream, newest kept.
MAX_REPLAYED_UPDATES = 8


class StandbyState(enum.Enum):
    """Where the standby leg is."""

    IDLE = "idle"
    DIALING = "dialing"
    SEEDING = "seeding"
    READY = "ready"


class Rollover:
    """The standby upstream of one session, the client updates it replays, the audio replay."""

    __slots__ = (
        "_appends",
        "client_updates",
        "expected_acks",
        "leg",
        "reader",
        "refusals",
        "replay_seconds",
        "started_at",
        "state",
    )

    def __init__(self, *, replay_seconds: float) -> None:
        self.replay_seconds = replay_seconds
        self.state = StandbyState.IDLE
        self.leg = 0
        self.started_at = 0.0
        self.expected_acks = 0
        self.refusals = 0
        #: The standby's frame reader; the session takes it over at the switch.
        self.reader: wire.FrameReader | None = None
        self.client_updates: list[bytes] = []
        self._appends: deque[tuple[float, bytes]] = deque()

    @property
    def active(self) -> bool:
        """A standby is being dialled, seeded or waits for the switch."""
        return self.state is not StandbyState.IDLE

    def note_client_update(self, payload: bytes) -> bool:
        """Keep a client ``session.update`` for the standby; True if the standby must be redone."""
        self.client_updates.append(payload)
        del self.client_updates[:-MAX_REPLAYED_UPDATES]
        return self.active

    def begin(self, leg: int, now: float) -> None:
        """The standby leg ``leg`` is being dialled."""
        if self.state is not StandbyState.IDLE:
            raise RuntimeError(f"a rollover is already {self.state.value}")
        self.state = StandbyState.DIALING
        self.leg = leg
        self.started_at = now
        self.refusals = 0

    def setup(self, agent_update: bytes, seeds: Sequence[str], max_frame_bytes: int) -> bytes:
        """The standby is open: the frames to send it, in order (it now counts their answers)."""
        if self.state is not StandbyState.DIALING:
            raise RuntimeError(f"cannot seed a standby that is {self.state.value}")
        events = [agent_update, *self.client_updates, *(seed.encode() for seed in seeds)]
        self.state = StandbyState.SEEDING
        self.expected_acks = 1 + len(events) + len(seeds)  # created, one per update, two per seed
        self.reader = wire.FrameReader(masked=False, max_size=max_frame_bytes)
        return b"".join(wire.encode(wire.TEXT, event, mask=True) for event in events)

    def standby_data(self, data: bytes) -> tuple[bytes, str | None]:
        """Bytes from the standby: (pongs to send it, why it is lost or None)."""
        if self.state is not StandbyState.SEEDING and self.state is not StandbyState.READY:
            return b"", None
        assert self.reader is not None
        try:
            frames, _ = self.reader.feed(data)
        except wire.FrameError as exc:
            return b"", f"the model broke WebSocket framing: {exc}"
        replies: list[bytes] = []
        for opcode, fin, payload in frames:
            if opcode == wire.TEXT and fin:
                kind = server_event_type(payload)
                if kind in ACK_TYPES:
                    self.expected_acks -= 1
                elif kind == ERROR:
                    # A refused seed costs its two acknowledgements, anything else one.
                    self.refusals += 1
                    self.expected_acks -= 2 if SEED_ERROR_MARK in payload else 1
            elif opcode == wire.PING:
                replies.append(wire.encode(wire.PONG, payload, mask=True))
            elif opcode == wire.CLOSE:
                return b"".join(replies), "the model closed the fresh session"
        if self.state is StandbyState.SEEDING and self.expected_acks <= 0:
            self.state = StandbyState.READY
        return b"".join(replies), None

    @property
    def ready(self) -> bool:
        """Every set-up event was answered: the session may switch."""
        return self.state is StandbyState.READY

    def start_keeping(self) -> None:
        """Keep the client's appends from now on (the rollover is ``replay_seconds`` away)."""
        self._appends.clear()

    def keep_append(self, payload: bytes, now: float) -> None:
        """A client append forwarded at ``now``: kept for the replay while a rollover runs."""
        appends = self._appends
        appends.append((now, payload))
        horizon = now - self.replay_seconds
        while appends and appends[0][0] < horizon:
            appends.popleft()

    def replay(self, now: float) -> bytes:
        """The appends of the last ``replay_seconds`` before ``now``, framed for the fresh leg."""
        horizon = now - self.replay_seconds
        return b"".join(
            wire.encode(wire.TEXT, payload, mask=True)
            for at, payload in self._appends
            if at >= horizon
        )

    def reset(self) -> None:
        """Back to idle (switched, or abandoned); the client updates and appends are kept."""
        self.state = StandbyState.IDLE
        self.leg = 0
        self.reader = None
        self.expected_acks = 0


class RetiringLeg:
    """The upstream a rollover replaced: its events dropped, pings answered, close completed."""

    __slots__ = ("_reader",)

    def __init__(self, reader: wire.FrameReader) -> None:
        self._reader = reader

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(pongs to send, whether the model's close arrived so the TCP connection may end)."""
        try:
            frames, _ = self._reader.feed(data)
        except wire.FrameError:
            return b"", True
        replies: list[bytes] = []
        for opcode, _fin, payload in frames:
            if opcode == wire.PING:
                replies.append(wire.encode(wire.PONG, payload, mask=True))
            elif opcode == wire.CLOSE:
                return b"".join(replies), True
        return b"".join(replies), False
