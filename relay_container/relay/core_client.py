"""The client's side of a session core: its bytes in, checked, and forwarded to the model.

``ClientCore`` adds to ``MovingCore`` the client leg's inputs: frames parsed and checked
(UTF-8, one JSON event with a ``type``, the policy and the tool guard through
``ClientEvents``; the audio append, nearly every message, recognised from its first
bytes), forwarded to the current upstream leg or queued (bounded) until it is open; the
client going away (detach or close); its socket filling up. Sans I/O.
"""

from __future__ import annotations

from typing import Final

from websockets.frames import CloseCode

from relay import wire
from relay.client_events import is_plain_append
from relay.client_leg import C_CLOSED, C_DETACHED, C_OPEN
from relay.core_moves import MovingCore
from relay.effects import Effect, Reading, Write
from relay.errors import QueueOverflowError, TransitionError
from relay.events import (
    INPUT_AUDIO_APPEND,
    ITEM_TRUNCATE,
    RELAY_LATENCY_GET,
    SESSION_UPDATE,
)

_TEXT: Final = wire.TEXT
_BINARY: Final = wire.BINARY
_CONT: Final = wire.CONT
_PING: Final = wire.PING
_PONG: Final = wire.PONG
_encode: Final = wire.encode


class ClientCore(MovingCore):
    """The client leg's inputs (see the module docstring)."""

    def client_data(self, data: bytes, now: float) -> bytes | list[Effect]:
        """Client bytes. Returns the bytes for the current upstream leg when that is all."""
        self._now = now
        reader = self.client.reader
        if reader is None:
            return b""
        try:
            frames, _ = reader.feed(data)
        except wire.FrameError as exc:
            self._fail_framing(exc.close_code, str(exc))
            return self._take()
        out: list[bytes] = []
        for opcode, fin, payload in frames:
            if opcode <= _BINARY:
                if fin and opcode != _CONT and not self.client.fragments.active:
                    self._client_message(opcode, payload, out)  # nearly every frame
                    continue
                try:
                    message = self.client.fragments.add(opcode, fin, payload)
                except wire.FrameError as exc:
                    self._fail_framing(exc.close_code, str(exc))
                    break
                if message is not None:
                    self._client_message(message[0], message[1], out)
            elif opcode == _PING:
                if self.client.state is C_OPEN:
                    self._to_client(_encode(_PONG, payload, mask=False))
            elif opcode == _PONG:
                self.client.keepalive.pong(payload)  # unsolicited pongs prove nothing
            else:
                self._forward(out)
                out = []
                self._client_close_received(payload)
                break
        if out:
            if not self._fx and self.up.is_open:
                return out[0] if len(out) == 1 else b"".join(out)
            self._forward(out)
        return self._take() if self._fx else b""

    def client_lost(self, now: float) -> list[Effect]:
        """The client's TCP connection ended: hold the model for a re-attach, or end it too."""
        self._now = now
        if self.client.state is C_CLOSED or self.client.state is C_DETACHED:
            raise TransitionError(f"client lost while {self.client.state.value}")
        vanished = self.close_code is None
        if vanished:
            self.close_code = CloseCode.ABNORMAL_CLOSURE
            self.close_reason = "client disconnected"
        self.client.reader = None
        self._deadlines.clear("client_close")
        self._deadlines.clear("client_stalled")
        if vanished and self.holdable and not self.up.is_closed and not self.finished:
            self._detach()
            return self._take()
        self.client.state = C_CLOSED
        self._close_upstream(CloseCode.GOING_AWAY, "client went away")
        self._maybe_finish()
        return self._take()

    def client_writable(self, writable: bool, now: float) -> list[Effect]:
        """The client's socket buffer filled (False) or drained (True)."""
        self._now = now
        self.client.bounds.writable(writable)
        if writable:
            self._deadlines.clear("client_stalled")
        else:
            self._deadlines.set("client_stalled", now + self.config.ping_timeout)
        # The client reads slower than the model talks: stop reading the model meanwhile.
        self.up.reads_paused = not writable
        if not self.up.is_closed:
            self._fx.append(Reading(self.up.leg, writable))
        return self._take()

    # Internals

    def _client_message(self, opcode: int, payload: bytes, out: list[bytes]) -> None:
        if self.client.state is not C_OPEN:
            return
        if opcode == _TEXT and is_plain_append(payload):
            kind: str | None = INPUT_AUDIO_APPEND  # nearly every frame: known from its head
            if self._moves.replaying:
                self._moves.standby.keep_append(payload, self._now)
        else:
            kind, payload, error = self._events.check(opcode, payload)
            if kind is None:
                if error is not None:
                    self._invalid_event(error)
                return
            if error is not None:
                self._client_event(error)
            if kind == RELAY_LATENCY_GET:  # relay-only: answered, never forwarded
                answer, allowed = self.timings.answer(self._now)
                if allowed:
                    self._client_event(answer)
                else:
                    self._invalid_event(answer)
                return
            if kind == ITEM_TRUNCATE and self._moves.drop_truncates:
                return  # it names an item of the upstream session a rollover replaced
            if kind == SESSION_UPDATE:
                self._moves.client_update(payload, self._now)
        self.frames_up += 1
        self.bytes_up += len(payload)
        out.append(_encode(_TEXT, payload, mask=True))

    def _forward(self, frames: list[bytes]) -> None:
        """Client frames for the model: written, queued until it is ready, or dropped."""
        if not frames:
            return
        up = self.up
        if up.is_open:
            self._fx.append(Write(up.leg, b"".join(frames)))
        elif up.is_dialing:
            limit = self.config.pre_upstream_queue_bytes
            if up.hold(frames) > limit:
                self._note("queue overflow")
                self._fail(
                    QueueOverflowError(
                        f"more than {limit} bytes arrived before the model was ready; "
                        "wait for session.created before streaming audio"
                    )
                )
