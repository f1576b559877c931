"""A scripted meeting, replayed against a relay as Recall and the agent page would drive it.

``voicebot dev --meeting FILE`` (and ``make dev MEETING=FILE``) shows what the agent does in
a meeting of several people with no meeting at all. The script is YAML::

    bot_name: Ava                 # the bot's name in the meeting (default Ava)
    turn_taking: {mode: addressed, wake_phrases: [Ava]}   # optional, agent.yaml's keys
    chat: {mode: addressed}                               # optional, agent.yaml's key
    lines:
      - {speaker: Grace, says: "Let's look at the roadmap first."}
      - {speaker: Linus, says: "Ava, what did we decide last week?"}
      - {speaker: Ada, chat: "Ava, can you share the agenda?"}

Replaying it (:func:`replay`): everyone joins through the relay's ``/recall/events/``
websocket, signed like Recall (``cli.recall_events``); each spoken line is the speaker's
``speech_on``, a turn of synthetic audio on a client socket (``/v1/realtime``, like the
agent page's), then ``speech_off``; each chat line is a ``chat_message``. Audio carries no
words, so the simulated model is started with the spoken lines, in order, as its
transcripts (``python -m relay.simulator --transcripts``, :func:`spoken_lines`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from cli import recall_events
from relay import tokens

MAX_LINES: Final = 500
#: How long one step may take (a turn heard, an answer finished) before the replay moves on.
STEP_SECONDS: Final = 30.0
REPLAY_TOKEN_TTL: Final = 3600
#: How long the replay waits for an answer to start after a line before it moves on.
SETTLE_SECONDS: Final = 1.5
_RATE: Final = 24_000
_FRAME: Final = 480  # 20 ms


class Line(BaseModel):
    """One line of the script: someone says something, or writes in the chat."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    speaker: str = Field(min_length=1, max_length=100)
    says: str | None = Field(default=None, min_length=1, max_length=2000)
    chat: str | None = Field(default=None, min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _one_kind(self) -> Line:
        if (self.says is None) == (self.chat is None):
            raise ValueError("each line has exactly one of says or chat")
        return self


class MeetingScript(BaseModel):
    """A whole scripted meeting (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    bot_name: str = Field(default="Ava", min_length=1, max_length=100)
    turn_taking: dict[str, Any] | None = None
    chat: dict[str, Any] | None = None
    lines: tuple[Line, ...] = Field(min_length=1, max_length=MAX_LINES)

    @property
    def people(self) -> list[str]:
        """Everyone who speaks or writes, in order of first appearance."""
        return list(dict.fromkeys(line.speaker for line in self.lines))


def load_script(path: Path) -> MeetingScript:
    """The script in ``path``.

    Raises:
        ValueError: unreadable, not YAML, or not a meeting script (the message says where).
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return MeetingScript.model_validate(raw)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ValueError(f"{path}: {where}: {first['msg']}") from None


def spoken_lines(script: MeetingScript) -> str:
    """The words of each spoken line, one per line: the simulator's ``--transcripts``."""
    return "".join(" ".join(line.says.split()) + "\n" for line in script.lines if line.says)


def agent_overrides(script: MeetingScript) -> dict[str, Any]:
    """The agent.yaml keys the script sets (``turn_taking``, ``chat``)."""
    found: dict[str, Any] = {}
    if script.turn_taking is not None:
        found["turn_taking"] = script.turn_taking
    if script.chat is not None:
        found["chat"] = script.chat
    return found


def speech_audio(speech_ms: int = 600, silence_ms: int = 1500) -> list[str]:
    """Base64 PCM16 24 kHz chunks (20 ms each): a loud tone, then silence (one VAD turn)."""
    chunks = []
    for index in range((speech_ms + silence_ms) // 20):
        loud = index * 20 < speech_ms
        samples = (
            int(8000 * math.sin(2 * math.pi * 220 * (index * _FRAME + n) / _RATE)) if loud else 0
            for n in range(_FRAME)
        )
        chunks.append(base64.b64encode(struct.pack(f"<{_FRAME}h", *samples)).decode())
    return chunks


async def replay(
    script: MeetingScript,
    *,
    relay_url: str,
    token: str,
    recall_secret: str,
    session_id: str,
    say: Callable[[str], None],
) -> int:
    """Hold the meeting against the relay at ``relay_url`` (``ws://host:port``); tell
    ``say`` what happens, line by line. Returns how many times the agent answered."""
    answers = 0
    async with (
        connect(
            f"{relay_url}/v1/realtime",
            additional_headers={"Authorization": f"Bearer {token}"},
            compression=None,
            max_size=None,
        ) as client,
        connect(
            f"{relay_url}/recall/events/",
            additional_headers=recall_events.signed_upgrade_headers(recall_secret),
            compression=None,
        ) as events,
    ):
        await _until(client, "session.updated")
        ids = {name: index + 1 for index, name in enumerate(script.people)}

        async def recall(kind: str, name: str, **kw: Any) -> None:
            who = recall_events.participant(ids.get(name, 0), name)
            await events.send(
                recall_events.event(
                    kind,
                    who,
                    session_id=session_id,
                    bot_id=session_id,  # the local stack records the session as its own bot
                    bot_name=script.bot_name,
                    **kw,
                )
            )

        await recall("join", script.bot_name)
        for name in script.people:
            await recall("join", name)
            say(f"  {name} joined")
        for line in script.lines:
            heard: list[dict[str, Any]] = []
            if line.says is not None:
                say(f"  {line.speaker}: {line.says}")
                await recall("speech_on", line.speaker)
                for chunk in speech_audio():
                    await client.send(
                        json.dumps({"type": "input_audio_buffer.append", "audio": chunk})
                    )
                heard = await _until(
                    client, "conversation.item.input_audio_transcription.completed"
                )
                await recall("speech_off", line.speaker)
            else:
                say(f"  {line.speaker} (chat): {line.chat}")
                await recall("chat_message", line.speaker, text=line.chat, to="everyone")
            answer = await _answer(client, heard)
            if answer is not None:
                answers += 1
                say(f"    → {script.bot_name}: {answer}")
    return answers


def start_replay(
    script: MeetingScript,
    *,
    relay_url: str,
    token_secret: str,
    recall_secret: str,
    say: Callable[[str], None],
    record: Callable[[str], None] = lambda session_id: None,
) -> threading.Thread:
    """Replay ``script`` against the local stack in a thread of its own (the stack keeps
    running after it; ``voicebot transcript <session>`` shows what was recorded).
    ``record(session_id)`` first records the session as a bot, so the CLI finds it."""
    session_id = f"dev-meeting-{uuid.uuid4().hex[:8]}"
    token = tokens.mint(token_secret, session_id, REPLAY_TOKEN_TTL)
    record(session_id)

    def run() -> None:
        say(f"meeting {session_id}: replaying {len(script.lines)} lines")
        try:
            answers = asyncio.run(
                replay(
                    script,
                    relay_url=relay_url,
                    token=token,
                    recall_secret=recall_secret,
                    session_id=session_id,
                    say=say,
                )
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            say(f"meeting {session_id}: stopped ({type(exc).__name__}: {exc})")
            return
        say(
            f"meeting {session_id}: the agent answered {answers} time(s); "
            f"see: voicebot transcript {session_id}"
        )

    thread = threading.Thread(target=run, name="meeting-replay", daemon=True)
    thread.start()
    return thread


async def _until(
    ws: ClientConnection, kind: str, within: float = STEP_SECONDS
) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while True:
            event = json.loads(await ws.recv())
            seen.append(event)
            if event.get("type") == kind:
                return seen


async def _answer(client: ClientConnection, heard: list[dict[str, Any]]) -> str | None:
    """The agent's answer to the line just said (``heard``: the events seen while it was
    said), if one starts within ``SETTLE_SECONDS`` (the replay cannot know whether the
    agent will answer: that is what it shows)."""
    seen = list(heard)
    kinds = {e.get("type") for e in seen}
    if "response.created" not in kinds:
        try:
            seen += await _until(client, "response.created", SETTLE_SECONDS)
        except TimeoutError:
            return None
    if "response.done" not in {e.get("type") for e in seen}:
        seen += await _until(client, "response.done")
    for event in seen:
        if event.get("type") == "response.output_audio_transcript.done":
            return str(event.get("transcript", ""))
    return ""
