"""AutomaticLeave: when Recall makes a bot leave by itself, as set in agent.yaml.

Recall's defaults keep a bot in an empty or silent call for up to an hour (docs/recall.md,
"automatic_leave"). ``automatic_leave:`` in agent.yaml replaces them, and
:meth:`AutomaticLeave.request` renders the ``automatic_leave`` object of Recall's create-bot
request (``POST /api/v1/bot/``; ``cli.bot_request`` puts it in). Its
``in_call_recording_timeout`` is a hard cap derived from the bill's minutes limit plus a
margin (``relay.bill``): Recall removes the bot even if the relay never could. Pure.
"""

from __future__ import annotations

import math
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

#: Longest timeout accepted, in seconds (a day): beyond, a typo.
MAX_TIMEOUT_SECONDS: Final = 86_400


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActivatedTimeout(_Strict):
    """A timeout that starts counting ``activate_after`` seconds into the call."""

    timeout: int = Field(ge=1, le=MAX_TIMEOUT_SECONDS)
    activate_after: int = Field(default=0, ge=0, le=MAX_TIMEOUT_SECONDS)


class AutomaticLeave(_Strict):
    """Recall's ``automatic_leave`` (seconds); a field left ``None`` keeps Recall's default."""

    #: Leave after this long with nobody speaking.
    silence_detection: ActivatedTimeout | None = ActivatedTimeout(timeout=600, activate_after=300)
    #: Leave this long after the last other participant left.
    everyone_left_timeout: ActivatedTimeout | None = ActivatedTimeout(timeout=30, activate_after=0)
    #: Give up waiting to be admitted (Google Meet allows at most 600).
    waiting_room_timeout: int | None = Field(default=600, ge=1, le=MAX_TIMEOUT_SECONDS)
    #: Leave a call nobody else joined.
    noone_joined_timeout: int | None = Field(default=600, ge=1, le=MAX_TIMEOUT_SECONDS)

    def request(self, max_minutes: float | None, margin_minutes: float) -> dict[str, Any]:
        """The create-bot request's ``automatic_leave``; ``max_minutes`` (the bill's
        minutes limit, if any) plus ``margin_minutes`` becomes ``in_call_recording_timeout``."""
        body: dict[str, Any] = self.model_dump(exclude_none=True)
        if max_minutes is not None:
            body["in_call_recording_timeout"] = math.ceil((max_minutes + margin_minutes) * 60)
        return body
