"""Acting as Recall's real-time endpoint client: signed upgrades and event payloads.

``voicebot dev --meeting FILE`` replays a scripted meeting to the local relay the way
Recall would (``cli.meeting_replay``), and the tests do the same. This module owns the two
things that must look exactly like Recall's (docs/recall-realtime.md): the Standard
Webhooks headers on the websocket upgrade (``webhook-id``, ``webhook-timestamp``,
``webhook-signature`` over ``{id}.{timestamp}.`` with an empty body, signed with the
workspace verification secret) and the event envelope (``{"event": …, "data": {"data":
{participant, timestamp, data}, "bot": {id, metadata}, …}}``).
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from relay.tools.signing import decode_secret, sign


def signed_upgrade_headers(secret: str, now: float | None = None) -> dict[str, str]:
    """The headers Recall puts on a real-time websocket upgrade, signed with ``secret``."""
    stamp = int(time.time() if now is None else now)
    msg_id = f"msg_{secrets.token_hex(12)}"
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(decode_secret(secret), msg_id, stamp, b""),
    }


def participant(ident: int, name: str | None, *, is_host: bool = False) -> dict[str, Any]:
    """A participant object as Recall sends it."""
    return {
        "id": ident,
        "name": name,
        "is_host": is_host,
        "platform": "desktop",
        "extra_data": {},
        "email": None,
    }


def event(
    kind: str,
    who: dict[str, Any],
    *,
    session_id: str,
    bot_id: str = "bot-dev",
    bot_name: str | None = None,
    text: str | None = None,
    to: str = "everyone",
    relative: float = 0.0,
) -> str:
    """One real-time message: ``kind`` is the event name after ``participant_events.``
    (``join``, ``leave``, ``speech_on``, ``speech_off``, ``chat_message``, ...)."""
    metadata = {"session_id": session_id}
    if bot_name is not None:
        metadata["bot_name"] = bot_name
    return json.dumps(
        {
            "event": f"participant_events.{kind}",
            "data": {
                "data": {
                    "participant": who,
                    "timestamp": {
                        "absolute": datetime.now(UTC).isoformat(),
                        "relative": relative,
                    },
                    "data": {"text": text, "to": to} if kind == "chat_message" else None,
                },
                "realtime_endpoint": {"id": "rt-dev", "metadata": {}},
                "participant_events": {"id": "pe-dev", "metadata": {}},
                "recording": {"id": "rec-dev", "metadata": {}},
                "bot": {"id": bot_id, "metadata": metadata},
            },
        }
    )
