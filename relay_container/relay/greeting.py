"""The greeting: what the relay sends so the model speaks ``greeting`` once, first.

Pure: text in, the GA ``response.create`` bytes out. The session decides *when* (once,
when a bot's session starts in a meeting; never on re-attach, resume or rollover, whose
conversation already began); this module only says *how*: an ordinary response, in the
conversation (so the model knows it greeted), with tools off (a greeting never acts), and
interruptible like any answer.
"""

from __future__ import annotations

import json
import uuid
from typing import Final

EVENT_ID_PREFIX: Final = "event_relay_greeting_"


def greeting_response(greeting: str) -> bytes:
    """The ``response.create`` that has the model say ``greeting``."""
    event = {
        "type": "response.create",
        "event_id": f"{EVENT_ID_PREFIX}{uuid.uuid4().hex[:16]}",
        "response": {
            "instructions": (
                "Greet the participants now by saying exactly this, and nothing else: " + greeting
            ),
            "tool_choice": "none",
            "metadata": {"relay": "greeting"},
        },
    }
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
