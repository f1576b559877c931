"""When the agent speaks (``turn_taking``): a scripted five-person meeting through the relay.

A GA fake model turns each client append into one finished turn (speech started and
stopped, committed, transcribed with the scripted words) and answers when asked: by its
own server VAD when the session says ``create_response: true``, or by a
``response.create``. In ``always`` mode the model answers every turn; in ``addressed``
mode the relay asks for an answer only for the turns that name the agent or follow its
question.
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from relay.agent import AgentConfig
from relay.server import Relay
from relay.turn_gate import TurnGate
from tests.relay.conftest import FakeUpstream, StartRelay, mint, open_client, recv_until

MEETING = [
    "Let's look at the roadmap first.",
    "Ava, what did we decide last week?",  # addressed
    "Good. Moving on to hiring.",
    "I think we need two more engineers; Java folks ideally.",  # "Java" is not "Ava"
    "Can you write that down, AVA?",  # addressed
    "Thanks everyone, that's all.",
]
ANSWER = "Noted."


async def meeting_model(ws: ServerConnection, upstream: FakeUpstream) -> None:
    """One finished, transcribed turn per append; an answer when asked (or by itself)."""
    with contextlib.suppress(ConnectionClosed):
        await ws.send(json.dumps({"type": "session.created", "session": {}}))
        auto = True
        turn = 0
        async for message in ws:
            assert isinstance(message, str)
            upstream.received.append(message)
            event = json.loads(message)
            kind = event["type"]
            if kind == "session.update":
                detection = event["session"]["audio"]["input"]["turn_detection"]
                auto = detection["create_response"]
                await ws.send(json.dumps({"type": "session.updated", "session": {}}))
            elif kind == "input_audio_buffer.append":
                turn += 1
                item = f"item_{turn}"
                words = base64.b64decode(event["audio"]).decode()
                for done in (
                    {"type": "input_audio_buffer.speech_started"},
                    {"type": "input_audio_buffer.speech_stopped"},
                    {"type": "input_audio_buffer.committed", "item_id": item},
                    {
                        "type": "conversation.item.input_audio_transcription.completed",
                        "item_id": item,
                        "transcript": words,
                    },
                ):
                    await ws.send(json.dumps(done))
                if auto:
                    await answer(ws, f"auto_{turn}")
            elif kind == "response.create":
                await answer(ws, f"asked_{len(upstream.received)}")
            elif kind == "input_audio_buffer.clear":  # the client's end-of-turn marker
                await ws.send(json.dumps({"type": "input_audio_buffer.cleared"}))


async def answer(ws: ServerConnection, response_id: str) -> None:
    for out in (
        {"type": "response.created", "response": {"id": response_id}},
        {"type": "response.output_audio.delta", "response_id": response_id, "delta": "AAAA"},
        {
            "type": "response.output_audio_transcript.done",
            "item_id": response_id,
            "transcript": ANSWER,
        },
        {"type": "response.done", "response": {"id": response_id, "status": "completed"}},
    ):
        await ws.send(json.dumps(out))


async def hold_meeting(relay: Relay) -> list[int]:
    """Say each scripted turn; the indexes of the turns the agent answered."""
    answered: list[int] = []
    async with open_client(relay, mint("bot-meeting")) as ws:
        await recv_until(ws, "session.updated")
        for index, words in enumerate(MEETING):
            audio = base64.b64encode(words.encode()).decode()
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
            await recv_until(ws, "conversation.item.input_audio_transcription.completed")
            # An answer asked for this turn reaches the model before this marker does (the
            # relay writes it in the same step it forwards the transcript), so whatever the
            # model says about the turn arrives before the marker's echo.
            await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
            seen = await recv_until(ws, "input_audio_buffer.cleared")
            if any(e["type"] == "response.done" for e in seen):
                answered.append(index)
    return answered


def agent(mode: str) -> AgentConfig:
    taking: dict[str, Any] = {"mode": mode}
    if mode == "addressed":
        taking["wake_phrases"] = ["Ava"]
    return AgentConfig.model_validate({"turn_taking": taking})


async def test_in_always_mode_the_model_answers_every_turn(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.script = meeting_model
    relay = await start_relay(fake_upstream.url, agent=agent("always"))
    assert await hold_meeting(relay) == list(range(len(MEETING)))
    sent = [json.loads(m) for m in fake_upstream.received]
    assert not [e for e in sent if e["type"] == "response.create"]  # the model's own VAD


async def test_in_addressed_mode_the_agent_answers_only_when_addressed(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    """Five people, the agent named twice: exactly two answers, to those two turns."""
    fake_upstream.script = meeting_model
    relay = await start_relay(fake_upstream.url, agent=agent("addressed"))
    assert await hold_meeting(relay) == [1, 4]
    sent = [json.loads(m) for m in fake_upstream.received]
    assert sent[0]["session"]["audio"]["input"]["turn_detection"]["create_response"] is False
    assert len([e for e in sent if e["type"] == "response.create"]) == 2


async def test_in_manual_mode_the_agent_never_answers_by_itself(
    start_relay: StartRelay, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.script = meeting_model
    relay = await start_relay(fake_upstream.url, agent=agent("manual"))
    assert await hold_meeting(relay) == []


@pytest.mark.parametrize(
    ("turns", "answered"),
    [
        (["ava?"], [True]),
        (["Hey Ava, quick one"], [True]),
        (["Java is fine", "avalanche", "Ava's idea"], [False, False, True]),
        (["agent said: Shall we?", "Yes please"], [False, True]),  # a follow-up
    ],
)
def test_the_gate_hears_its_name_as_a_whole_word_and_follow_ups(
    turns: list[str], answered: list[bool]
) -> None:
    gate = TurnGate(wake_phrases=["Ava"], follow_ups=True)
    decisions = []
    for text in turns:
        if text.startswith("agent said: "):
            gate.agent_said(text.removeprefix("agent said: "))
            decisions.append(False)
        else:
            decisions.append(gate.user_said(text))
    assert decisions == answered


@pytest.mark.parametrize(
    ("taking", "problem"),
    [
        ({"mode": "addressed"}, "wake_phrases"),
        ({"mode": "sometimes"}, "mode"),
        ({"mode": "addressed", "wake_phrases": [" "]}, "wake phrase"),
    ],
)
def test_bad_turn_taking_is_refused_naming_the_key(taking: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        AgentConfig.model_validate({"turn_taking": taking})
